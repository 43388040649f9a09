"""A run's pictures through the service: ``GET /jobs/{id}/plots`` and ``/plots/{name}`` (known names only,
files only inside the artifact root), the job page's images, the compare view (overlaid curves and the
specs' differences) and the submit form's lists of datasets and teachers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from daik_core.plots import RUN_PLOT_FILES, VAL_PRED_IMAGES, val_pred_name
from service.artifacts.service import PLOT_NAMES
from service.dashboard.service import flatten_spec, spec_differences
from service.db.models import Metric
from service.settings import Settings
from tests.service.conftest import TokenFactory
from tests.service.dashboard.test_dashboard import login, ui  # noqa: F401  (the fixture)
from tests.service.helpers import PNG_1X1, assert_problem, set_job

Submit = Callable[..., dict[str, Any]]
JPEG = b"\xff\xd8\xff\xe0fake-jpeg"


def test_the_service_serves_exactly_the_pictures_a_run_draws() -> None:
    assert set(PLOT_NAMES) == {*RUN_PLOT_FILES, *(val_pred_name(i) for i in range(VAL_PRED_IMAGES))}


def _attempt_dir(settings: Settings, job: dict[str, Any], attempt: int) -> Path:
    out = settings.artifact_dir / "jobs" / job["id"] / f"attempt-{attempt}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_list_and_get_plots(
    client: TestClient,
    admin: dict[str, str],
    submit: Submit,
    settings: Settings,
    db: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    job = submit(name="plots")
    jid = job["id"]
    assert client.get(f"/jobs/{jid}/plots", headers=admin).json() == {"items": []}
    old = _attempt_dir(settings, job, 1)
    (old / "labels.png").write_bytes(b"old attempt")
    out = _attempt_dir(settings, job, 2)
    (out / "results.png").write_bytes(PNG_1X1)
    (out / "val_pred_0.jpg").write_bytes(JPEG)
    (out / "metrics.jsonl").write_text("{}\n")  # in the folder, but not a plot
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    (out / "pr_curve.png").symlink_to(secret)  # a link out of the artifact root
    set_job(db, jid, attempt=2)

    items = client.get(f"/jobs/{jid}/plots", headers=admin).json()["items"]
    assert [(i["name"], i["url"]) for i in items] == [
        ("results.png", f"/jobs/{jid}/plots/results.png"),
        ("val_pred_0.jpg", f"/jobs/{jid}/plots/val_pred_0.jpg"),
    ]
    r = client.get(f"/jobs/{jid}/plots/results.png", headers=admin)
    assert r.status_code == 200 and r.content == PNG_1X1 and r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = client.get(f"/jobs/{jid}/plots/val_pred_0.jpg", headers=admin)
    assert r.status_code == 200 and r.content == JPEG and r.headers["content-type"] == "image/jpeg"
    # not a plot name, traversal, a link out of the root, another attempt's file, no token, no job
    for name in ("metrics.jsonl", "..%2Fattempt-1%2Flabels.png", "%2E%2E", "pr_curve.png", "labels.png"):
        r = client.get(f"/jobs/{jid}/plots/{name}", headers=admin)
        assert r.status_code == 404, (name, r.text)
    assert_problem(client.get(f"/jobs/{jid}/plots/metrics.jsonl", headers=admin), 404)
    assert client.get(f"/jobs/{jid}/plots/results.png").status_code == 401
    assert_problem(client.get(f"/jobs/{uuid.uuid4()}/plots/results.png", headers=admin), 404)


def test_the_job_page_shows_the_plots_that_exist(
    ui: TestClient,  # noqa: F811
    make_token: TokenFactory,
    submit: Submit,
    settings: Settings,
    db: sessionmaker[Session],
) -> None:
    job = submit(name="pictures")
    login(ui, make_token("jobs:read"))
    html = ui.get(f"/ui/jobs/{job['id']}").text
    assert 'id="plots"' in html and "<img" not in html and "the plots appear when the run" in html
    out = _attempt_dir(settings, job, 1)
    for name in ("results.png", "confusion_matrix.png"):
        (out / name).write_bytes(PNG_1X1)
    set_job(db, job["id"], attempt=1)
    html = ui.get(f"/ui/jobs/{job['id']}").text
    for name in ("results.png", "confusion_matrix.png"):
        assert f'<img src="/jobs/{job["id"]}/plots/{name}" alt="{name}"' in html
    assert "pr_curve.png" not in html and "labels.png" not in html
    # the image's URL works with the dashboard's cookie session
    r = ui.get(f"/jobs/{job['id']}/plots/results.png")
    assert r.status_code == 200 and r.content == PNG_1X1


def test_flatten_and_differences() -> None:
    a = {"name": "a", "hparams": {"epochs": 10, "lr": 0.01}, "losses": {"ad": {"enabled": True}}, "x": [1, 2]}
    b = {"name": "b", "hparams": {"epochs": 10, "lr": 0.02}, "losses": {}, "x": [1, 2]}
    assert flatten_spec(a) == {
        "hparams.epochs": "10",
        "hparams.lr": "0.01",
        "losses.ad.enabled": "true",
        "name": '"a"',
        "x": "[1,2]",
    }
    assert spec_differences([a, b]) == [
        ("hparams.lr", ["0.01", "0.02"]),
        ("losses", [None, "{}"]),
        ("losses.ad.enabled", ["true", None]),
        ("name", ['"a"', '"b"']),
    ]
    assert spec_differences([a, a]) == []


def test_compare_view_overlays_curves_and_lists_spec_differences(
    ui: TestClient,  # noqa: F811
    make_token: TokenFactory,
    submit: Submit,
    db: sessionmaker[Session],
) -> None:
    a = submit(name="cmp-a", hparams={"epochs": 3, "imgsz": 64, "batch": 2, "lr": 0.01})
    b = submit(name="cmp-b", hparams={"epochs": 3, "imgsz": 64, "batch": 2, "lr": 0.02})
    with db() as session:
        for job, scale in ((a, 1.0), (b, 0.5)):
            jid = uuid.UUID(job["id"])
            for epoch in (1, 2, 3):
                session.add(
                    Metric(
                        job_id=jid, key="loss", step=epoch * 5, value=scale / epoch, epoch=epoch, attempt=1
                    )
                )
                session.add(
                    Metric(job_id=jid, key="loss_cls", step=epoch * 5, value=scale, epoch=epoch, attempt=1)
                )
                session.add(
                    Metric(job_id=jid, key="map50", step=epoch * 5, value=0.1 * epoch, epoch=epoch, attempt=1)
                )
        session.commit()
    login(ui, make_token("jobs:read"))
    jobs_page = ui.get("/ui/jobs").text
    assert 'id="compare-form"' in jobs_page
    assert f'<input type="checkbox" name="job" value="{a["id"]}" form="compare-form"' in jobs_page

    r = ui.get(f"/ui/compare?job={a['id']}&job={b['id']}")
    assert r.status_code == 200, r.text
    html = r.text
    la, lb = f"cmp-a ({a['id'][:8]})", f"cmp-b ({b['id'][:8]})"
    # one chart per key, a line per job in each
    for title in ("mAP50", "loss_cls", "loss"):
        assert f"<figcaption>{title}</figcaption>" in html
    assert html.count(f'data-series="{la}"') == 3 and html.count(f'data-series="{lb}"') == 3
    # the differing fields only: the name and the learning rate, not the shared epochs
    assert 'id="spec-diff"' in html
    assert '<tr data-key="hparams.lr"><th>hparams.lr</th><td>0.01</td><td>0.02</td></tr>' in html
    assert 'data-key="name"' in html and 'data-key="hparams.epochs"' not in html

    assert ui.get(f"/ui/compare?job={a['id']}").status_code == 400  # one job is no comparison
    assert ui.get(f"/ui/compare?job={a['id']}&job={uuid.uuid4()}").status_code == 404
    many = "&".join(f"job={uuid.uuid4()}" for _ in range(9))
    assert ui.get(f"/ui/compare?{many}").status_code == 400


def test_submit_form_lists_datasets_and_succeeded_teachers(
    ui: TestClient,  # noqa: F811
    client: TestClient,
    admin: dict[str, str],
    make_token: TokenFactory,
    submit: Submit,
    dota: dict[str, str],
    db: sessionmaker[Session],
) -> None:
    r = client.post("/datasets", json={"name": "form-ds", **dota, "classes": "plane,ship"}, headers=admin)
    assert r.status_code == 201, r.text
    teacher = submit(name="the-teacher")
    running = submit(name="still-running")
    set_job(db, teacher["id"], status="succeeded", final_map50=0.42)
    login(ui, make_token("jobs:read", "jobs:write"))
    html = ui.get("/ui/jobs/new").text
    assert '<select name="dataset" data-field="dataset.train" required>' in html
    assert '<option value="form-ds">form-ds</option>' in html
    assert '<select name="teacher" data-field="teacher.job">' in html
    assert (
        f'<option value="{teacher["id"]}">the-teacher · train · mAP50 0.4200 · {teacher["id"][:8]}</option>'
        in html
    )
    assert running["id"] not in html
    # the classes hint is one element, so the label's column layout keeps it on one line
    assert "<span>Classes (optional: a named list or <code>a,b,c</code>)</span>" in html
