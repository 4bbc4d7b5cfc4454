"""Training: the resumable loop and its objectives."""
