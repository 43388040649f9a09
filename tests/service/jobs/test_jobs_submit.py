"""``POST /jobs`` and ``GET /jobs/{id}``: the row and its event are committed, the task message reaches
Redis, the spec is resolved (paths, registered datasets, teacher jobs, output), and bad input is a 422
problem naming the field."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Checkpoint, Job, JobEvent
from service.errors import Problem, reject_nul
from service.settings import Settings
from tests.service.helpers import assert_problem, job_body, queued_messages, set_job, write_dota

Submit = Callable[..., dict[str, Any]]

JOB_KEYS = {
    "id", "name", "kind", "status", "attempt", "restarts", "max_restarts", "progress", "epoch",
    "total_epochs", "step", "latest_metrics", "final_map50", "final_map50_95", "error", "failure_kind",
    "resources", "spec", "created_at", "started_at", "finished_at", "updated_at",
}  # fmt: skip


def test_submit_commits_the_job_and_its_event(
    client: TestClient,
    admin: dict[str, str],
    dota: dict[str, str],
    settings: Settings,
    db: sessionmaker[Session],
) -> None:
    r = client.post("/jobs", json=job_body(dota), headers=admin)
    assert r.status_code == 201, r.text
    job = r.json()
    assert set(job) >= JOB_KEYS
    assert r.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["attempt"] == 0 and job["restarts"] == 0
    assert job["max_restarts"] == 3 and job["resources"] == {"gpus": 0}
    assert job["progress"] == 0 and job["latest_metrics"] == {}
    assert job["final_map50"] is None and job["started_at"] is None

    # the resolved spec: absolute dataset paths under the data root, the output folder of the contracts
    spec = job["spec"]
    data_root = settings.data_dir.resolve()
    assert spec["dataset"]["train"] == str(data_root / dota["train"])
    assert spec["dataset"]["val"] == str(data_root / dota["val"])
    assert spec["output"] == str(settings.artifact_dir.resolve() / "jobs" / job["id"])
    assert spec["hparams"]["epochs"] == 2 and spec["hparams"]["lr"] == 0.0008  # defaults filled in

    with db() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.status == "queued" and row.spec == spec
        assert row.dispatched_at is not None  # the send happened after the commit
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == row.id)).all()
    assert [(e.type, e.data) for e in events] == [
        ("status", {"status": "queued", "attempt": 0, "error": None})
    ]

    got = client.get(f"/jobs/{job['id']}", headers=admin)
    assert got.status_code == 200 and got.json()["id"] == job["id"] and got.json()["spec"] == spec


def test_a_deadline_is_kept_in_the_job_s_resources(submit: Submit) -> None:
    """``resources.timeout``: the worker's first claim sets ``deadline_at`` from it (tests/worker)."""
    job = submit(resources={"gpus": 0, "timeout": 3600})
    assert job["resources"] == {"gpus": 0, "timeout": 3600.0} and job["deadline_at"] is None


def test_the_task_message_reaches_redis(submit: Submit, broker: redis.Redis) -> None:
    cpu = submit()
    gpu = submit(resources={"gpus": 2})
    assert ("daik.train", [cpu["id"]]) in queued_messages(broker, "daik.gpus.0")
    assert ("daik.train", [gpu["id"]]) in queued_messages(broker, "daik.gpus.2")
    assert ("daik.train", [gpu["id"]]) not in queued_messages(broker, "daik.gpus.0")


