"""Training: the shared loop with events and checkpoints, the two trainers, and distributed runs."""
