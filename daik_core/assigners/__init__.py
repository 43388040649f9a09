"""Label assignment (arrives with the trainer issue)."""
