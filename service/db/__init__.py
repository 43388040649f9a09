"""The database layer shared by the API and the worker: SQLAlchemy 2 models, engine and sessions."""
