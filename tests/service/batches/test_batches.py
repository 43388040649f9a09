"""``/batches`` on a real PostgreSQL database: materialisation (idempotent, teacher row skipped), field-named
422s, Idempotency-Key, the verbs (held claims, 409, If-Match 412) and the results table against hand-computed
numbers and ``daik ablate``'s own writer."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.batches.service import materialise, records
from service.db.models import Batch, BatchCell, Job
from service.settings import Settings
from tests.service.helpers import assert_problem, job_body, set_job
from worker.pipelines import claim_job

AAL_GRID = [{"name": "baseline", "losses": {}}, {"name": "+AAL", "losses": {"aal": {"enabled": True}}}]


def _body(dota: dict[str, str], **overrides: Any) -> dict[str, Any]:
    base = job_body(dota, name="abl", hparams={"epochs": 2, "batch": 2, "imgsz": 64, "seed": 0})
    body: dict[str, Any] = {"base": base, "grid": AAL_GRID, "seeds": 3}
    body.update(overrides)
    return body


def _post(client: TestClient, admin: dict[str, str], body: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = client.post("/batches", json=body, headers={**admin, **headers})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_a_batch_materialises_one_job_per_cell_and_seed_once(
    client: TestClient,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
    settings: Settings,
) -> None:
    batch = _post(client, admin, _body(dota))
    assert batch["status"] == "active" and batch["jobs"] == 6
    assert batch["seeds"] == [0, 1, 2] and batch["grid"] == ["baseline", "+AAL"]
    assert batch["counts"]["queued"] == 6
    assert sorted((c["config"], c["seed"]) for c in batch["cells"]) == sorted(
        (c, s) for c in ("baseline", "+AAL") for s in (0, 1, 2)
    )
    with db() as s:
        jobs = {j.name: j for j in s.scalars(select(Job))}
        assert set(jobs) == {f"abl-{c}-s{k}" for c in ("baseline", "plus-aal") for k in range(3)}
        assert jobs["abl-plus-aal-s2"].spec["losses"]["aal"]["enabled"] is True
        assert jobs["abl-plus-aal-s2"].spec["hparams"]["seed"] == 2
        assert jobs["abl-baseline-s1"].spec["losses"]["aal"]["enabled"] is False
        # materialising again creates nothing
        row = s.get_one(Batch, uuid.UUID(batch["id"]))
        assert materialise(s, settings, row) == []
        s.commit()
        assert s.scalar(select(func.count()).select_from(BatchCell)) == 6
        assert s.scalar(select(func.count()).select_from(Job)) == 6


def test_the_teacher_row_trains_nothing(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], db: sessionmaker[Session]
) -> None:
    teacher = client.post("/jobs", json=job_body(dota, name="teach"), headers=admin).json()
    grid = [{"name": "teacher", "teacher": True}, *AAL_GRID]
    base = _body(dota)["base"] | {"kind": "distill", "teacher": {"job": teacher["id"]}}
    batch = _post(client, admin, {"base": base, "grid": grid, "seeds": [7]})
    assert batch["jobs"] == 2 and batch["teacher_job_id"] == teacher["id"]
    assert batch["grid"] == ["teacher", "baseline", "+AAL"]


def test_a_registered_dataset_brings_its_folders_to_every_cell(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], settings: Settings
) -> None:
    reg = {"name": "abl-data", "train": dota["train"], "val": dota["val"], "classes": ["plane", "ship"]}
    assert client.post("/datasets", json=reg, headers=admin).status_code == 201
    body = _body(dota, seeds=1)
    body["base"]["dataset"] = {"train": "abl-data"}
    batch = _post(client, admin, body)
    root = settings.data_dir.resolve()
    for cell in batch["cells"]:
        spec = client.get(f"/jobs/{cell['job_id']}", headers=admin).json()["spec"]
        assert spec["dataset"]["val"] == str(root / dota["val"])
        assert spec["dataset"]["classes"] == ["plane", "ship"]


def test_validation_names_the_field(client: TestClient, admin: dict[str, str], dota: dict[str, str]) -> None:
    grid = [*AAL_GRID, {"name": "bad", "losses": {"ad": {"weight": "heavy"}}}]
    r = client.post("/batches", json=_body(dota, grid=grid), headers=admin)
    assert_problem(r, 422, "grid[2].losses.ad.weight")
    r = client.post("/batches", json=_body(dota, grid="nope"), headers=admin)
    assert_problem(r, 422, "grid")
    # a cell that reads the teacher, with no teacher in the base
    r = client.post(
        "/batches",
        json=_body(dota, grid=[{"name": "ad", "losses": {"ad": {"enabled": True}}}]),
        headers=admin,
    )
    assert_problem(r, 422, "grid[0]")
    r = client.post("/batches", json=_body(dota, seeds=0), headers=admin)
    assert_problem(r, 422, "seeds")
    two_same = [{"name": "a", "losses": {}}, {"name": "b", "losses": {}}]
    assert_problem(client.post("/batches", json=_body(dota, grid=two_same), headers=admin), 422, "grid[1]")


def test_idempotency_key_replays(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], db: sessionmaker[Session]
) -> None:
    body = _body(dota, seeds=1)
    first = _post(client, admin, body, **{"Idempotency-Key": "k1"})
    r = client.post("/batches", json=body, headers={**admin, "Idempotency-Key": "k1"})
    assert r.status_code == 201 and r.json()["id"] == first["id"]
    assert r.headers["Idempotent-Replayed"] == "true"
    r = client.post("/batches", json=_body(dota, seeds=2), headers={**admin, "Idempotency-Key": "k1"})
    assert_problem(r, 422, "Idempotency-Key")
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 2


def test_pause_holds_queued_jobs_and_resume_releases_them(
    client: TestClient,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
    settings: Settings,
) -> None:
    batch = _post(client, admin, _body(dota, seeds=1))
    job_ids = [uuid.UUID(c["job_id"]) for c in batch["cells"]]
    r = client.post(f"/batches/{batch['id']}/pause", headers={**admin, "If-Match": batch["etag"]})
    assert r.status_code == 202 and r.json()["status"] == "paused"
    paused_etag = r.headers["ETag"]
    assert paused_etag != batch["etag"]
    assert claim_job(db, settings, job_ids[0], owner="w") is None  # held: the message is a no-op
    # a stale If-Match: 412; an illegal verb: 409; pausing again: 202, nothing changes
    assert_problem(
        client.post(f"/batches/{batch['id']}/resume", headers={**admin, "If-Match": batch["etag"]}), 412
    )
    again = client.post(f"/batches/{batch['id']}/pause", headers=admin)
    assert again.status_code == 202 and again.headers["ETag"] == paused_etag
    r = client.post(f"/batches/{batch['id']}/resume", headers={**admin, "If-Match": paused_etag})
    assert r.status_code == 202 and r.json()["status"] == "active"
    claimed = claim_job(db, settings, job_ids[0], owner="w")
    assert claimed is not None and claimed.attempt == 1

    r = client.post(f"/batches/{batch['id']}/stop", headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "stopped"
    assert r.json()["counts"]["running"] == 1 and r.json()["counts"]["cancelled"] == 1  # running goes on
    assert_problem(client.post(f"/batches/{batch['id']}/resume", headers=admin), 409)
    assert_problem(client.post(f"/batches/{batch['id']}/rerun-failed", headers=admin), 409)
    r = client.post(f"/batches/{batch['id']}/cancel", headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert r.json()["counts"]["cancelling"] == 1  # the running job is asked to stop


def test_rerun_failed_retries_only_failed_jobs(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], db: sessionmaker[Session]
) -> None:
    batch = _post(client, admin, _body(dota, seeds=2))
    cells = batch["cells"]
    set_job(db, cells[0]["job_id"], status="failed", failure_kind="lost", attempt=1)
    set_job(db, cells[1]["job_id"], status="succeeded", final_map50=0.5, attempt=1)
    set_job(db, cells[2]["job_id"], status="cancelled", attempt=1)
    r = client.post(f"/batches/{batch['id']}/rerun-failed", headers=admin)
    assert r.status_code == 202
    assert r.json()["counts"] == {
        "queued": 2, "running": 0, "cancelling": 0, "succeeded": 1, "failed": 0, "cancelled": 1
    }  # fmt: skip


def test_list_pages_with_a_cursor(client: TestClient, admin: dict[str, str], dota: dict[str, str]) -> None:
    ids = [_post(client, admin, _body(dota, seeds=1, name=f"b{k}"))["id"] for k in range(3)]
    r = client.get("/batches?limit=2", headers=admin)
    page = r.json()
    assert [b["id"] for b in page["items"]] == ids[::-1][:2]
    r = client.get(f"/batches?limit=2&cursor={page['next_cursor']}", headers=admin)
    assert [b["id"] for b in r.json()["items"]] == [ids[0]] and r.json()["next_cursor"] is None
    got = client.get(f"/batches/{ids[0]}", headers=admin)
    assert got.status_code == 200 and got.headers["ETag"] == got.json()["etag"]
    assert_problem(client.get(f"/batches/{uuid.uuid4()}", headers=admin), 404)


# --- results: 2 configurations x 3 seeds, checked by hand -------------------------------------------------

ENV_A = {"id": "aaaaaaaaaaaa", "device": "cuda", "device_name": "gpu-a", "torch": "2.13.0", "threads": 4}
ENV_B = {"id": "bbbbbbbbbbbb", "device": "cuda", "device_name": "gpu-b", "torch": "2.13.0", "threads": 4}
BASE_MAP50 = {0: 0.50, 1: 0.52, 2: 0.54}
AAL_MAP50 = {0: 0.53, 1: 0.56, 2: 0.56}


def test_results_match_hand_computed_values_and_daik_ablate(
    client: TestClient, admin: dict[str, str], dota: dict[str, str], db: sessionmaker[Session], tmp_path: Path
) -> None:
    batch = _post(client, admin, _body(dota))
    for cell in batch["cells"]:
        m50 = (BASE_MAP50 if cell["config"] == "baseline" else AAL_MAP50)[cell["seed"]]
        set_job(
            db,
            cell["job_id"],
            status="succeeded",
            final_map50=m50,
            final_map50_95=m50 / 2,
            results={
                "ap50": {"plane": m50 + 0.1, "ship": m50 - 0.1},
                "params": 1000,
                "gflops": 1.5,
                # one job trained on another worker's machine
                "environments": [ENV_B if (cell["config"], cell["seed"]) == ("+AAL", 2) else ENV_A],
            },
        )
    r = client.get(f"/batches/{batch['id']}/results", headers=admin)
    assert r.status_code == 200
    table = r.json()
    assert table["complete"] is True and table["seeds"] == [0, 1, 2]
    base, aal = table["rows"]
    assert base["config"] == "baseline" and aal["config"] == "+AAL"
    assert math.isclose(base["map50"]["mean"], 0.52) and math.isclose(base["map50"]["std"], 0.02)
    assert math.isclose(aal["map50"]["mean"], 0.55)
    assert math.isclose(aal["map50"]["std"], math.sqrt(0.0003))  # deviations -0.02, 0.01, 0.01
    assert math.isclose(aal["ap50"]["plane"]["mean"], 0.65)
    # paired differences 0.03, 0.04, 0.02: mean 0.03, sd 0.01, t(2) = 4.303
    delta = aal["delta_map50"]
    half = 4.303 * 0.01 / math.sqrt(3)
    assert delta["n"] == 3 and math.isclose(delta["mean"], 0.03)
    assert math.isclose(delta["ci95"][0], 0.03 - half) and math.isclose(delta["ci95"][1], 0.03 + half)
    assert math.isclose(aal["delta_map50_95"]["mean"], 0.015)
    assert base["delta_map50"] is None
    # the table names its jobs' compute environments and warns that they differ
    assert [e["id"] for e in table["environments"]] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    (warning,) = table["warnings"]
    assert (
        "2 compute environments" in warning
        and "bbbbbbbbbbbb (gpu-b, torch 2.13.0, 4 threads): +AAL seed 2" in warning
    )

    # the same records through daik ablate's writer give the same table, in every format
    from daik_core.ablation.runner import write_table

    with db() as s:
        recs = records(s, s.get_one(Batch, uuid.UUID(batch["id"])))
    write_table(tmp_path, recs, ["baseline", "+AAL"], spec="abl", seeds=[0, 1, 2])
    assert json.loads((tmp_path / "ablation.json").read_text())["rows"] == table["rows"]
    csv = client.get(f"/batches/{batch['id']}/results?format=csv", headers=admin)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text == (tmp_path / "ablation.csv").read_text()
    md = client.get(f"/batches/{batch['id']}/results", headers={**admin, "Accept": "text/markdown"})
    assert md.headers["content-type"].startswith("text/markdown")
    assert md.text == (tmp_path / "ablation.md").read_text()
    assert "+0.0300 [+0.0052, +0.0548]" in md.text
