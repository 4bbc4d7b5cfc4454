"""Proposal models: their metadata, files and checks, name resolution, and the bundled models.

``contract`` gathers the public names; ``metadata``, ``files``, ``checks`` and ``resolve`` hold
one concern each.
"""
