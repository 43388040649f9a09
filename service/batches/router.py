"""``/batches``: submit an ablation grid x seeds, list, read, steer (pause, resume, stop, cancel,
rerun-failed) and read its results table (JSON, CSV or Markdown)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.orm import Session

from daik_core.ablation.table import table_csv, table_json, table_markdown
from service.auth.dependencies import require
from service.auth.service import require_owner
from service.batches import service
from service.batches.dependencies import ValidBatch
from service.batches.schemas import BatchCreate, BatchList, BatchOut, ResultFormat
from service.db.models import ApiToken, Batch, BatchStatus
from service.dependencies import IdempotencyKeyHeader, SessionDep, SettingsDep
from service.problems import problem_responses

router = APIRouter(prefix="/batches", tags=["batches"], responses=problem_responses(401, 403))

JobsRead = Depends(require("jobs:read"))
JobsWrite = Depends(require("jobs:write"))
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", max_length=500, description="the batch's ETag; a stale one: 412"),
]


def _out(session: Session, batch: Batch, response: Response, *, with_cells: bool = False) -> BatchOut:
    stats = service.batch_stats(session, [batch.id])[batch.id]
    response.headers["ETag"] = service.batch_etag(batch)
    return service.batch_out(session, batch, stats, with_cells=with_cells)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchOut,
    responses={
        201: {"description": "created, or replayed for a repeated Idempotency-Key (`Idempotent-Replayed`)"},
        **problem_responses(400, 409, 413, 422),
    },
)
def create_batch(
    body: BatchCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[ApiToken, JobsWrite],
    idempotency_key: IdempotencyKeyHeader = None,
) -> BatchOut:
    """One job per (configuration, seed) of the grid, made and sent like ``POST /jobs``."""
    batch, created = service.create_batch(
        session, settings, body, idempotency_key=idempotency_key, token=token
    )
    response.headers["Location"] = f"/batches/{batch.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return _out(session, batch, response, with_cells=True)


@router.get("", response_model=BatchList, dependencies=[JobsRead], responses=problem_responses(422))
def list_batches(
    session: SessionDep,
    status: Annotated[list[BatchStatus] | None, Query(description="repeat for several")] = None,
    schedule_id: Annotated[uuid.UUID | None, Query(description="the batches one schedule made")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=500, description="`next_cursor` of the previous page")
    ] = None,
) -> BatchList:
    """Batches, newest first, a page at a time (keyset pagination)."""
    batches, next_cursor = service.list_batches(
        session,
        statuses=[s.value for s in status or ()],
        schedule_id=schedule_id,
        limit=limit,
        cursor=cursor,
    )
    stats = service.batch_stats(session, [b.id for b in batches])
    return BatchList(
        items=[service.batch_out(session, b, stats[b.id]) for b in batches], next_cursor=next_cursor
    )


@router.get("/{batch_id}", response_model=BatchOut, dependencies=[JobsRead], responses=problem_responses(404))
def get_batch(batch: ValidBatch, session: SessionDep, response: Response) -> BatchOut:
    """Status, jobs per status, progress and each (configuration, seed)'s job; the ``ETag`` names the
    batch's version (its verbs bump it; its jobs' progress does not)."""
    return _out(session, batch, response, with_cells=True)


def _verb(verb: str, doc: str) -> None:
    def endpoint(
        token: Annotated[ApiToken, JobsWrite],
        batch: ValidBatch,
        session: SessionDep,
        settings: SettingsDep,
        response: Response,
        if_match: IfMatch = None,
    ) -> BatchOut:
        require_owner(token, owner_id=batch.created_by, what=f"batch {batch.id}")
        batch = service.act(session, settings, batch, verb=verb, if_match=if_match)
        return _out(session, batch, response)

    endpoint.__doc__ = f"{doc} Only the token that made the batch, or one with ``admin``, may (403)."
    endpoint.__name__ = f"batch_{verb.replace('-', '_')}"
    router.add_api_route(
        f"/{{batch_id}}/{verb}",
        endpoint,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=BatchOut,
        responses=problem_responses(404, 409, 412, 422),
    )


_verb("pause", "Start nothing new until resumed: queued jobs stay queued (held); running ones go on.")
_verb("resume", "Active again: the held queued jobs are sent to the workers.")
_verb("stop", "Start nothing new, for good: queued jobs are cancelled, running ones finish.")
_verb("cancel", "Cancel every unfinished job (running ones stop cooperatively, as POST /jobs/{id}/cancel).")
_verb("rerun-failed", "A new attempt for each failed job (lost ones included), as POST /jobs/{id}/retry.")


@router.get(
    "/{batch_id}/results",
    dependencies=[JobsRead],
    responses={
        200: {
            "description": "the ablation table of `daik ablate`: JSON (default), CSV or Markdown",
            "content": {"application/json": {}, "text/csv": {}, "text/markdown": {}},
        },
        **problem_responses(404, 422),
    },
)
def batch_results(
    request: Request,
    batch: ValidBatch,
    session: SessionDep,
    format: Annotated[
        ResultFormat | None, Query(description="json | csv | md; default from Accept, else json")
    ] = None,
) -> Any:
    """Per configuration: mean ± std over seeds of mAP50, mAP50:95 and each class's AP50, and the
    difference from the baseline paired by seed with its 95 % interval (succeeded jobs only)."""
    rows, meta = service.results(session, batch)
    chosen = format or _from_accept(request.headers.get("accept", ""))
    if chosen == "csv":
        return PlainTextResponse(table_csv(rows), media_type="text/csv")
    if chosen == "md":
        return PlainTextResponse(table_markdown(rows), media_type="text/markdown")
    return JSONResponse(table_json(rows, **meta))


def _from_accept(accept: str) -> str:
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    for t in types:
        if t == "application/json":
            return "json"
        if t == "text/csv":
            return "csv"
        if t == "text/markdown":
            return "md"
    return "json"


__all__ = ["router"]
