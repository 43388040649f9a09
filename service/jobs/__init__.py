"""Training and distillation jobs: submit, list, read, metrics, cancel, live events."""
