"""Schedules: a cron expression in a time zone that makes a batch from a template (router, schemas, service,
dependencies); the worker's dispatcher fires them (:mod:`worker.schedules`)."""
