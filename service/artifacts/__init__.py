"""Job artifacts under the artifact root: checkpoints (listing and download)."""
