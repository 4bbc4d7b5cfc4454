"""The transferable rotor model: graph features, densities and its proposal."""
