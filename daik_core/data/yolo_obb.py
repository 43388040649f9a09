"""Ultralytics' YOLO-OBB dataset layout, read as a dataset source next to DOTA's ``images/`` + ``labelTxt/``.

A split is a folder of images and a folder of labels, one ``.txt`` per image with the same stem, one object
per line::

    class x1 y1 x2 y2 x3 y3 x4 y4      # class index, the four corners normalised to [0, 1] by the image size

The labels of ``.../images/<split>`` are in ``.../labels/<split>`` (the last ``images`` folder of the path
becomes ``labels``, Ultralytics' rule); a folder holding ``images/`` and ``labels/`` directly is a split too.
An image without a label file has no objects (Ultralytics' background images); YOLO labels have no difficult
flag (every object counts). Class ``k`` is the ``k``-th name of the dataset's class list.

The data YAML (``data.yaml``)::

    path: ../datasets/dota8      # the dataset root; relative to the YAML's folder; default: that folder
    train: images/train          # the image folders of the splits, relative to ``path``
    val: images/val
    names: {0: plane, 1: ship}   # or a list: [plane, ship]

In a job spec, ``dataset.train: data.yaml`` trains on its ``train`` split and (unless ``dataset.val`` says
otherwise) validates on its ``val`` split, and ``dataset.classes`` defaults to its ``names``.

This module reads no pixels and imports neither torch nor numpy (the job spec uses it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from daik_core.errors import DataFormatError

__all__ = [
    "DATA_YAML_SUFFIXES",
    "YoloDataYaml",
    "YoloObject",
    "is_data_yaml",
    "labels_dir_for",
    "parse_yolo_label",
    "read_data_yaml",
    "yolo_split_dirs",
]

DATA_YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class YoloDataYaml:
    """A data YAML: the file, the dataset root, the image folder of each split (absolute) and the names."""

    path: Path
    root: Path
    splits: dict[str, Path]
    names: tuple[str, ...]

    def split(self, name: str) -> Path:
        """The image folder of split ``name``; :class:`DataFormatError` when the YAML has none."""
        if name not in self.splits:
            raise DataFormatError(self.path, None, f"no {name!r} split (it has: {', '.join(self.splits)})")
        return self.splits[name]


@dataclass(frozen=True)
class YoloObject:
    """One label line: the class index and the corners in pixels (x1, y1, ..., x4, y4)."""

    cls: int
    poly: tuple[float, ...]


def is_data_yaml(path: str | Path) -> bool:
    """Whether ``path`` is a file named like a data YAML (``.yaml`` / ``.yml``)."""
    p = Path(path)
    return p.suffix.lower() in DATA_YAML_SUFFIXES and p.is_file()


def read_data_yaml(path: str | Path) -> YoloDataYaml:
    """Read an Ultralytics data YAML (module docstring). Splits given as folders are supported (not lists of
    folders or ``.txt`` lists of images); every problem is a :class:`DataFormatError` naming the file."""
    import yaml

    path = Path(path).absolute()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataFormatError(path, None, f"cannot read the data YAML ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        line = None if mark is None else mark.line + 1
        raise DataFormatError(path, line, f"invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, None, "a data YAML is a mapping with path, train, val and names")
    root_value = data.get("path")
    if root_value is not None and not isinstance(root_value, str):
        raise DataFormatError(path, None, f"path: a folder name, got {root_value!r}")
    root = Path(_absolute(path.parent, root_value or "."))
    splits: dict[str, Path] = {}
    for name in ("train", "val", "test"):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or value.lower().endswith(".txt"):
            raise DataFormatError(
                path, None, f"{name}: only an image folder is supported here, got {value!r}"
            )
        splits[name] = Path(_absolute(root, value))
    if "train" not in splits:
        raise DataFormatError(path, None, "train: missing (the image folder of the training split)")
    names = _names(path, data.get("names"))
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise DataFormatError(path, None, f"nc is {nc} but names has {len(names)} entries")
    return YoloDataYaml(path=path, root=root, splits=splits, names=names)


def _absolute(base: Path, value: str) -> str:
    return os.path.abspath(base / Path(value).expanduser())


def _names(path: Path, names: object) -> tuple[str, ...]:
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise DataFormatError(path, None, f"names: the keys must be 0 .. {len(keys) - 1}, got {keys}")
        values = [names[k] for k in keys]
    elif isinstance(names, list):
        values = names
    else:
        raise DataFormatError(path, None, "names: a list of class names or a mapping {0: name, ...}")
    out = tuple(str(v) for v in values)
    if not out or any(not v.strip() for v in out) or len(set(out)) != len(out):
        raise DataFormatError(path, None, f"names: non-empty, distinct class names, got {list(out)}")
    return out


def labels_dir_for(images_dir: str | Path) -> Path:
    """The label folder of an image folder: the last ``images`` component of the path becomes ``labels``
    (``ds/images/train`` -> ``ds/labels/train``); ``images_dir/../labels`` when there is none."""
    parts = Path(images_dir).parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            return Path(*parts[:i], "labels", *parts[i + 1 :])
    return Path(images_dir).parent / "labels"


def yolo_split_dirs(folder: str | Path) -> tuple[Path, Path] | None:
    """``(images, labels)`` folders when ``folder`` is a YOLO-OBB split: a folder with ``images/`` and
    ``labels/`` (and no DOTA ``labelTxt/``), or an image folder whose :func:`labels_dir_for` exists.
    ``None`` otherwise (a DOTA folder, or nothing)."""
    folder = Path(folder)
    if (folder / "labelTxt").is_dir():
        return None
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        return folder / "images", folder / "labels"
    labels = labels_dir_for(folder)
    if folder.is_dir() and labels.is_dir() and labels != folder:
        return folder, labels
    return None


def parse_yolo_label(
    text: str, path: str | Path, width: int, height: int, num_classes: int, skip_unknown: bool = False
) -> list[YoloObject]:
    """The objects of one YOLO-OBB label file's ``text``, corners scaled to pixels of a ``width`` x
    ``height`` image. A malformed line, a corner outside [0, 1] or a class index outside ``[0,
    num_classes)`` (unless ``skip_unknown``: then dropped) is a :class:`DataFormatError` naming file and
    line."""
    out: list[YoloObject] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens:
            continue
        if len(tokens) != 9:
            raise DataFormatError(
                path, lineno, f"expected 9 fields (class x1 y1 x2 y2 x3 y3 x4 y4), got {len(tokens)}"
            )
        try:
            cls = int(tokens[0])
        except ValueError:
            raise DataFormatError(path, lineno, f"class {tokens[0]!r} is not an integer index") from None
        coords = []
        for i, tok in enumerate(tokens[1:]):
            try:
                v = float(tok)
            except ValueError:
                raise DataFormatError(path, lineno, f"coordinate {i + 1} {tok!r} is not a number") from None
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise DataFormatError(
                    path,
                    lineno,
                    f"coordinate {i + 1} = {tok} is outside [0, 1] (YOLO-OBB corners are normalised by the "
                    "image size)",
                )
            coords.append(v * (width if i % 2 == 0 else height))
        if not 0 <= cls < num_classes:
            if skip_unknown:
                continue
            raise DataFormatError(path, lineno, f"class {cls} is not one of the {num_classes} classes (0..)")
        out.append(YoloObject(cls, tuple(coords)))
    return out
