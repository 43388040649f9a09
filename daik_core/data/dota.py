"""DOTA file formats: ``labelTxt`` annotations and Task1 detection files.

labelTxt (one file per image)::

    imagesource:GoogleEarth            optional header lines
    gsd:0.146343590398                 (gsd may be a number, ``null`` or ``None``)
    x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]

Task1 (one file per class, ``Task1_<class>.txt``)::

    image_id score x1 y1 x2 y2 x3 y3 x4 y4

A malformed line raises :class:`~daik_core.errors.DataFormatError` naming the file, the line and the problem.

The readers convert the numbers of a whole file at once; only a file with a problem is read again line by
line, to report the first bad line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from daik_core.errors import DataFormatError
from daik_core.files import atomic_write_text

__all__ = [
    "IMAGE_SUFFIXES",
    "DotaLabel",
    "DotaObject",
    "LabelArrays",
    "Task1Detections",
    "find_images",
    "label_to_arrays",
    "read_label_arrays",
    "read_label_dir",
    "read_label_dir_arrays",
    "read_label_file",
    "read_task1_dir",
    "read_task1_file",
    "task1_path",
    "write_label_file",
    "write_task1_dir",
    "write_task1_file",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DIFFICULT_VALUES = (0, 1, 2)  # 2: cut by a patch edge with a small kept part (see data.split)


@dataclass(frozen=True)
class DotaObject:
    """One annotated object: a quadrilateral, its class name and the difficult flag."""

    poly: tuple[float, ...]  # 8 coordinates x1 y1 ... x4 y4
    name: str
    difficult: int = 0


@dataclass
class DotaLabel:
    """The content of one labelTxt file."""

    objects: list[DotaObject] = field(default_factory=list)
    imagesource: str | None = None
    gsd: float | None = None


@dataclass
class LabelArrays:
    """The content of one labelTxt file as arrays (what :func:`read_label_arrays` returns): ``polys``
    float64 ``(N, 8)``, ``names`` (N class names), ``difficult`` int64 ``(N,)``, in file order."""

    polys: np.ndarray
    names: list[str]
    difficult: np.ndarray
    imagesource: str | None = None
    gsd: float | None = None

    def __len__(self) -> int:
        return len(self.names)

    def to_label(self) -> DotaLabel:
        objects = [
            DotaObject(poly=tuple(poly), name=name, difficult=difficult)
            for poly, name, difficult in zip(
                self.polys.tolist(), self.names, self.difficult.tolist(), strict=True
            )
        ]
        return DotaLabel(objects=objects, imagesource=self.imagesource, gsd=self.gsd)

    @staticmethod
    def from_label(label: DotaLabel) -> LabelArrays:
        polys = np.array([o.poly for o in label.objects], dtype=np.float64).reshape(-1, 8)
        difficult = np.array([o.difficult for o in label.objects], dtype=np.int64)
        names = [o.name for o in label.objects]
        return LabelArrays(polys, names, difficult, imagesource=label.imagesource, gsd=label.gsd)


def _parse_float(token: str, path: Path, lineno: int, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise DataFormatError(path, lineno, f"{what} {token!r} is not a number") from None
    if not math.isfinite(value):
        raise DataFormatError(path, lineno, f"{what} {token!r} is not finite")
    return value


def _read_text(path: Path, missing: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFormatError(path, None, missing) from None
    except UnicodeDecodeError as err:
        raise DataFormatError(path, None, f"not a UTF-8 text file ({err.reason})") from None


def _floats(tokens: Iterable[str], count: int) -> np.ndarray | None:
    """``count`` finite floats parsed as :func:`float` parses them, or None if one is not."""
    try:
        values = np.fromiter(map(float, tokens), dtype=np.float64, count=count)
    except ValueError:
        return None
    return values if np.isfinite(values).all() else None


_DIFFICULT_TOKENS = {str(v): v for v in DIFFICULT_VALUES}


def _header_value(line: str) -> tuple[str, str] | None:
    """``("imagesource" | "gsd", value)`` of a header line, or None if it is not one."""
    low = line.lower()
    for key in ("imagesource", "gsd"):
        if low.startswith(key + ":"):
            return key, line.split(":", 1)[1].strip()
    return None


def _parse_label_fast(text: str) -> LabelArrays | None:
    """The labelTxt ``text`` as arrays, or None if any line has a problem (the caller then reads it line by
    line, which names the first bad line)."""
    rows: list[list[str]] = []
    imagesource: str | None = None
    gsd: float | None = None
    for raw in text.splitlines():
        tokens = raw.split()
        if not tokens:
            continue
        if ":" in tokens[0]:  # never in a number: a header, or a problem
            header = _header_value(raw.strip())
            if header is None:
                return None
            key, value = header
            if key == "imagesource":
                imagesource = value or None
            elif value.lower() in ("", "null", "none", "nan"):
                gsd = None
            else:
                parsed = _floats([value], 1)
                if parsed is None:
                    return None
                gsd = float(parsed[0])
            continue
        if len(tokens) not in (9, 10):
            return None
        rows.append(tokens)
    coords = _floats(chain.from_iterable(row[:8] for row in rows), 8 * len(rows))
    difficult = [_DIFFICULT_TOKENS.get(row[9], -1) if len(row) == 10 else 0 for row in rows]
    if coords is None or -1 in difficult:
        return None
    return LabelArrays(
        polys=coords.reshape(-1, 8),
        names=[row[8] for row in rows],
        difficult=np.array(difficult, dtype=np.int64),
        imagesource=imagesource,
        gsd=gsd,
    )


def _parse_label_lines(text: str, path: Path, known: set[str] | None, skip_unknown: bool) -> DotaLabel:
    """The labelTxt ``text`` line by line; raises at the first bad line."""
    label = DotaLabel()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        header = _header_value(line)
        if header is not None:
            key, value = header
            if key == "imagesource":
                label.imagesource = value or None
            elif value.lower() in ("", "null", "none", "nan"):
                label.gsd = None
            else:
                label.gsd = _parse_float(value, path, lineno, "gsd")
            continue
        tokens = line.split()
        if len(tokens) not in (9, 10):
            raise DataFormatError(
                path,
                lineno,
                f"expected 9 or 10 fields (8 coordinates, class, [difficult]), got {len(tokens)}",
            )
        poly = tuple(
            _parse_float(tok, path, lineno, f"coordinate {i + 1}") for i, tok in enumerate(tokens[:8])
        )
        name = tokens[8]
        difficult = 0
        if len(tokens) == 10:
            try:
                difficult = int(tokens[9])
            except ValueError:
                raise DataFormatError(
                    path, lineno, f"difficult flag {tokens[9]!r} is not 0, 1 or 2"
                ) from None
            if difficult not in DIFFICULT_VALUES:
                raise DataFormatError(path, lineno, f"difficult flag {difficult} is not 0, 1 or 2")
        if known is not None and name not in known:
            if skip_unknown:
                continue
            raise DataFormatError(path, lineno, f"unknown class {name!r}")
        label.objects.append(DotaObject(poly=poly, name=name, difficult=difficult))
    return label


def read_label_arrays(
    path: str | Path,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
) -> LabelArrays:
    """Read one labelTxt file into arrays (:class:`LabelArrays`).

    With ``classes`` given, an object of another class is an error unless ``skip_unknown`` (then dropped).
    """
    path = Path(path)
    known = set(classes) if classes is not None else None
    text = _read_text(path, "annotation file does not exist")
    arrays = _parse_label_fast(text)
    if arrays is not None and known is not None:
        keep = [name in known for name in arrays.names]
        if not all(keep):
            if not skip_unknown:
                arrays = None  # read again line by line: the first bad line may come before the unknown class
            else:
                index = np.flatnonzero(keep)
                arrays = LabelArrays(
                    polys=arrays.polys[index],
                    names=[arrays.names[i] for i in index.tolist()],
                    difficult=arrays.difficult[index],
                    imagesource=arrays.imagesource,
                    gsd=arrays.gsd,
                )
    if arrays is None:
        arrays = LabelArrays.from_label(_parse_label_lines(text, path, known, skip_unknown))
    return arrays


def read_label_file(
    path: str | Path,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
) -> DotaLabel:
    """Read one labelTxt file.

    With ``classes`` given, an object of another class is an error unless ``skip_unknown`` (then dropped).
    """
    return read_label_arrays(path, classes, skip_unknown).to_label()


def _fmt(x: float) -> str:
    """Coordinates as integers when they are integral (the DOTA style), else with up to 6 decimals."""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.6f}".rstrip("0").rstrip(".")


def write_label_file(path: str | Path, label: DotaLabel) -> None:
    """Write one labelTxt file (atomically: a reader never sees half a file)."""
    lines: list[str] = []
    if label.imagesource is not None:
        lines.append(f"imagesource:{label.imagesource}")
    if label.gsd is not None:
        lines.append(f"gsd:{label.gsd}")
    for obj in label.objects:
        if len(obj.poly) != 8:
            raise ValueError(f"object {obj.name!r} has {len(obj.poly)} coordinates, expected 8")
        lines.append(" ".join(_fmt(v) for v in obj.poly) + f" {obj.name} {obj.difficult}")
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines), durable=False)


def label_to_arrays(label: DotaLabel, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(polys float64 (N, 8), class ids int64 (N,), difficult int64 (N,))``; objects of classes not in
    ``classes`` are dropped."""
    index = {c: i for i, c in enumerate(classes)}
    objs = [o for o in label.objects if o.name in index]
    polys = np.array([o.poly for o in objs], dtype=np.float64).reshape(-1, 8)
    ids = np.array([index[o.name] for o in objs], dtype=np.int64)
    difficult = np.array([o.difficult for o in objs], dtype=np.int64)
    return polys, ids, difficult


