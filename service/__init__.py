"""The DAIK job service: the HTTP API (FastAPI), its domains (jobs, batches, schedules, datasets, artifacts,
workers, auth), the database layer (SQLAlchemy on PostgreSQL or SQLite), the dashboard and the ``daik up``
launcher. Torch-free: it reads job specs, events and ablation tables from daik_core's torch-free modules."""
