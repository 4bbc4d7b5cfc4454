"""Python Metropolis-Hastings sampling: many chains, chain files, diagnostics."""