def test_unknown_or_malformed_job_id_is_404(client: TestClient, admin: dict[str, str]) -> None:
    assert_problem(client.get(f"/jobs/{uuid.uuid4()}", headers=admin), 404)
    assert_problem(client.get("/jobs/not-a-uuid", headers=admin), 404)
    assert_problem(client.get(f"/jobs/{uuid.uuid4()}/metrics", headers=admin), 404)
    assert_problem(client.post("/jobs/42/cancel", headers=admin), 404)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hparams": {"epochz": 3}}, "hparams.epochz"),  # unknown key
        ({"hparams": {"epochs": -1}}, "hparams.epochs"),
        ({"hparams": {"imgsz": 100}}, "hparams.imgsz"),  # not a multiple of 32
        ({"student": {"preset": "xl"}}, "student.preset"),
        ({"name": "bad name!"}, "name"),
        ({"kind": "finetune"}, "kind"),
        ({"output": "/tmp/elsewhere"}, "output"),
        ({"resources": {"gpus": -1}}, "resources.gpus"),
        ({"resources": {"gpus": 0, "timeout": 0}}, "resources.timeout"),
        ({"resources": {"gpus": 1, "tpus": 1}}, "resources.tpus"),
        ({"max_restarts": 101}, "max_restarts"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"kind": "distill"}, "teacher"),  # a distill job without a teacher
        ({"teacher": {"checkpoint": "x.pt"}}, "teacher"),  # a train job with one
        ({"teacher": {"kind": "distill"}}, "teacher.kind"),
        ({"surprise": 1}, "surprise"),
        ({"hparams": {"epochs": 10**6}}, "hparams.epochs"),  # beyond what job.total_epochs stores
        ({"hparams": {"mlflow": "file:///srv/elsewhere"}}, "hparams.mlflow"),  # writes on the worker's disk
        ({"hparams": {"mlflow": "sqlite:////tmp/x.db"}}, "hparams.mlflow"),
        (
            {"dataset": {"train": "x", "val": "y", "classes": "a,b\u0000"}},
            "dataset.classes",
        ),  # NUL: PG cannot store it
    ],
)
def test_invalid_spec_is_422_naming_the_field(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], overrides: dict[str, Any], field: str
) -> None:
    assert_problem(client.post("/jobs", json=job_body(dota, **overrides), headers=admin), 422, field=field)


def test_missing_dataset_and_bad_classes(
    client: TestClient, admin: dict[str, str], dota: dict[str, str]
) -> None:
    body = job_body(dota)
    del body["dataset"]
    assert_problem(client.post("/jobs", json=body, headers=admin), 422, field="dataset")
    bad = job_body(dota, dataset={"train": dota["train"], "val": dota["val"], "classes": "a,a"})
    assert_problem(client.post("/jobs", json=bad, headers=admin), 422, field="dataset.classes")
    not_json = client.post("/jobs", content=b"{", headers={**admin, "content-type": "application/json"})
    assert_problem(not_json, 422)


@pytest.mark.parametrize(
    ("train", "field"),
    [
        ("no-such-folder", "dataset.train"),  # neither a folder nor a registered name
        ("../outside", "dataset.train"),
        ("{train}/../{train}", "dataset.train"),  # `..` is refused even when it stays inside
        ("/etc", "dataset.train"),  # absolute, outside the data root
        ("{train}/images", "dataset.train"),  # a folder, but not in DOTA layout
    ],
)
def test_bad_dataset_path_is_422(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], train: str, field: str
) -> None:
    dataset = {"train": train.format(train=dota["train"]), "val": dota["val"]}
    r = client.post("/jobs", json=job_body(dota, dataset=dataset), headers=admin)
    assert_problem(r, 422, field=field)


def test_bad_val_path_is_422_naming_val(
    client: TestClient, admin: dict[str, str], dota: dict[str, str]
) -> None:
    dataset = {"train": dota["train"], "val": "../val"}
    assert_problem(
        client.post("/jobs", json=job_body(dota, dataset=dataset), headers=admin), 422, "dataset.val"
    )


