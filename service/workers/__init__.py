"""The workers the service knows of (``worker`` table, written by ``worker.registry``)."""
