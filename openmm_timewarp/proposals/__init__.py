"""Proposal families: simple ones, Cartesian flows, internal-coordinate flows and rotor models."""
