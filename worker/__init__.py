"""DAIK Celery worker (arrives with the service issue)."""
