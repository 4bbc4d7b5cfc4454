"""Transferable joint-backbone proposals (family ``"ic-backbone"``): one network, any peptide.

``residues`` (the peptide's backbone: each residue's phi and psi atoms, which are free, and the
network's residue inputs), ``density`` (a residue's (phi, psi) histogram on the torus and its
draws), ``network`` (the transferable network and its model file), ``proposal`` (one molecule's
proposal), ``training`` (the network on several peptides for maximum likelihood).
"""
