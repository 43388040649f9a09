"""Detection and distillation losses (arrive with the trainer and distillation issues)."""
