"""Training engine (arrives with the trainer issue)."""
