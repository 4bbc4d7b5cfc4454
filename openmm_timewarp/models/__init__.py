"""Proposal models: the contract (metadata, export, load, checks), model files and their
resolution."""
