"""The DAIK worker: Celery tasks that claim a job, run the trainer (``daik train --events``) in its own
process group on the devices and cores it owns, report its typed events to the database, and judge how the
attempt ended; ``daik beat`` fires schedules and runs the maintenance (reaping, re-dispatch)."""