def find_images(folder: str | Path) -> list[Path]:
    """Image files of a folder (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, None, "image folder does not exist")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_label_dir(
    ann_dir: str | Path, classes: Sequence[str] | None = None, skip_unknown: bool = False
) -> dict[str, DotaLabel]:
    """Every ``*.txt`` of a labelTxt folder, keyed by image id (the file stem)."""
    ann_dir = Path(ann_dir)
    if not ann_dir.is_dir():
        raise DataFormatError(ann_dir, None, "annotation folder does not exist")
    return {
        p.stem: read_label_file(p, classes, skip_unknown)
        for p in sorted(ann_dir.glob("*.txt"))
        if p.is_file()
    }


def read_label_dir_arrays(
    ann_dir: str | Path, classes: Sequence[str] | None = None, skip_unknown: bool = False
) -> dict[str, LabelArrays]:
    """Every ``*.txt`` of a labelTxt folder as :class:`LabelArrays`, keyed by image id (the file stem)."""
    ann_dir = Path(ann_dir)
    if not ann_dir.is_dir():
        raise DataFormatError(ann_dir, None, "annotation folder does not exist")
    return {
        p.stem: read_label_arrays(p, classes, skip_unknown)
        for p in sorted(ann_dir.glob("*.txt"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------- Task1
@dataclass
class Task1Detections:
    """Detections of one class: ``image_ids`` (N,), ``scores`` float64 (N,), ``polys`` float64 (N, 8)."""

    image_ids: list[str]
    scores: np.ndarray
    polys: np.ndarray

    def __len__(self) -> int:
        return len(self.image_ids)

    @staticmethod
    def empty() -> Task1Detections:
        return Task1Detections([], np.zeros(0, dtype=np.float64), np.zeros((0, 8), dtype=np.float64))


def task1_path(folder: str | Path, class_name: str) -> Path:
    return Path(folder) / f"Task1_{class_name}.txt"


def _task1_lines(text: str, path: Path) -> Task1Detections:
    """The Task1 ``text`` line by line; raises at the first bad line."""
    image_ids: list[str] = []
    values: list[list[float]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens:
            continue
        if len(tokens) != 10:
            raise DataFormatError(
                path, lineno, f"expected 10 fields (image score x1 y1 ... x4 y4), got {len(tokens)}"
            )
        row = [_parse_float(tokens[1], path, lineno, "score")]
        row += [_parse_float(tok, path, lineno, f"coordinate {i + 1}") for i, tok in enumerate(tokens[2:])]
        image_ids.append(tokens[0])
        values.append(row)
    arr = np.array(values, dtype=np.float64).reshape(-1, 9)
    return Task1Detections(image_ids, arr[:, 0].copy(), arr[:, 1:].copy())


def read_task1_file(path: str | Path) -> Task1Detections:
    """Read one ``Task1_<class>.txt``; non-finite scores or coordinates are errors naming file and line."""
    path = Path(path)
    text = _read_text(path, "detection file does not exist")
    rows = [tokens for tokens in map(str.split, text.splitlines()) if tokens]
    values = None
    if all(len(tokens) == 10 for tokens in rows):
        values = _floats(chain.from_iterable(tokens[1:] for tokens in rows), 9 * len(rows))
    if values is None:
        return _task1_lines(text, path)  # raises at the first bad line
    arr = values.reshape(-1, 9)
    return Task1Detections([tokens[0] for tokens in rows], arr[:, 0].copy(), arr[:, 1:].copy())


def read_task1_dir(det_dir: str | Path, classes: Iterable[str]) -> dict[str, Task1Detections]:
    """Detections per class from ``det_dir/Task1_<class>.txt``; a class without a file has none."""
    det_dir = Path(det_dir)
    if not det_dir.is_dir():
        raise DataFormatError(det_dir, None, "detection folder does not exist")
    out: dict[str, Task1Detections] = {}
    for name in classes:
        p = task1_path(det_dir, name)
        out[name] = read_task1_file(p) if p.is_file() else Task1Detections.empty()
    return out


def write_task1_file(
    path: str | Path, image_ids: Sequence[str], scores: np.ndarray, polys: np.ndarray
) -> None:
    """Write one Task1 file (atomically). ``scores`` (N,), ``polys`` (N, 8)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, 8)
    if not (len(image_ids) == len(scores) == len(polys)):
        raise ValueError("image_ids, scores and polys must have the same length")
    lines = [
        f"{img} {s:.6g} " + " ".join(f"{v:.2f}" for v in poly)
        for img, s, poly in zip(image_ids, scores.tolist(), polys.tolist(), strict=True)
    ]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines), durable=False)


def write_task1_dir(folder: str | Path, detections: Mapping[str, Task1Detections]) -> None:
    """One ``Task1_<class>.txt`` per class (an empty file for a class without detections)."""
    for name, det in detections.items():
        write_task1_file(task1_path(folder, name), det.image_ids, det.scores, det.polys)