def test_symlink_escaping_the_data_root_is_422(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    outside = write_dota(tmp_path / "outside")
    os.symlink(outside, data_dir / "link")
    link = f"{data_dir.name}/link"
    r = client.post("/jobs", json=job_body(dota, dataset={"train": link, "val": dota["val"]}), headers=admin)
    assert_problem(r, 422, field="dataset.train")


def test_absolute_path_under_the_root_is_accepted(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], settings: Settings
) -> None:
    absolute = str(settings.data_dir / dota["train"])
    r = client.post(
        "/jobs", json=job_body(dota, dataset={"train": absolute, "val": dota["val"]}), headers=admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["dataset"]["train"] == str((settings.data_dir / dota["train"]).resolve())


def test_a_job_without_val_is_422(client: TestClient, admin: dict[str, str], dota: dict[str, str]) -> None:
    r = client.post("/jobs", json=job_body(dota, dataset={"train": dota["train"]}), headers=admin)
    assert_problem(r, 422, field="dataset.val")


def test_registered_dataset_brings_its_folders_and_classes(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], settings: Settings
) -> None:
    reg = {"name": "tiny", "train": dota["train"], "val": dota["val"], "classes": ["plane", "ship", "car"]}
    assert client.post("/datasets", json=reg, headers=admin).status_code == 201
    r = client.post("/jobs", json=job_body(dota, dataset={"train": "tiny"}), headers=admin)
    assert r.status_code == 201, r.text
    dataset = r.json()["spec"]["dataset"]
    root = settings.data_dir.resolve()
    assert dataset["train"] == str(root / dota["train"]) and dataset["val"] == str(root / dota["val"])
    assert dataset["classes"] == ["plane", "ship", "car"]

    no_val = {"name": "noval", "train": dota["train"]}
    assert client.post("/datasets", json=no_val, headers=admin).status_code == 201
    r = client.post("/jobs", json=job_body(dota, dataset={"train": "noval"}), headers=admin)
    assert_problem(r, 422, field="dataset.val")


def _succeeded_teacher(submit: Submit, db: sessionmaker[Session], settings: Settings) -> tuple[str, Path]:
    """A succeeded job with a best checkpoint on disk: (its id, the absolute checkpoint path)."""
    teacher = submit(name="teacher")
    relative = f"jobs/{teacher['id']}/weights/best.pt"
    path = settings.artifact_dir / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    set_job(db, teacher["id"], status="succeeded", final_map50=0.5, final_map50_95=0.3)
    with db() as session:
        session.add(
            Checkpoint(
                job_id=uuid.UUID(teacher["id"]), attempt=1, epoch=2, step=8, path=relative, is_best=True
            )
        )
        session.commit()
    return teacher["id"], path.resolve()


def test_teacher_job_becomes_its_best_checkpoint(
    submit: Submit, db: sessionmaker[Session], settings: Settings
) -> None:
    teacher_id, best = _succeeded_teacher(submit, db, settings)
    student = submit(name="student", kind="distill", teacher={"job": teacher_id})
    assert student["kind"] == "distill"
    assert student["spec"]["teacher"] == {"checkpoint": str(best), "job": None}


def test_teacher_checkpoint_path_is_resolved_under_the_artifact_root(
    submit: Submit, db: sessionmaker[Session], settings: Settings
) -> None:
    _teacher_id, best = _succeeded_teacher(submit, db, settings)
    relative = best.relative_to(settings.artifact_dir.resolve()).as_posix()
    student = submit(name="student", kind="distill", teacher={"checkpoint": relative})
    assert student["spec"]["teacher"]["checkpoint"] == str(best)


@pytest.mark.parametrize("teacher", ["running", "unknown", "malformed", "escape", "missing-file"])
def test_bad_teacher_is_422(
    client: TestClient,
    admin: dict[str, str],
    dota: dict[str, str],
    submit: Submit,
    db: sessionmaker[Session],
    teacher: str,
) -> None:
    if teacher == "running":
        other = submit(name="busy")
        set_job(db, other["id"], status="running")
        spec, field = {"job": other["id"]}, "teacher.job"
    elif teacher == "unknown":
        spec, field = {"job": str(uuid.uuid4())}, "teacher.job"
    elif teacher == "malformed":
        spec, field = {"job": "not-a-uuid"}, "teacher.job"
    elif teacher == "escape":
        spec, field = {"checkpoint": "../../etc/passwd"}, "teacher.checkpoint"
    else:
        spec, field = {"checkpoint": "jobs/nothing/weights/best.pt"}, "teacher.checkpoint"
    body = job_body(dota, kind="distill", teacher=spec)
    assert_problem(client.post("/jobs", json=body, headers=admin), 422, field=field)


