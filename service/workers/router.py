"""``/workers``: the live workers and what they take."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.auth.dependencies import require
from service.dependencies import SessionDep, SettingsDep
from service.problems import problem_responses
from service.workers import service
from service.workers.schemas import WorkerList, WorkerOut

router = APIRouter(prefix="/workers", tags=["workers"], responses=problem_responses(401, 403))


@router.get("", response_model=WorkerList, dependencies=[Depends(require("jobs:read"))])
def list_workers(session: SessionDep, settings: SettingsDep) -> WorkerList:
    """Workers with a heartbeat within ``DAIK_WORKER_STALE_SECONDS`` that have not stopped."""
    return WorkerList(
        items=[
            WorkerOut.model_validate(w, from_attributes=True) for w in service.live_workers(session, settings)
        ]
    )
