"""The dataset named in the path, looked up once (404 problem when there is none)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path

from service.datasets.schemas import NAME_PATTERN
from service.datasets.service import get_dataset
from service.db.models import Dataset
from service.dependencies import SessionDep
from service.problems import Problem

__all__ = ["ValidDataset", "valid_dataset"]


def valid_dataset(name: Annotated[str, Path(max_length=100)], session: SessionDep) -> Dataset:
    row = get_dataset(session, name) if re.fullmatch(NAME_PATTERN, name) else None
    if row is None:
        raise Problem(404, f"no dataset named {name!r}")
    return row


ValidDataset = Annotated[Dataset, Depends(valid_dataset)]
