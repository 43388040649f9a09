"""Batches: an ablation grid x seeds over one base job spec (router, schemas, service, dependencies)."""
