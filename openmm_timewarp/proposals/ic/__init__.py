"""Internal-coordinate proposals: Z-matrix, splines, flows and the families built on them."""
