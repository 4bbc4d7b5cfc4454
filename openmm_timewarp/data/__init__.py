"""Peptides, their MD data, datasets and splits, and energies."""
