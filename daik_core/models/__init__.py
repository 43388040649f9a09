"""Detector models (arrives with the trainer issue)."""
