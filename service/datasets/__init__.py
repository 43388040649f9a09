"""Registered datasets: a name for a train/val folder pair under the data root and its class list."""
