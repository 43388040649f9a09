"""``/datasets``: register a dataset folder pair under a name, list and read them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from service.auth.dependencies import require
from service.datasets import service
from service.datasets.dependencies import ValidDataset
from service.datasets.schemas import DatasetCreate, DatasetList, DatasetOut
from service.dependencies import SessionDep, SettingsDep
from service.problems import problem_responses

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=problem_responses(401, 403))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    dependencies=[Depends(require("datasets:write"))],
    responses=problem_responses(400, 409, 413, 422),
)
def create_dataset(
    body: DatasetCreate, session: SessionDep, settings: SettingsDep, response: Response
) -> DatasetOut:
    row = service.create_dataset(session, settings, body)
    response.headers["Location"] = f"/datasets/{row.name}"
    return service.dataset_out(row)


@router.get("", response_model=DatasetList, dependencies=[Depends(require("datasets:read"))])
def list_datasets(session: SessionDep) -> DatasetList:
    """Every registered dataset, by name (a short list: no pagination)."""
    return DatasetList(items=[service.dataset_out(r) for r in service.list_datasets(session)])


@router.get(
    "/{name}",
    response_model=DatasetOut,
    dependencies=[Depends(require("datasets:read"))],
    responses=problem_responses(404, 422),
)
def get_dataset(dataset: ValidDataset) -> DatasetOut:
    return service.dataset_out(dataset)
