"""The dashboard (``/ui``) and its cookie session through ``TestClient`` on the test PostgreSQL: login and
logout, the cookie accepted by the JSON API, CSRF on cookie-authenticated unsafe methods, a revoked or
expired token ending its sessions, the pages (list, job, form, 404), and the gallery's path confinement.
The pages' scripts run in the browser tests (``tests/browser``)."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.auth.session import SESSION_COOKIE, SessionSigner, load_session_secret
from service.dashboard.service import line_chart, loss_keys
from service.db.models import ApiToken, Attempt, EvalResult, JobEvent, Metric
from service.jobs.feed import feed_events, feed_item, latest_event_id
from service.main import create_app
from service.settings import Settings
from tests.service.conftest import TokenFactory, make_settings
from tests.service.helpers import PNG_1X1, bearer, job_body, set_job

Submit = Callable[..., dict[str, Any]]
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def ui(client: TestClient) -> Iterator[TestClient]:
    """The shared client without cookies before and after the test (the session lives in its jar)."""
    client.cookies.clear()
    yield client
    client.cookies.clear()


def login(client: TestClient, token: str, next_path: str = "/ui/jobs") -> str:
    """Sign in through the form; returns the session's CSRF token (read from a page, as the scripts do)."""
    r = client.post(
        "/ui/login",
        content=f"token={token}&next={next_path}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == next_path
    page = client.get("/ui/jobs")
    assert page.status_code == 200, page.text
    match = CSRF_META.search(page.text)
    assert match is not None
    return match.group(1)


def token_id(db: sessionmaker[Session], name: str) -> int:
    with db() as session:
        return session.scalars(select(ApiToken.id).where(ApiToken.name == name)).one()


# ------------------------------------------------------------------------------------------------ session


def test_login_sets_a_signed_httponly_strict_cookie_holding_no_token(
    ui: TestClient, make_token: TokenFactory
) -> None:
    plain = make_token("jobs:read", name="reader")
    page = ui.get("/ui/login")
    assert page.status_code == 200 and 'name="token"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]

    r = ui.post(
        "/ui/login",
        content=f"token={plain}&next=/ui/jobs",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "secure" not in lowered  # served over http here; https adds Secure
    value = ui.cookies[SESSION_COOKIE]
    assert plain not in value and plain[5:20] not in value
    assert ui.get("/ui/jobs").status_code == 200


@pytest.mark.parametrize(
    ("cookie_secure", "base_url", "secure"),
    [
        ("auto", "http://testserver", False),
        ("auto", "https://testserver", True),
        (True, "http://testserver", True),  # behind a TLS proxy that forwards plain http
        (False, "https://testserver", False),
    ],
)
def test_the_session_cookie_is_secure_as_set(
    pg_url: str,
    roots: Path,
    make_token: TokenFactory,
    cookie_secure: bool | str,
    base_url: str,
    secure: bool,
) -> None:
    plain = make_token("jobs:read", name="reader")
    app = create_app(make_settings(pg_url, roots, cookie_secure=cookie_secure))
    with TestClient(app, base_url=base_url) as c:
        r = c.post(
            "/ui/login",
            content=f"token={plain}&next=/ui/jobs",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        attributes = [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
        assert ("secure" in attributes) is secure, attributes
        assert "httponly" in attributes and "samesite=strict" in attributes
        # sent by hand: a client keeps a Secure cookie from plain http (as a browser behind the proxy sends
        # it over https)
        cookie = {"Cookie": r.headers["set-cookie"].split(";")[0]}
        c.cookies.clear()
        csrf = CSRF_META.search(c.get("/ui/jobs", headers=cookie).text)
        assert csrf is not None
        out = c.post(
            "/ui/logout",
            content=f"csrf={csrf.group(1)}",
            headers={"Content-Type": "application/x-www-form-urlencoded", **cookie},
            follow_redirects=False,
        )
        cleared = [a.strip().lower() for a in out.headers["set-cookie"].split(";")]
        assert cleared[0] == f'{SESSION_COOKIE}=""' and ("secure" in cleared) is secure


def test_login_refuses_bad_tokens_and_foreign_origins_and_keeps_next_local(
    ui: TestClient, make_token: TokenFactory
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = ui.post("/ui/login", content="token=daik_nope", headers=form)
    assert r.status_code == 401 and "sign-in refused: invalid token" in r.text
    assert SESSION_COOKIE not in ui.cookies
    r = ui.post("/ui/login", content="token=", headers=form)
    assert r.status_code == 401 and "paste an API token" in r.text

    plain = make_token("jobs:read")
    r = ui.post("/ui/login", content=f"token={plain}", headers={**form, "Origin": "https://evil.example"})
    assert r.status_code == 403 and SESSION_COOKIE not in ui.cookies
    r = ui.post(
        "/ui/login",
        content=f"token={plain}&next=https://evil.example/",
        headers={**form, "Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"  # no open redirect


def test_pages_without_a_session_go_to_the_login_page(ui: TestClient) -> None:
    r = ui.get("/ui/jobs?kind=train", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=%2Fui%2Fjobs%3Fkind%3Dtrain"
    assert ui.get(f"/ui/jobs/{uuid.uuid4()}", follow_redirects=False).status_code == 303
    assert ui.get("/jobs").status_code == 401  # the API: a problem, not a redirect


def test_a_forged_or_expired_cookie_is_no_session(
    ui: TestClient, make_token: TokenFactory, settings: Settings, db: sessionmaker[Session]
) -> None:
    make_token("admin", name="forged")
    tid = token_id(db, "forged")
    other = SessionSigner("not-the-secret", 3600)
    ui.cookies.set(SESSION_COOKIE, other.issue(tid)[0])
    assert ui.get("/jobs").status_code == 401
    r = ui.get("/ui/jobs", follow_redirects=False)
    assert r.status_code == 303 and "reason=" in r.headers["location"]  # "your session has expired"

    ours = SessionSigner(load_session_secret(settings), 3600)
    ui.cookies.set(SESSION_COOKIE, ours.issue(tid, now=0.0)[0])  # its own expiry long past
    assert ui.get("/jobs").status_code == 401
    ui.cookies.set(SESSION_COOKIE, ours.issue(tid)[0])
    assert ui.get("/jobs").status_code == 200


def test_the_session_secret_is_kept_under_home_and_shared(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h", session_secret=None)
    first = load_session_secret(settings)
    assert len(first) >= 40 and load_session_secret(settings) == first
    assert (tmp_path / "h" / "session_secret").stat().st_mode & 0o777 == 0o600
    assert load_session_secret(Settings(home=tmp_path / "h", session_secret="from-env")) == "from-env"


def test_cookie_auth_on_api_routes_and_csrf_on_unsafe_methods(
    ui: TestClient, make_token: TokenFactory, dota: dict[str, str]
) -> None:
    csrf = login(ui, make_token("jobs:read", "jobs:write"))
    assert ui.get("/jobs").status_code == 200
    body = job_body(dota)

    r = ui.post("/jobs", json=body)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    assert ui.post("/jobs", json=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    r = ui.post("/jobs", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert ui.post(f"/jobs/{job_id}/cancel").status_code == 403
    assert ui.post(f"/jobs/{job_id}/cancel", headers={"X-CSRF-Token": csrf}).status_code == 202
    # a bearer token needs no CSRF token (a browser never sends that header by itself)
    ui.cookies.clear()
    r = ui.post("/jobs", json=body, headers=bearer(make_token("jobs:write")))
    assert r.status_code == 201


def test_the_session_keeps_the_tokens_scopes(
    ui: TestClient, make_token: TokenFactory, dota: dict[str, str]
) -> None:
    csrf = login(ui, make_token("jobs:read"))
    r = ui.post("/jobs", json=job_body(dota), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and "jobs:write" in r.json()["detail"]
    assert "Submit a job" not in ui.get("/ui/jobs").text

    ui.cookies.clear()
    plain = make_token("datasets:read")
    ui.post(
        "/ui/login", content=f"token={plain}", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    r = ui.get("/ui/jobs")
    assert r.status_code == 403 and "jobs:read" in r.text


def test_a_revoked_token_ends_its_sessions(
    ui: TestClient, make_token: TokenFactory, admin: dict[str, str], db: sessionmaker[Session]
) -> None:
    login(ui, make_token("jobs:read", name="to-revoke"))
    assert ui.get("/jobs").status_code == 200
    cookie = ui.cookies[SESSION_COOKIE]
    ui.cookies.clear()
    assert ui.post(f"/tokens/{token_id(db, 'to-revoke')}/revoke", headers=admin).status_code == 200
    ui.cookies.set(SESSION_COOKIE, cookie)

    r = ui.get("/jobs")
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"
    r = ui.get("/ui/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=%2Fui%2Fjobs&reason=")
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"]  # the stale cookie is dropped


def test_an_expired_token_ends_its_sessions(
    ui: TestClient, make_token: TokenFactory, db: sessionmaker[Session], app: FastAPI
) -> None:
    login(ui, make_token("jobs:read", name="short", expires_in=dt.timedelta(hours=1)))
    with db() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "short")).one()
        row.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        session.commit()
    app.state.token_cache.forget()  # a change made in the database is seen after the cache's TTL: skip it
    r = ui.get("/jobs")
    assert r.status_code == 401 and r.json()["detail"] == "token expired"


def test_logout_needs_the_csrf_token_and_clears_the_cookie(ui: TestClient, make_token: TokenFactory) -> None:
    csrf = login(ui, make_token("jobs:read"))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = ui.post("/ui/logout", content="csrf=wrong", headers=form, follow_redirects=False)
    assert r.status_code == 403
    assert ui.get("/jobs").status_code == 200
    r = ui.post("/ui/logout", content=f"csrf={csrf}", headers=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert SESSION_COOKIE not in ui.cookies
    assert ui.get("/ui/jobs", follow_redirects=False).status_code == 303


# -------------------------------------------------------------------------------------------------- pages


def test_jobs_list_filters_and_new_job_form(ui: TestClient, make_token: TokenFactory, submit: Submit) -> None:
    a = submit(name="alpha-1")
    b = submit(name="beta-1")
    login(ui, make_token("jobs:read", "jobs:write"))
    page = ui.get("/ui/jobs").text
    assert a["id"] in page and b["id"] in page and 'id="jobs-table"' in page
    page = ui.get("/ui/jobs?name=alpha").text
    assert a["id"] in page and b["id"] not in page
    page = ui.get("/ui/jobs?status=running").text
    assert a["id"] not in page and "No jobs match." in page
    page = ui.get("/ui/jobs?kind=distill").text
    assert a["id"] not in page

    form = ui.get("/ui/jobs/new")
    assert form.status_code == 200
    for field in (
        "name",
        "dataset.train",
        "student.preset",
        "teacher.job",
        "hparams.epochs",
        "hparams.imgsz",
    ):
        assert f'data-field="{field}"' in form.text and f'data-error-for="{field}"' in form.text


def test_job_page_shows_curves_ap_attempts_checkpoints(
    ui: TestClient, make_token: TokenFactory, submit: Submit, db: sessionmaker[Session]
) -> None:
    job = submit(name="shown")
    jid = uuid.UUID(job["id"])
    with db() as session:
        for step, (cls, box) in enumerate([(2.0, 1.5), (1.2, 0.9), (0.8, 0.7)], start=1):
            session.add(Metric(job_id=jid, key="loss_cls", step=step * 10, value=cls, epoch=step, attempt=1))
            session.add(Metric(job_id=jid, key="loss_box", step=step * 10, value=box, epoch=step, attempt=1))
            session.add(
                Metric(job_id=jid, key="loss", step=step * 10, value=cls + box, epoch=step, attempt=1)
            )
            session.add(
                Metric(job_id=jid, key="map50", step=step * 10, value=0.1 * step, epoch=step, attempt=1)
            )
        session.add(
            EvalResult(
                job_id=jid,
                attempt=1,
                epoch=3,
                step=30,
                map50=0.3,
                map50_95=0.1,
                per_class={"ap50": {"plane": 0.4, "ship": 0.2}, "ap50_95": {"plane": 0.15, "ship": None}},
            )
        )
        session.add(
            Attempt(
                job_id=jid, number=1, worker="w1", status="succeeded", exit_code=0, log_tail="epoch 3 done"
            )
        )
        session.commit()
    set_job(db, jid, status="succeeded", final_map50=0.3, progress=1.0, epoch=3)
    login(ui, make_token("admin", name="another-admin"))  # not the job's owner, but an admin

    page = ui.get(f"/ui/jobs/{jid}")
    assert page.status_code == 200
    html = page.text
    for key in ("loss_box", "loss_cls", "loss"):
        assert f'data-series="{key}"' in html
    assert 'data-series="map50"' in html
    assert 'id="ap-table"' in html and "<td>plane</td><td>0.4000</td><td>0.1500</td>" in html
    assert "<td>ship</td><td>0.2000</td><td>–</td>" in html
    assert "epoch 3 done" in html and 'id="retry-job" hidden' in html
    panels = ui.get(f"/ui/jobs/{jid}/panels")
    assert panels.status_code == 200 and 'id="ap-table"' in panels.text and "<html" not in panels.text
    # a jobs:write token that does not own the job gets no buttons (the API would answer 403)
    ui.cookies.clear()
    login(ui, make_token("jobs:read", "jobs:write", name="not-the-owner"))
    html = ui.get(f"/ui/jobs/{jid}").text
    assert "epoch 3 done" in html and 'id="retry-job"' not in html and 'id="cancel-job"' not in html


def test_unknown_job_is_a_404_page(ui: TestClient, make_token: TokenFactory) -> None:
    login(ui, make_token("jobs:read"))
    for job_id in (str(uuid.uuid4()), "not-a-uuid"):
        r = ui.get(f"/ui/jobs/{job_id}")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        assert "Not found" in r.text and job_id in r.text


# ------------------------------------------------------------------------------------------------ gallery


def _gallery(job: dict[str, Any], settings: Settings, images: list[str], attempt: int | None = None) -> Path:
    """``gallery.json`` in the folder of attempt ``attempt`` (where the trainer writes it), or, for
    ``None``, in the job's folder (a job run before attempts had folders of their own)."""
    out = settings.artifact_dir / "jobs" / job["id"]
    if attempt is not None:
        out = out / f"attempt-{attempt}"
    out.mkdir(parents=True, exist_ok=True)
    entries = [
        {
            "image": image,
            "width": 64,
            "height": 32,
            "boxes": [{"class": "plane", "score": 0.9, "poly": [1, 1, 20, 1, 20, 10, 1, 10]}],
        }
        for image in images
    ]
    path = out / "gallery.json"
    path.write_text(json.dumps({"version": 1, "classes": ["plane", "ship"], "images": entries}))
    return path


def test_gallery_draws_polygons_and_serves_images_only_from_the_data_root(
    ui: TestClient,
    make_token: TokenFactory,
    submit: Submit,
    settings: Settings,
    data_dir: Path,
    tmp_path: Path,
    db: sessionmaker[Session],
) -> None:
    job = submit(name="gallery")
    val = Path(job["spec"]["dataset"]["val"])
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG_1X1)
    (val / "images" / "escape.png").symlink_to(secret)  # a symlink out of the data root
    (val / "images" / "notes.txt").write_text("not an image")
    _gallery(job, settings, ["images/missing.png"], attempt=1)  # an earlier attempt's: not shown
    _gallery(
        job,
        settings,
        [
            "images/p0000.png",
            "../../../secret.png",
            str(secret),
            "images/escape.png",
            "images/notes.txt",
            "images/missing.png",
        ],
        attempt=2,
    )
    set_job(db, job["id"], attempt=2)  # the gallery of the job's latest attempt
    login(ui, make_token("jobs:read"))

    html = ui.get(f"/ui/jobs/{job['id']}").text
    assert f'href="/ui/jobs/{job["id"]}/gallery/0"' in html
    assert '<polygon class="box" points="1.0,1.0 20.0,1.0 20.0,10.0 1.0,10.0"' in html
    assert "<title>plane 0.90</title>" in html

    r = ui.get(f"/ui/jobs/{job['id']}/gallery/0")
    assert r.status_code == 200 and r.content == PNG_1X1 and r.headers["content-type"] == "image/png"
    for index in range(1, 7):  # .., absolute, symlink out, not an image, missing, no such entry
        r = ui.get(f"/ui/jobs/{job['id']}/gallery/{index}")
        assert r.status_code == 404, (index, r.text)
    ui.cookies.clear()
    assert ui.get(f"/ui/jobs/{job['id']}/gallery/0", follow_redirects=False).status_code == 303


def test_a_gallery_outside_the_artifact_root_is_not_read(
    ui: TestClient,
    make_token: TokenFactory,
    submit: Submit,
    settings: Settings,
    db: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    job = submit(name="elsewhere")
    _gallery(job, settings, ["images/p0000.png"])
    outside = tmp_path / "out"
    outside.mkdir()
    (outside / "gallery.json").write_text(
        (settings.artifact_dir / "jobs" / job["id"] / "gallery.json").read_text()
    )
    set_job(db, job["id"], output_dir=str(outside))
    login(ui, make_token("jobs:read"))
    assert "/gallery/0" not in ui.get(f"/ui/jobs/{job['id']}").text
    assert ui.get(f"/ui/jobs/{job['id']}/gallery/0").status_code == 404


# ----------------------------------------------------------------------------------- the list's live feed


def test_feed_forwards_status_and_progress_of_all_jobs(
    ui: TestClient, make_token: TokenFactory, submit: Submit, db: sessionmaker[Session]
) -> None:
    with db() as session:
        start = latest_event_id(session)
    a, b = submit(name="feed-a"), submit(name="feed-b")
    with db() as session:
        session.add(
            JobEvent(
                job_id=uuid.UUID(a["id"]), type="progress", data={"epoch": 1, "progress": 0.25}, attempt=1
            )
        )
        session.add(JobEvent(job_id=uuid.UUID(a["id"]), type="checkpoint", data={"path": "x"}, attempt=1))
        session.add(
            JobEvent(job_id=uuid.UUID(b["id"]), type="epoch", data={"epoch": 2, "progress": 0.5}, attempt=1)
        )
        session.commit()
        events = feed_events(session, start)
        assert latest_event_id(session) > start
    items = [feed_item(job_id, type_, data) for _id, job_id, type_, data in events]
    assert items == [
        ("status", {"job_id": a["id"], "status": "queued", "attempt": 0, "error": None}),
        ("status", {"job_id": b["id"], "status": "queued", "attempt": 0, "error": None}),
        ("progress", {"job_id": a["id"], "progress": 0.25, "epoch": 1}),
        ("progress", {"job_id": b["id"], "progress": 0.5, "epoch": 2}),
    ]
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    assert ui.get("/jobs/events").status_code == 401  # a route of its own, not /jobs/{job_id}


def test_feed_stream_through_the_cookie_session(
    ui: TestClient, app: FastAPI, make_token: TokenFactory, submit: Submit, db: sessionmaker[Session]
) -> None:
    """The whole stream, read with the session cookie (as the list page's EventSource does); the response
    ends after the feed's lifetime, shortened here."""
    with db() as session:
        start = latest_event_id(session)
    job = submit(name="streamed")
    login(ui, make_token("jobs:read"))
    app.state.feed_max_seconds = 0.3
    try:
        r = ui.get(f"/jobs/events?after={start}")
        from_now = ui.get("/jobs/events")  # no cursor: only what happens from now on
    finally:
        del app.state.feed_max_seconds
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b.startswith("id:")]
    assert len(blocks) == 1
    lines = dict(line.split(": ", 1) for line in blocks[0].splitlines())
    assert int(lines["id"]) > start and lines["event"] == "status"
    assert json.loads(lines["data"]) == {"job_id": job["id"], "status": "queued", "attempt": 0, "error": None}
    assert "id:" not in from_now.text
    assert ui.get("/openapi.json").json()["paths"]["/jobs/events"]["get"]


# ------------------------------------------------------------------------------------------------- charts


def test_line_chart_scales_into_the_plot_and_skips_missing_values() -> None:
    chart = line_chart(
        "loss", {"a": [(0, 1.0), (5, None), (10, 3.0)], "b": [(0, float("nan"))]}, width=100, height=50
    )
    assert (chart.x_min, chart.x_max, chart.y_min, chart.y_max) == (0, 10, 1.0, 3.0)
    a, b = chart.lines
    left, top = chart.left, chart.top
    assert a.points == f"{left:.1f},{50 - chart.bottom:.1f} {100 - chart.right:.1f},{top:.1f}"
    assert a.last == 3.0 and b.points == "" and b.last is None
    flat = line_chart("flat", {"a": [(1, 2.0)]})
    assert flat.y_min < 2.0 < flat.y_max and not flat.empty
    assert line_chart("none", {"a": []}).empty
    assert loss_keys(["map50", "loss", "loss_box", "loss_cls", "lr"]) == ["loss_box", "loss_cls", "loss"]
