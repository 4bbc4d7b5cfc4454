"""Internal-coordinate proposal models: Z-matrix transforms, spline flows and contract modules."""
