"""Transferable rotor proposals (family ``"ic-rotor"``): one network, any peptide Topology.

``features`` (what the network reads of a molecule), ``network`` (the transferable network and
its model file), ``densities`` (rotor splines, Gaussian widths), ``training`` (the network on
several peptides for maximum likelihood), ``moves`` (the noise numbers, local walk and peptide
checks that ``ic-backbone`` shares), ``proposal`` (one molecule's proposal).
"""
