"""Datasets: registration, lookup, and the rule for every data path a client gives (also used by jobs).

A data path is relative to the data root (or absolute, but under it); ``..`` is refused outright, and the
path is resolved (symlinks followed) and must still be under the root, so neither ``..`` nor a symlink can
reach outside. A dataset folder is in DOTA layout: ``images/`` and ``labelTxt/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daik_core.config import DatasetSpec
from service.datasets.schemas import DatasetCreate, DatasetOut
from service.db.models import Dataset
from service.errors import Problem, invalid, reject_nul
from service.settings import Settings

__all__ = [
    "IMAGE_SUFFIXES",
    "confine",
    "count_images",
    "create_dataset",
    "dataset_out",
    "get_dataset",
    "list_datasets",
    "resolve_class_names",
    "resolve_data_folder",
]

# the image files daik_core reads (daik_core.data.dota.IMAGE_SUFFIXES; not imported: it loads OpenCV)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


def confine(root: Path, value: str, *, field: str, root_name: str) -> Path:
    """``value`` (relative to ``root``, or absolute under it) resolved, symlinks followed; a 422 problem
    naming ``field`` when it contains ``..`` or lands outside ``root``."""
    if "\x00" in value:
        raise invalid(field, "contains a NUL character")
    if ".." in PurePath(value).parts:
        raise invalid(field, f"must not contain '..' (paths are relative to the {root_name})")
    root = root.resolve()
    candidate = Path(value) if PurePath(value).is_absolute() else root / value
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise invalid(field, f"cannot resolve {value!r}") from None
    if not resolved.is_relative_to(root):
        raise invalid(field, f"{value!r} is outside the {root_name}")
    return resolved


def _shown(settings: Settings, path: Path) -> str:
    return path.relative_to(settings.data_dir.resolve()).as_posix() or "."


def resolve_data_folder(settings: Settings, value: str, *, field: str) -> Path:
    """A dataset folder under the data root in DOTA layout, or a 422 problem naming ``field``."""
    folder = confine(settings.data_dir, value, field=field, root_name="data root")
    shown = _shown(settings, folder)
    if not folder.is_dir():
        raise invalid(field, f"no folder {shown!r} under the data root")
    missing = [d for d in ("images", "labelTxt") if not (folder / d).is_dir()]
    if missing:
        raise invalid(field, f"{shown!r} is not in DOTA layout: no {' or '.join(missing)}/ in it")
    return folder


def count_images(folder: Path) -> int:
    return sum(1 for p in (folder / "images").iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resolve_class_names(classes: str | Sequence[str], field: str = "classes") -> list[str]:
    """The class list by :class:`daik_core.config.DatasetSpec`'s rules (named list, ``a,b,c``, a list)."""
    try:
        spec = DatasetSpec(train="-", classes=classes if isinstance(classes, str) else tuple(classes))
    except ValidationError as err:
        message = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise invalid(field, message) from None
    return list(spec.class_names())


def dataset_out(row: Dataset) -> DatasetOut:
    return DatasetOut(
        name=row.name,
        train=row.train_path,
        val=row.val_path,
        classes=list(row.classes),
        description=row.description,
        num_train_images=row.num_train_images,
        num_val_images=row.num_val_images,
        created_at=row.created_at,
    )


def get_dataset(session: Session, name: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.name == name)).one_or_none()


def list_datasets(session: Session) -> Sequence[Dataset]:
    return session.scalars(select(Dataset).order_by(Dataset.name)).all()


def create_dataset(session: Session, settings: Settings, body: DatasetCreate) -> Dataset:
    """Validate the folders and classes, count the images, insert and commit; 409 on a taken name."""
    reject_nul(body.model_dump())
    if get_dataset(session, body.name) is not None:
        raise Problem(409, f"a dataset named {body.name!r} exists", title="Conflict")
    train = resolve_data_folder(settings, body.train, field="train")
    val = resolve_data_folder(settings, body.val, field="val") if body.val is not None else None
    row = Dataset(
        name=body.name,
        train_path=_shown(settings, train),
        val_path=_shown(settings, val) if val is not None else None,
        classes=resolve_class_names(body.classes),
        description=body.description,
        num_train_images=count_images(train),
        num_val_images=count_images(val) if val is not None else None,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # registered concurrently under the same name
        session.rollback()
        raise Problem(409, f"a dataset named {body.name!r} exists", title="Conflict") from None
    return row
