"""A client of the job service over HTTP: ``daik jobs ...`` and ``daik batches ...``.

:mod:`service.client.http` talks to the API (``--server`` / ``DAIK_SERVER``, bearer token ``DAIK_TOKEN``)
and turns every failure (a problem+json answer, a server that cannot be reached) into a
:class:`~service.client.http.ClientError` of one readable line; :mod:`service.client.cli` registers the
commands. It needs only httpx, PyYAML and tqdm: none of the server's code (FastAPI, SQLAlchemy, Celery)."""

from __future__ import annotations

import os

__all__ = ["DEFAULT_SERVER", "default_server"]

DEFAULT_SERVER = "http://127.0.0.1:8000"


def default_server() -> str:
    """``DAIK_SERVER``, else :data:`DEFAULT_SERVER`."""
    return os.environ.get("DAIK_SERVER") or DEFAULT_SERVER