def test_body_over_the_limit_is_413(client: TestClient, admin: dict[str, str], dota: dict[str, str]) -> None:
    from tests.service.conftest import MAX_REQUEST_BYTES

    body = job_body(dota, name="x" * (MAX_REQUEST_BYTES + 10))
    assert_problem(client.post("/jobs", json=body, headers=admin), 413)


def test_a_failed_send_leaves_the_job_queued_for_the_redispatcher(
    pg_url: str, roots: Path, make_token: Callable[..., str], dota: dict[str, str], db: sessionmaker[Session]
) -> None:
    from service.main import create_app
    from tests.service.conftest import make_settings
    from tests.service.helpers import bearer

    settings = make_settings(pg_url, roots, broker_url="redis://127.0.0.1:1/0")  # nothing listens there
    with TestClient(create_app(settings)) as c:
        r = c.post("/jobs", json=job_body(dota), headers=bearer(make_token("jobs:write")))
    assert r.status_code == 201, r.text
    with db() as session:
        row = session.get(Job, uuid.UUID(r.json()["id"]))
        assert row is not None and row.status == "queued" and row.dispatched_at is None


def test_a_teacher_of_other_classes_or_reg_max_is_422_at_submission(
    client: TestClient,
    admin: dict[str, str],
    dota: dict[str, str],
    submit: Submit,
    db: sessionmaker[Session],
    settings: Settings,
) -> None:
    teacher_id, best = _succeeded_teacher(submit, db, settings)  # trained on plane,ship (job_body)
    r = client.post(
        "/jobs",
        json=job_body(
            dota,
            kind="distill",
            teacher={"job": teacher_id},
            dataset={**job_body(dota)["dataset"], "classes": "plane,ship,harbor"},
        ),
        headers=admin,
    )
    problem = assert_problem(r, 422, field="teacher.job")
    assert "other classes (plane, ship) than this job's (plane, ship, harbor)" in problem["detail"]
    r = client.post(
        "/jobs",
        json=job_body(
            dota, kind="distill", teacher={"job": teacher_id}, student={"preset": "n", "reg_max": 8}
        ),
        headers=admin,
    )
    assert "reg_max 16, this job's student 8" in assert_problem(r, 422, field="teacher.job")["detail"]
    # a checkpoint path: its run's spec.yaml (written by `daik train` next to weights/) is read the same way
    (best.parent.parent / "spec.yaml").write_text(
        yaml.safe_dump({**job_body(dota), "dataset": {"train": "x", "val": "y", "classes": "plane,harbor"}})
    )
    relative = str(best.relative_to(settings.artifact_dir.resolve()))
    r = client.post(
        "/jobs", json=job_body(dota, kind="distill", teacher={"checkpoint": relative}), headers=admin
    )
    assert "other classes (plane, harbor)" in assert_problem(r, 422, field="teacher.checkpoint")["detail"]
    # the same classes: accepted
    ok = client.post("/jobs", json=job_body(dota, kind="distill", teacher={"job": teacher_id}), headers=admin)
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"a": "ok", "b": [1, "fine", {"c": None}]}, None),
        ({"a": {"k": ["z", "q\x00"]}}, "a.k.1"),
        ({"bad\x00key": 1}, "bad\x00key"),
        ("plain\x00", "(body)"),
        ({"n": 1.5, "t": (True, "x\x00")}, "t.1"),
    ],
)
def test_reject_nul_names_the_first_string_holding_a_nul(value: Any, field: str | None) -> None:
    if field is None:
        reject_nul(value)  # the fast path: no NUL anywhere
        return
    with pytest.raises(Problem) as err:
        reject_nul(value)
    assert err.value.errors is not None and err.value.errors[0].field == field
