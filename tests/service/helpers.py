"""Helpers of the API tests: request bodies, DOTA folders, problem assertions, broker inspection."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Job

PROBLEM = "application/problem+json"

# a 1x1 PNG: the API never reads images, but the files look like the real thing
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_dota(folder: Path, images: int = 1) -> Path:
    """A tiny DOTA folder: ``images/`` with ``images`` PNGs, ``labelTxt/`` with one object each."""
    (folder / "images").mkdir(parents=True)
    (folder / "labelTxt").mkdir()
    for i in range(images):
        (folder / "images" / f"p{i:04d}.png").write_bytes(PNG_1X1)
        (folder / "labelTxt" / f"p{i:04d}.txt").write_text("10 10 30 10 30 20 10 20 plane 0\n")
    return folder


def job_body(dota: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """A valid ``POST /jobs`` body (tiny hparams) with top-level fields replaced by ``overrides``."""
    body: dict[str, Any] = {
        "name": "api-test",
        "kind": "train",
        "dataset": {"train": dota["train"], "val": dota["val"], "classes": "plane,ship"},
        "student": {"preset": "n"},
        "hparams": {"epochs": 2, "batch": 2, "imgsz": 64},
    }
    body.update(overrides)
    return body


def set_job(db: sessionmaker[Session], job_id: str | uuid.UUID, **values: Any) -> None:
    """Update a job row directly (what the worker would do)."""
    with db() as session:
        job = session.get(Job, uuid.UUID(str(job_id)))
        assert job is not None
        for k, v in values.items():
            setattr(job, k, v)
        session.commit()


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status``; with ``field``, a validation problem naming it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert "detail" in body
    if field is not None:
        fields = [e["field"] for e in body["errors"]]
        assert field in fields, f"{field!r} not among {fields}: {body}"
        assert all(e["message"] for e in body["errors"])
    return body


def queued_messages(broker: redis.Redis, queue: str) -> list[tuple[str, list[Any]]]:
    """``(task name, args)`` of every message waiting in the kombu Redis list ``queue``."""
    out = []
    for raw in broker.lrange(queue, 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], list(body[0])))
    return out
