"""``/datasets`` (register, list, read; folders confined to the data root, classes by DatasetSpec's rules,
images counted, 409 on a taken name) and ``/jobs/{id}/checkpoints`` (list, download, files confined to
the artifact root)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Checkpoint
from service.settings import Settings
from tests.service.conftest import TokenFactory
from tests.service.helpers import assert_problem, bearer, write_dota

Submit = Callable[..., dict[str, Any]]


def test_register_and_read_a_dataset(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], settings: Settings
) -> None:
    (settings.data_dir / dota["train"] / "images" / "notes.txt").write_text("not an image")
    body = {
        "name": "tiny-1.0",
        "train": dota["train"],
        "val": dota["val"],
        "classes": "plane, ship",
        "description": "d",
    }
    r = client.post("/datasets", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/datasets/tiny-1.0"
    ds = r.json()
    assert ds["name"] == "tiny-1.0" and ds["train"] == dota["train"] and ds["val"] == dota["val"]
    assert ds["classes"] == ["plane", "ship"] and ds["description"] == "d"
    assert ds["num_train_images"] == 2 and ds["num_val_images"] == 1  # notes.txt is not an image

    assert client.get("/datasets/tiny-1.0", headers=admin).json() == ds
    assert client.get("/datasets", headers=admin).json() == {"items": [ds]}
    assert_problem(client.get("/datasets/none", headers=admin), 404)


@pytest.mark.parametrize(
    ("classes", "expected"),
    [("dota1.0", 15), ("dota2.0", 18), (["a", "b", "c"], 3), ("a,b", 2)],
)
def test_class_lists(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], classes: Any, expected: int
) -> None:
    r = client.post(
        "/datasets", json={"name": "c", "train": dota["train"], "classes": classes}, headers=admin
    )
    assert r.status_code == 201, r.text
    assert len(r.json()["classes"]) == expected and r.json()["val"] is None


def test_duplicate_name_is_409(client: TestClient, admin: dict[str, str], dota: dict[str, str]) -> None:
    body = {"name": "dup", "train": dota["train"]}
    assert client.post("/datasets", json=body, headers=admin).status_code == 201
    assert_problem(client.post("/datasets", json=body, headers=admin), 409)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "-starts-with-dash"}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": ""}, "name"),
        ({"train": "../elsewhere"}, "train"),
        ({"train": "/etc"}, "train"),
        ({"train": "missing"}, "train"),
        ({"val": "{train}/images"}, "val"),  # exists, but no images/ and labelTxt/ in it
        ({"classes": "a,a"}, "classes"),
        ({"classes": "dota9.9"}, "classes"),
        ({"classes": []}, "classes"),
        ({"size": 3}, "size"),
    ],
)
def test_invalid_dataset_is_422(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {"name": "ok", "train": dota["train"], "val": dota["val"]}
    body.update({k: v.format(train=dota["train"]) if isinstance(v, str) else v for k, v in change.items()})
    assert_problem(client.post("/datasets", json=body, headers=admin), 422, field=field)


def test_dataset_symlink_escape_is_422(
    client: TestClient, admin: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    os.symlink(write_dota(tmp_path / "outside"), data_dir / "link")
    r = client.post("/datasets", json={"name": "esc", "train": f"{data_dir.name}/link"}, headers=admin)
    assert_problem(r, 422, field="train")


def test_dataset_scopes(client: TestClient, make_token: TokenFactory, dota: dict[str, str]) -> None:
    reader = bearer(make_token("datasets:read"))
    writer = bearer(make_token("datasets:write"))
    assert_problem(client.post("/datasets", json={"name": "s", "train": dota["train"]}, headers=reader), 403)
    assert (
        client.post("/datasets", json={"name": "s", "train": dota["train"]}, headers=writer).status_code
        == 201
    )
    assert client.get("/datasets/s", headers=reader).status_code == 200


# --- checkpoints ----------------------------------------------------------------------------------------


def _checkpoint(
    db: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    epoch: int,
    path: str,
    *,
    best: bool,
    data: bytes | None,
) -> int:
    if data is not None:
        file = settings.artifact_dir / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
    with db() as session:
        row = Checkpoint(
            job_id=uuid.UUID(job_id),
            attempt=1,
            epoch=epoch,
            step=(epoch + 1) * 10,
            path=path,
            is_best=best,
            size_bytes=len(data) if data is not None else None,
        )
        session.add(row)
        session.commit()
        return row.id


def test_list_and_download_checkpoints(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session], settings: Settings
) -> None:
    job = submit()
    weights = f"jobs/{job['id']}/weights"
    last = _checkpoint(db, settings, job["id"], 1, f"{weights}/last.pt", best=False, data=b"last-bytes")
    best = _checkpoint(db, settings, job["id"], 0, f"{weights}/best.pt", best=True, data=b"best-bytes" * 100)

    r = client.get(f"/jobs/{job['id']}/checkpoints", headers=admin)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["id"] for i in items] == [best, last]  # by step
    assert items[0]["is_best"] and not items[1]["is_best"]
    assert items[0]["size_bytes"] == 1000 and items[0]["epoch"] == 0 and items[0]["step"] == 10
    assert items[1]["download_url"] == f"/jobs/{job['id']}/checkpoints/{last}/download"

    d = client.get(items[0]["download_url"], headers=admin)
    assert d.status_code == 200 and d.content == b"best-bytes" * 100
    assert d.headers["content-type"] == "application/octet-stream"
    assert "attachment" in d.headers["content-disposition"]
    assert_problem(client.get(items[0]["download_url"]), 401)


def test_download_is_confined_to_the_job_and_the_artifact_root(
    client: TestClient,
    admin: dict[str, str],
    submit: Submit,
    db: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    job, other = submit(), submit(name="other")
    secret = tmp_path / "secret.pt"
    secret.write_bytes(b"secret")
    escape = _checkpoint(
        db, settings, job["id"], 0, os.path.relpath(secret, settings.artifact_dir), best=False, data=None
    )
    absolute = _checkpoint(db, settings, job["id"], 1, str(secret), best=False, data=None)
    os.symlink(secret, settings.artifact_dir / f"link-{job['id']}.pt")
    linked = _checkpoint(db, settings, job["id"], 2, f"link-{job['id']}.pt", best=False, data=None)
    gone = _checkpoint(db, settings, job["id"], 3, f"jobs/{job['id']}/weights/gone.pt", best=False, data=None)
    foreign = _checkpoint(
        db, settings, other["id"], 0, f"jobs/{other['id']}/weights/last.pt", best=False, data=b"x"
    )

    for cid in (escape, absolute, linked, gone):
        r = client.get(f"/jobs/{job['id']}/checkpoints/{cid}/download", headers=admin)
        body = assert_problem(r, 404)
        assert "secret" not in r.text and str(tmp_path) not in (body["detail"] or "")
    assert_problem(client.get(f"/jobs/{job['id']}/checkpoints/{foreign}/download", headers=admin), 404)
    r = client.get(f"/jobs/{job['id']}/checkpoints/abc/download", headers=admin)
    assert_problem(r, 422, field="checkpoint_id")
    assert_problem(client.get(f"/jobs/{uuid.uuid4()}/checkpoints", headers=admin), 404)
