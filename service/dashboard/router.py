"""``/ui``: the dashboard, server-rendered with Jinja2; its own small script and style under ``/ui/static``
(no CDN: it works offline and under a strict Content-Security-Policy).

Pages: login / logout (the cookie session of :mod:`service.auth.session`), the jobs list (filters, live
status and progress from ``GET /jobs/events``), a job (metric charts, per-class AP, attempts with their log
tail, checkpoints, cancel / retry, the gallery of predicted boxes, the run's plots), the compare view of
jobs ticked in the list (their curves overlaid, their specs' differing fields), the submit form (a
registered dataset and a succeeded teacher picked from lists; it POSTs to ``/jobs`` and shows the API's
field errors), the batches list, a batch (its ablation table from the same
results function as ``GET /batches/{id}/results``, a bar chart of mAP50 mean ± std, its jobs, and the
batch verbs), and the schedules list (with an enable / disable toggle). The pages' scripts call the JSON
API with the session cookie and the session's CSRF token (and ``If-Match`` with the ETag the page was
rendered with, so a verb on a batch someone else changed meanwhile is refused with the API's 412 rather
than applied blindly); the pages themselves only read.

Errors: no session, or one whose token was revoked or expired, goes back to the login page; a job or batch
that does not exist is a 404 page; a token without ``jobs:read`` a 403 page.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from service.artifacts.service import list_checkpoints, list_plots
from service.auth.service import (
    TokenCache,
    authenticate_cached,
    authenticate_id_cached,
    has_scope,
    owns,
)
from service.auth.session import (
    CSRF_FIELD,
    SessionData,
    clear_session_cookie,
    csrf_ok,
    session_of,
    set_session_cookie,
    signer_of,
)
from service.batches import service as batches
from service.dashboard.service import (
    bar_chart,
    gallery_image_file,
    job_uuid,
    line_chart,
    loss_keys,
    read_gallery,
    spec_differences,
)
from service.datasets.service import list_datasets
from service.db.models import ApiToken, Batch, Job, JobStatus
from service.dependencies import SessionDep, SettingsDep
from service.jobs import queries as jobs
from service.jobs.feed import latest_event_id
from service.problems import Problem
from service.schedules import service as schedules
from service.settings import Settings

__all__ = ["install_dashboard", "router"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/ui", include_in_schema=False)

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
STATUSES = [s.value for s in JobStatus]
PAGE_SIZE = 50
COMPARE_MAX = 8  # jobs overlaid in one compare view
LOGIN_FORM_MAX_BYTES = 8192


class LoginRequired(Exception):
    """No valid session: the handler sends the browser to the login page (and drops a stale cookie)."""

    def __init__(self, next_path: str, reason: str | None) -> None:
        super().__init__(reason)
        self.next_path = next_path
        self.reason = reason


class PageError(Exception):
    """An error shown as an HTML page (404 job not found, 403 scope missing)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UiUser:
    """The signed-in token and its session (the pages put the CSRF token in a ``<meta>`` tag)."""

    def __init__(self, token: ApiToken, session: SessionData) -> None:
        self.token = token
        self.session = session

    @property
    def can_write(self) -> bool:
        return has_scope(self.token, "jobs:write")

    def can_steer(self, owner_token_id: int | None) -> bool:
        """May cancel / retry / pause ... a job, batch or schedule of that owner (its own; any, as admin)."""
        return self.can_write and owns(self.token, owner_token_id)


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{request.url.path}{query}"


async def ui_user(request: Request) -> UiUser:
    """The session's token, re-checked (revoked or expired: back to the login page), with ``jobs:read``."""
    session = session_of(request)
    if session is None:
        expired = request.cookies.get("daik_session") is not None
        raise LoginRequired(_here(request), "your session has expired; sign in again" if expired else None)
    cache: TokenCache = request.app.state.token_cache
    try:
        token = await anyio.to_thread.run_sync(
            authenticate_id_cached, cache, request.app.state.sessionmaker, session.token_id
        )
    except Problem as err:
        raise LoginRequired(_here(request), f"{err.detail}; sign in again") from None
    if not has_scope(token, "jobs:read"):
        raise PageError(403, "this token lacks the scope 'jobs:read', which the dashboard needs")
    return UiUser(token, session)


