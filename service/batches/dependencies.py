"""The batch named in the path, looked up once: an unknown id, or one that is not a UUID, is a 404."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from service.batches.service import get_batch
from service.db.models import Batch
from service.dependencies import SessionDep
from service.errors import Problem

__all__ = ["ValidBatch", "valid_batch"]


def valid_batch(
    batch_id: Annotated[str, Path(description="the batch's id (a UUID)")], session: SessionDep
) -> Batch:
    try:
        uid = uuid.UUID(batch_id)
    except ValueError:
        raise Problem(404, f"no batch {batch_id!r}") from None
    batch = get_batch(session, uid)
    if batch is None:
        raise Problem(404, f"no batch {uid}")
    return batch


ValidBatch = Annotated[Batch, Depends(valid_batch)]