User = Annotated[UiUser, Depends(ui_user)]


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _safe_next(value: str | None) -> str:
    """Only a path of the dashboard itself (no open redirect to another site)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/jobs"


def _job_or_404(session: Session, job_id: str) -> Job:
    uid = job_uuid(job_id)
    job = jobs.get_job(session, uid) if uid is not None else None
    if job is None:
        raise PageError(404, f"there is no job {job_id!r}")
    return job


# ------------------------------------------------------------------------------------------------- login


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request,
    next: Annotated[str | None, Query(max_length=2000)] = None,
    reason: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    return _render(request, "login.html", {"next": _safe_next(next), "error": reason, "user": None})


def _same_origin(request: Request) -> bool:
    """A login form posted from this site: the browser's ``Origin`` (sent with every POST from a page) names
    this host. Without it (a non-browser client) the post is let through; a session cookie cannot be
    forged that way, and the token had to be known."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the pasted token (any valid one) and answer the session cookie; the token itself is not kept."""
    if not _same_origin(request):
        raise PageError(403, "a login must be posted from this site's own login page")
    body = await request.body()
    if len(body) > LOGIN_FORM_MAX_BYTES:
        raise PageError(413, "the login form is too large")
    form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    plain = (form.get("token") or [""])[0].strip()
    next_path = _safe_next((form.get("next") or [""])[0])
    if not plain:
        context = {"next": next_path, "error": "paste an API token", "user": None}
        return _render(request, "login.html", context, status_code=401)
    try:
        token = await anyio.to_thread.run_sync(
            partial(
                authenticate_cached,
                request.app.state.token_cache,
                request.app.state.sessionmaker,
                plain,
                settings=request.app.state.settings,
            )
        )
    except Problem as err:
        context = {"next": next_path, "error": f"sign-in refused: {err.detail}", "user": None}
        return _render(request, "login.html", context, status_code=401)
    signer = signer_of(request)
    value, _data = signer.issue(token.id)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, request, value, signer.max_age)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (the form carries the CSRF token, so another site cannot sign the user out)."""
    session = session_of(request)
    body = await request.body()
    supplied = (parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10).get(CSRF_FIELD) or [""])[
        0
    ]
    if session is not None and not csrf_ok(session, supplied):
        raise PageError(403, "the sign-out form is stale; reload the page and try again")
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session_cookie(response, request)
    return response


# -------------------------------------------------------------------------------------------------- jobs


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    user: User,
    session: SessionDep,
    status: Annotated[list[str] | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=20)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    chosen = [s for s in status or () if s in STATUSES]
    kind = kind if kind in ("train", "distill") else None
    name = (name or "").replace("\x00", "").strip() or None
    after = latest_event_id(session)  # read first: the live feed starts here, so no change is missed
    rows, next_cursor = jobs.list_jobs(
        session, statuses=chosen, kind=kind, name_prefix=name, limit=PAGE_SIZE, cursor=cursor
    )
    latest = jobs.latest_metrics(session, [j.id for j in rows])
    next_query = None
    if next_cursor is not None:
        params = [("status", s) for s in chosen] + [("kind", kind or ""), ("name", name or "")]
        next_query = "&".join(f"{k}={quote(v)}" for k, v in params if v) + f"&cursor={quote(next_cursor)}"
    context = {
        "user": user,
        "jobs": [jobs.job_out(j, latest[j.id]) for j in rows],
        "statuses": STATUSES,
        "chosen": chosen,
        "kind": kind or "",
        "name": name or "",
        "after": after,
        "next_query": next_query,
    }
    return _render(request, "jobs.html", context)


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(request: Request, user: User, session: SessionDep) -> HTMLResponse:
    datasets = [d.name for d in list_datasets(session)]
    # the teachers a distill job may name: succeeded jobs, newest first
    teachers, _ = jobs.list_jobs(session, statuses=[JobStatus.succeeded.value], limit=200)
    context = {"user": user, "datasets": datasets, "teachers": teachers}
    return _render(request, "new_job.html", context)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    user: User,
    session: SessionDep,
    job: Annotated[list[str] | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """Jobs side by side: their loss terms and mAP overlaid per epoch, and the fields where their specs
    differ (the jobs list's checkboxes link here with ``?job=ID&job=ID``)."""
    wanted = list(dict.fromkeys(job or []))
    if len(wanted) < 2:
        raise PageError(400, "select at least two jobs to compare (the checkboxes of the jobs list)")
    if len(wanted) > COMPARE_MAX:
        raise PageError(400, f"compare at most {COMPARE_MAX} jobs at once, not {len(wanted)}")
    rows = [_job_or_404(session, j) for j in wanted]
    labels = [f"{j.name} ({str(j.id)[:8]})" for j in rows]
    series = [jobs.get_metrics(session, j.id, max_points=400)["series"] for j in rows]
    keys: list[str] = []
    for s in series:
        keys += [k for k in s if k not in keys]

    def overlay(key: str, title: str) -> Any:
        return line_chart(
            title,
            {
                label: [(p["epoch"] if p["epoch"] is not None else p["step"], p["value"]) for p in s[key]]
                for label, s in zip(labels, series, strict=True)
                if key in s
            },
            x_label="epoch",
            width=420,
            height=220,
        )

    charts = [overlay(k, title) for k, title in (("map50", "mAP50"), ("map50_95", "mAP50:95")) if k in keys]
    charts += [overlay(k, k) for k in loss_keys(keys)]
    latest = jobs.latest_metrics(session, [j.id for j in rows])
    context = {
        "user": user,
        "jobs": [jobs.job_out(j, latest[j.id]) for j in rows],
        "labels": labels,
        "charts": charts,
        "differences": spec_differences([j.spec or {} for j in rows]),
    }
    return _render(request, "compare.html", context)


def _job_context(session: Session, settings: Settings, job: Job) -> dict[str, Any]:
    metrics = jobs.get_metrics(session, job.id, max_points=400)
    series: dict[str, list[dict[str, Any]]] = metrics["series"]
    loss_charts = [
        line_chart(key, {key: [(p["step"], p["value"]) for p in series[key]]})
        for key in loss_keys(list(series))
    ]
    map_series: dict[str, list[tuple[float, float | None]]] = {
        key: [(p["epoch"] if p["epoch"] is not None else p["step"], p["value"]) for p in series[key]]
        for key in ("map50", "map50_95")
        if key in series
    }
    map_chart = (
        line_chart("mAP per evaluation", map_series, x_label="epoch", width=480) if map_series else None
    )
    per_class = metrics["per_class_ap"]
    ap_rows = []
    if per_class is not None:
        names = sorted(set(per_class["ap50"]) | set(per_class["ap50_95"]))
        ap_rows = [(n, per_class["ap50"].get(n), per_class["ap50_95"].get(n)) for n in names]
    return {
        "job": jobs.job_out(job, jobs.latest_metrics(session, [job.id])[job.id]),
        "loss_charts": loss_charts,
        "map_chart": map_chart,
        "per_class": per_class,
        "ap_rows": ap_rows,
        "attempts": jobs.list_attempts(session, job.id),
        "checkpoints": list_checkpoints(session, job.id),
        "gallery": read_gallery(settings, job),
        "plots": [name for name, _ in list_plots(settings, job)],
    }


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request, job_id: str, user: User, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    job = _job_or_404(session, job_id)
    context = _job_context(session, settings, job)
    context["user"] = user
    return _render(request, "job.html", context)


@router.get("/jobs/{job_id}/panels", response_class=HTMLResponse)
def job_panels(
    request: Request, job_id: str, user: User, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The job page's changing part alone: the page's script swaps it in when the job's events say so."""
    job = _job_or_404(session, job_id)
    context = _job_context(session, settings, job)
    context["user"] = user
    return _render(request, "job_panels.html", context)


@router.get("/jobs/{job_id}/gallery/{index}")
def gallery_image(
    job_id: str, index: int, user: User, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """A validation image of the gallery, from the data root only (see :func:`gallery_image_file`)."""
    job = _job_or_404(session, job_id)
    path = gallery_image_file(settings, job, index=index)
    if path is None:
        raise PageError(404, f"job {job.id} has no gallery image {index}")
    return FileResponse(
        path, headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
    )


# ----------------------------------------------------------------------------------------------- batches


def _batch_or_404(session: Session, batch_id: str) -> Batch:
    uid = job_uuid(batch_id)
    batch = batches.get_batch(session, uid) if uid is not None else None
    if batch is None:
        raise PageError(404, f"there is no batch {batch_id!r}")
    return batch


@router.get("/batches", response_class=HTMLResponse)
def batches_page(
    request: Request,
    user: User,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    rows, next_cursor = batches.list_batches(session, limit=PAGE_SIZE, cursor=cursor)
    stats = batches.batch_stats(session, [b.id for b in rows])
    context = {
        "user": user,
        "batches": [batches.batch_out(session, b, stats[b.id]) for b in rows],
        "statuses": STATUSES,
        "next_cursor": next_cursor,
    }
    return _render(request, "batches.html", context)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: str, user: User, session: SessionDep) -> HTMLResponse:
    """The batch, its ablation table (:func:`service.batches.service.results`, as the API's), the mAP50 bar
    chart, its jobs and its verbs."""
    batch = _batch_or_404(session, batch_id)
    out = batches.batch_out(
        session, batch, batches.batch_stats(session, [batch.id])[batch.id], with_cells=True
    )
    rows, meta = batches.results(session, batch)
    classes: list[str] = []
    for row in rows:
        classes += [c for c in row.ap50 if c not in classes]
    chart = bar_chart(
        "mAP50 per configuration (mean ± std over seeds)",
        [(row.config, row.map50.mean, row.map50.std) for row in rows],
    )
    context = {
        "user": user,
        "batch": out,
        "rows": rows,
        "classes": classes,
        "complete": meta["complete"],
        "warnings": meta["warnings"],
        "chart": chart,
        "statuses": STATUSES,
        "verbs": batches.VERBS,
    }
    return _render(request, "batch.html", context)


# --------------------------------------------------------------------------------------------- schedules


@router.get("/schedules", response_class=HTMLResponse)
def schedules_page(request: Request, user: User, session: SessionDep) -> HTMLResponse:
    items = [schedules.schedule_out(session, s) for s in schedules.list_schedules(session)]
    return _render(request, "schedules.html", {"user": user, "schedules": items})


# ------------------------------------------------------------------------------------------------ errors


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return _render(
        request, "error.html", {"status": status, "message": message, "user": None}, status_code=status
    )


async def _on_login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    query = f"?next={quote(exc.next_path, safe='')}"
    if exc.reason:
        query += f"&reason={quote(exc.reason, safe='')}"
    response = RedirectResponse(f"/ui/login{query}", status_code=303)
    if exc.reason:
        clear_session_cookie(response, request)
    return response


async def _on_page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return _error_page(request, exc.status, exc.message)


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard on ``app``: its pages, its static files and its two error handlers."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")
    app.add_exception_handler(LoginRequired, _on_login_required)
    app.add_exception_handler(PageError, _on_page_error)
