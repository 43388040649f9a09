"""The training and validation dataset over a DOTA folder (``images/`` and ``labelTxt/``), or a split of
Ultralytics' YOLO-OBB layout (``images/`` and ``labels/``, normalised corners; :mod:`daik_core.data.yolo_obb`:
an image without a label file has no objects, and no object is difficult).

Validation up front
    The constructor checks the whole folder before any training starts and raises *one*
    :class:`~daik_core.errors.DataFormatError` that lists the problems (the first
    :data:`MAX_LISTED_PROBLEMS`, and how many more): missing folders, images without a label file and label
    files without an image, two images with the same name, malformed label lines (file and line), unknown
    classes (unless ``skip_unknown``), and image files that are not images. Images are checked by their
    header only (:func:`~daik_core.data.image_header.read_image_size`: PNG, JPEG, BMP and TIFF headers are
    parsed, a PNG must also end with its ``IEND`` chunk, which catches truncated downloads; other formats
    are decoded once), which keeps the check fast on thousands of large images. A file whose header is
    fine but whose pixels are broken fails when it is read, with a :class:`DataFormatError` naming it.

Items
    Without ``split`` every image is one item. With ``split`` every image is served, for each scale rate
    of ``split.rates``, as the windows of :func:`~daik_core.data.split.patch_windows` over the image
    resized by the rate (an image no larger than ``split.size`` has one window: the whole image), with its
    objects clipped exactly as :func:`~daik_core.data.split.split_label` clips them (so on-the-fly tiling
    sees the same labels as a folder written by ``daik split``; cut objects keeping at most 70 % of their
    area get ``difficult 2``; the box of a cut object is the minimum-area rectangle of split_label's
    clipped quad, which for a cut-off corner, a triangle, is twice its area). Windows are cropped without
    padding; every item is then letterboxed to
    ``imgsz`` x ``imgsz`` (:func:`~daik_core.data.transforms.letterbox`). Objects outside an image are
    clipped to it.

Objects
    Difficult objects (flags 1 and 2) are kept for training, as is DOTA practice, and their flag travels
    with them (:attr:`Sample.difficult`) so that evaluation can ignore them. Objects whose box has a side
    under one pixel in the input frame, or that keep less than half their area after an augmentation, are
    dropped (:mod:`daik_core.data.transforms`).

Augmentation (``train=True`` with an ``augment`` spec)
    Mosaic (probability ``augment.mosaic``: the item and three items drawn at random, each fitted to
    ``imgsz``, around a random centre of a ``2 imgsz`` canvas, YOLO style), then one affine warp (flips,
    quarter turns, free rotation, zoom) of the letterboxed picture (or of the mosaic's central square) about
    its centre, then HSV jitter. The randomness of item ``index``
    comes from ``numpy.random.default_rng([seed, epoch, index])`` only, so an item is the same in any
    process, worker or order (see :mod:`daik_core.data.loader`).

Frames
    :class:`SampleMeta` records how the input frame was made from the source image (rate, window offset,
    letterbox scale and padding, augmentation matrix) and maps boxes back (:meth:`SampleMeta.to_source`)
    so that predictions on patches can be merged on the full images for evaluation.

Decoding
    cv2, 8-bit colour (grey images get three channels), EXIF orientation *ignored* (labels are in the
    stored pixel frame, and the header sizes are those of the stored frame). Source images are read per
    item; a small LRU (``cache_images``, per worker process) keeps the last decoded ones, which helps when
    consecutive items are patches of one image (validation order).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, overload

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from daik_core.config import AugmentSpec, SplitSpec
from daik_core.data.dota import DotaLabel, DotaObject, find_images, label_to_arrays, read_label_file
from daik_core.data.image_header import decode_image, read_image_size
from daik_core.data.split import format_rate, patch_windows, resize_image, scaled_size, split_label
from daik_core.data.transforms import (
    Objects,
    affine_matrix,
    clip_objects,
    draw_affine,
    draw_hsv,
    hsv_jitter,
    mosaic,
    pad_to_square,
    resize_to_fit,
    warp,
)
from daik_core.data.yolo_obb import is_data_yaml, parse_yolo_label, yolo_split_dirs
from daik_core.errors import DaikError, DataFormatError
from daik_core.structures.boxes import obb_to_poly, poly_to_obb

__all__ = [
    "MAX_LISTED_PROBLEMS",
    "DotaDataset",
    "ImageRecord",
    "ItemKey",
    "Sample",
    "SampleMeta",
    "Window",
]

#: How many problems the validation error lists one by one.
MAX_LISTED_PROBLEMS = 10

_IDENTITY: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class ImageRecord:
    """One source image: its files and its size (from the header)."""

    image_id: str  # the file stem, the DOTA image id
    path: Path
    label_path: Path  # a YOLO-OBB image without objects may have none: this is where it would be
    width: int
    height: int


class Window(NamedTuple):
    """An item: window ``(left, up, width, height)`` of source image ``image`` resized by ``rate``
    (pixels of the resized image)."""

    image: int
    rate: float
    left: int
    up: int
    width: int
    height: int


class ItemKey(NamedTuple):
    """What the loader's sampler asks the dataset for: the item, and the epoch and seed that choose its
    augmentation. Passing them with every request (instead of setting them on the dataset) keeps
    persistent worker processes in step with the trainer."""

    item: int
    epoch: int = 0
    seed: int = 0


@dataclass(frozen=True)
class SampleMeta:
    """How the input frame of a sample was made from its source image.

    A source pixel coordinate ``u`` lands in the input frame at
    ``affine(((u * rate) - offset) * scale + pad)``: the source resized by ``rate``, the window at
    ``offset = (left, up)`` cut out, letterboxed (``scale``, ``pad = (left, top)``), then augmented by the
    2 x 3 ``affine`` (row-major; the identity when not augmented). :meth:`matrix` is the whole map.
    A mosaic sample shows four sources; its fields describe the first, and :meth:`to_source` refuses it.
    """

    image_id: str
    index: int  # the dataset item
    source_size: tuple[int, int]  # (width, height) of the source image
    offset: tuple[int, int]  # (left, up) of the window, in pixels of the source resized by rate
    window_size: tuple[int, int]  # (width, height) of the window, same pixels
    rate: float
    scale: float  # letterbox scale: window pixels -> input pixels
    pad: tuple[int, int]  # letterbox padding (left, top), input pixels
    input_size: int  # the input frame is input_size x input_size
    affine: tuple[float, ...] = _IDENTITY
    mosaic: bool = False

    def matrix(self) -> np.ndarray:
        """The 3 x 3 affine map from source-image coordinates to input-frame coordinates."""
        aug = np.eye(3)
        aug[:2] = np.asarray(self.affine, dtype=np.float64).reshape(2, 3)
        k = self.scale * self.rate
        base = np.array(
            [
                [k, 0.0, (self.pad[0] - self.offset[0] * self.scale)],
                [0.0, k, (self.pad[1] - self.offset[1] * self.scale)],
                [0.0, 0.0, 1.0],
            ]
        )
        return aug @ base

    @overload
    def to_source(self, boxes: np.ndarray) -> np.ndarray: ...
    @overload
    def to_source(self, boxes: Tensor) -> Tensor: ...
    def to_source(self, boxes: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """Boxes of the input frame in source-image pixels: obb ``(..., 5)`` or polygons ``(..., 8)``,
        a numpy array or a tensor (any device), returned as the same kind (floating dtypes kept)."""
        if self.mosaic:
            raise ValueError("a mosaic sample shows four source images: its boxes have no single source")
        return _map_boxes(boxes, np.linalg.inv(self.matrix()))

    @overload
    def from_source(self, boxes: np.ndarray) -> np.ndarray: ...
    @overload
    def from_source(self, boxes: Tensor) -> Tensor: ...
    def from_source(self, boxes: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """Boxes of the source image in input-frame pixels (the inverse of :meth:`to_source`)."""
        return _map_boxes(boxes, self.matrix())


def _map_boxes(boxes: np.ndarray | Tensor, m: np.ndarray) -> np.ndarray | Tensor:
    if isinstance(boxes, np.ndarray):
        dtype = boxes.dtype if np.issubdtype(boxes.dtype, np.floating) else np.dtype(np.float64)
        return _map_tensor(torch.from_numpy(boxes.astype(np.float64)), m).numpy().astype(dtype)
    return _map_tensor(boxes if boxes.is_floating_point() else boxes.double(), m)


def _map_tensor(t: Tensor, m: np.ndarray) -> Tensor:
    """Apply the affine ``m`` (3 x 3) to obb ``(..., 5)`` or polygons ``(..., 8)``."""
    n = t.shape[-1]
    if n not in (5, 8):
        raise ValueError(f"boxes must be obb (..., 5) or polygons (..., 8), got shape {tuple(t.shape)}")
    a, b, c = float(m[0, 0]), float(m[0, 1]), float(m[0, 2])
    d, e, f = float(m[1, 0]), float(m[1, 1]), float(m[1, 2])
    if n == 5 and b == 0 and d == 0 and a == e and a > 0:
        # a zoom and a shift: centres move, sides scale, angles stay
        cx, cy, w, h, ang = t.unbind(-1)
        return torch.stack((cx * a + c, cy * e + f, w * a, h * a, ang), dim=-1)
    poly = obb_to_poly(t) if n == 5 else t
    x, y = poly[..., 0::2], poly[..., 1::2]
    mapped = torch.stack((x * a + y * b + c, x * d + y * e + f), dim=-1).flatten(-2)
    return poly_to_obb(mapped) if n == 5 else mapped


@dataclass
class Sample:
    """One item, ready to collate.

    ``image``      (S, S, 3) uint8 RGB, S = imgsz (the letterboxed, augmented input frame)
    ``boxes``      (N, 5) float32 obb in input-frame pixels, the convention of
                   :mod:`daik_core.structures.boxes` (w >= h, angle in [0, pi))
    ``labels``     (N,) int64 class indices
    ``difficult``  (N,) int64 flags: 0, 1 (annotated difficult), 2 (cut by a patch edge, little kept)
    ``meta``       :class:`SampleMeta`
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    meta: SampleMeta


def _float32_obb(obb: np.ndarray) -> np.ndarray:
    out = obb.astype(np.float32).reshape(-1, 5)
    # an angle just below pi rounds up to float32 pi, outside [0, pi): that direction is angle 0
    out[:, 4] = np.where(out[:, 4] >= np.float32(math.pi), np.float32(0), out[:, 4])
    return out


# ---------------------------------------------------------------------------------------- the scan
@dataclass
class _Scan:
    records: list[ImageRecord] = field(default_factory=list)
    labels: list[DotaLabel] = field(default_factory=list)
    problems: list[DataFormatError] = field(default_factory=list)


def _scan(root: Path, classes: Sequence[str], skip_unknown: bool) -> _Scan:
    yolo = yolo_split_dirs(root)
    if yolo is not None:
        return _scan_yolo(*yolo, classes, skip_unknown)
    img_dir, ann_dir = root / "images", root / "labelTxt"
    missing = [
        DataFormatError(d, None, f"{what} folder does not exist")
        for d, what in ((img_dir, "image"), (ann_dir, "label"))
        if not d.is_dir()
    ]
    if missing:
        raise _combine(root, missing)
    images = find_images(img_dir)
    label_files = {p.stem: p for p in sorted(ann_dir.glob("*.txt")) if p.is_file()}
    scan = _Scan()
    seen: dict[str, Path] = {}
    for path in images:
        stem = path.stem
        if stem in seen:
            scan.problems.append(DataFormatError(path, None, f"has the same name as {seen[stem].name}"))
            continue
        seen[stem] = path
        label_path = label_files.get(stem)
        if label_path is None:
            scan.problems.append(DataFormatError(path, None, f"no label file labelTxt/{stem}.txt"))
            continue
        try:
            width, height = read_image_size(path)
            label = read_label_file(label_path, classes, skip_unknown)
        except DataFormatError as err:
            scan.problems.append(err)
            continue
        scan.records.append(ImageRecord(stem, path, label_path, width, height))
        scan.labels.append(label)
    for stem, label_path in label_files.items():
        if stem not in seen:
            scan.problems.append(DataFormatError(label_path, None, f"no image {stem}.* in images/"))
    if not images and not scan.problems:
        scan.problems.append(DataFormatError(img_dir, None, "no images (.png, .jpg, .tif, .bmp) in it"))
    return scan


def _read_yolo_label(
    path: Path, width: int, height: int, classes: Sequence[str], skip_unknown: bool
) -> DotaLabel:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(path, None, f"not a UTF-8 text file ({err.reason})") from None
    except OSError as err:
        raise DataFormatError(path, None, f"cannot read the label file ({err.strerror or err})") from None
    objects = parse_yolo_label(text, path, width, height, len(classes), skip_unknown)
    return DotaLabel([DotaObject(o.poly, classes[o.cls]) for o in objects])


def _scan_yolo(img_dir: Path, label_dir: Path, classes: Sequence[str], skip_unknown: bool) -> _Scan:
    """A YOLO-OBB split: labels ``label_dir/<stem>.txt`` (optional: none, no objects) of ``img_dir``'s
    images, corners scaled from [0, 1] to pixels by each image's size."""
    images = find_images(img_dir)
    label_files = {p.stem: p for p in sorted(label_dir.glob("*.txt")) if p.is_file()}
    scan = _Scan()
    seen: dict[str, Path] = {}
    for path in images:
        stem = path.stem
        if stem in seen:
            scan.problems.append(DataFormatError(path, None, f"has the same name as {seen[stem].name}"))
            continue
        seen[stem] = path
        label_path = label_files.get(stem, label_dir / f"{stem}.txt")
        try:
            width, height = read_image_size(path)
            label = (
                _read_yolo_label(label_path, width, height, classes, skip_unknown)
                if stem in label_files
                else DotaLabel()
            )
        except DataFormatError as err:
            scan.problems.append(err)
            continue
        scan.records.append(ImageRecord(stem, path, label_path, width, height))
        scan.labels.append(label)
    for stem, label_path in label_files.items():
        if stem not in seen:
            scan.problems.append(DataFormatError(label_path, None, f"no image {stem}.* in {img_dir}"))
    if not images and not scan.problems:
        scan.problems.append(DataFormatError(img_dir, None, "no images (.png, .jpg, .tif, .bmp) in it"))
    return scan


def _combine(root: Path, problems: Sequence[DataFormatError]) -> DataFormatError:
    if len(problems) == 1:
        return problems[0]
    listed = "; ".join(str(p) for p in problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    tail = f"; and {more} more" if more > 0 else ""
    return DataFormatError(root, None, f"{len(problems)} problems in the dataset: {listed}{tail}")


# -------------------------------------------------------------------------------------- the dataset
class DotaDataset(Dataset[Sample]):
    """Samples of a DOTA folder ``root`` (``images/``, ``labelTxt/``) or of a YOLO-OBB split (``root`` holds
    ``images/`` and ``labels/``, or is an ``.../images/<split>`` folder); see the module docstring.

    ``classes``: the class list (indices are positions in it). ``imgsz``: the side of the square input
    frame. ``augment``: the augmentation spec, used when ``train`` (``None``: no augmentation). ``split``:
    tile images larger than ``split.size``. ``skip_unknown``: drop objects of classes not in ``classes``
    instead of failing. ``cache_images``: decoded source images kept per process (LRU).

    ``dataset[i]`` is item ``i`` with the augmentation draw of epoch 0, seed 0; ``dataset[ItemKey(i,
    epoch, seed)]`` (what the loader asks for) and :meth:`get` choose the draw.

    Attributes: ``images`` (:class:`ImageRecord` per source image), ``windows`` (:class:`Window` per item),
    ``classes``, ``imgsz``, ``augment`` (``None`` unless training), ``split``.
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str],
        imgsz: int,
        *,
        augment: AugmentSpec | None = None,
        split: SplitSpec | None = None,
        skip_unknown: bool = False,
        train: bool = True,
        cache_images: int = 2,
    ) -> None:
        self.root = Path(root)
        self.classes = tuple(classes)
        if not self.classes:
            raise DaikError("dataset: empty class list")
        if len(set(self.classes)) != len(self.classes):
            raise DaikError(f"dataset: duplicate class names in {list(self.classes)}")
        if imgsz < 1:
            raise DaikError(f"dataset: imgsz must be positive, got {imgsz}")
        if cache_images < 0:
            raise DaikError(f"dataset: cache_images must be >= 0, got {cache_images}")
        self.imgsz = int(imgsz)
        self.train = train
        self.augment = augment if train else None
        self.split = split
        self.cache_images = cache_images
        if is_data_yaml(self.root):
            raise DataFormatError(
                self.root,
                None,
                "a YOLO data YAML: give the image folder of one split (e.g. images/val), or the YAML as a "
                "spec file's dataset.train",
            )
        if not self.root.is_dir():
            raise DataFormatError(self.root, None, "dataset folder does not exist")

        scan = _scan(self.root, self.classes, skip_unknown)
        windows: list[Window] = []
        for i, rec in enumerate(scan.records):
            try:
                windows.extend(self._windows(i, rec))
            except DataFormatError as err:
                scan.problems.append(err)
        if scan.problems:
            raise _combine(self.root, scan.problems)
        self.images: tuple[ImageRecord, ...] = tuple(scan.records)
        self.windows: tuple[Window, ...] = tuple(windows)

        # all objects in flat arrays (no per-object Python objects: cheap to copy into worker processes)
        polys, ids, flags, counts = [], [], [], [0]
        for label in scan.labels:
            p, c, d = label_to_arrays(label, self.classes)
            polys.append(p)
            ids.append(c)
            flags.append(d)
            counts.append(len(p))
        self._polys = np.concatenate(polys) if polys else np.zeros((0, 8))
        self._labels = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        self._difficult = np.concatenate(flags) if flags else np.zeros(0, dtype=np.int64)
        self._starts = np.cumsum(counts)
        self._cache: OrderedDict[tuple[int, float], np.ndarray] = OrderedDict()

    # ------------------------------------------------------------------------------------ structure
    def _windows(self, index: int, rec: ImageRecord) -> list[Window]:
        if self.split is None:
            return [Window(index, 1.0, 0, 0, rec.width, rec.height)]
        out = []
        size, gap = self.split.size, self.split.gap
        for rate in self.split.rates:
            sw, sh = scaled_size(rec.width, rec.height, rate)
            if min(sw, sh) < 1:
                raise DataFormatError(rec.path, None, f"too small to be scaled by {format_rate(rate)}")
            for left, up in patch_windows(sw, sh, size, gap):
                out.append(Window(index, rate, left, up, min(size, sw - left), min(size, sh - up)))
        return out

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def num_objects(self) -> int:
        """Objects in the label files (of the known classes), counted once per source image."""
        return len(self._polys)

    def all_objects(self) -> tuple[np.ndarray, np.ndarray]:
        """``(polys (N, 8), class ids (N,))`` of every object of every source image (what the label
        statistics of ``labels.png`` are made of)."""
        return self._polys, self._labels

    def source_objects(self, image: int) -> Objects:
        """The objects of source image ``image`` as annotated (full-image pixels, unclipped): the ground
        truth that predictions mapped back with :meth:`SampleMeta.to_source` are evaluated against."""
        a, b = int(self._starts[image]), int(self._starts[image + 1])
        return Objects(self._polys[a:b].reshape(-1, 4, 2), self._labels[a:b], self._difficult[a:b])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # worker processes start with an empty cache
        return state

    # -------------------------------------------------------------------------------------- reading
    def _source(self, image: int, rate: float) -> np.ndarray:
        """Source image ``image`` resized by ``rate`` (BGR), through the LRU."""
        key = (image, rate)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        rec = self.images[image]
        pixels = decode_image(rec.path)
        if pixels.shape[:2] != (rec.height, rec.width):
            raise DataFormatError(
                rec.path,
                None,
                f"decodes to {pixels.shape[1]} x {pixels.shape[0]} pixels but its header says "
                f"{rec.width} x {rec.height}",
            )
        pixels = resize_image(pixels, rate)
        if self.cache_images:
            self._cache[key] = pixels
            while len(self._cache) > self.cache_images:
                self._cache.popitem(last=False)
        return pixels

    def window_objects(self, index: int) -> Objects:
        """The objects of item ``index`` in window pixels, clipped like
        :func:`~daik_core.data.split.split_label` (unaugmented, not letterboxed)."""
        win = self.windows[index]
        a, b = int(self._starts[win.image]), int(self._starts[win.image + 1])
        raw = self._polys[a:b].reshape(-1, 4, 2)
        polys = raw * win.rate
        x0, y0, x1, y1 = win.left, win.up, win.left + win.width, win.up + win.height
        lo, hi = polys.min(1), polys.max(1)
        touching = (lo[:, 0] < x1) & (hi[:, 0] > x0) & (lo[:, 1] < y1) & (hi[:, 1] > y0)
        inside = touching & (lo[:, 0] >= x0) & (hi[:, 0] <= x1) & (lo[:, 1] >= y0) & (hi[:, 1] <= y1)
        x, y = polys[..., 0], polys[..., 1]
        area = np.abs((x * np.roll(y, -1, axis=1) - y * np.roll(x, -1, axis=1)).sum(1))
        inside &= area > 0
        keep = np.flatnonzero(inside)
        parts = [
            Objects(
                polys[keep] - np.array([x0, y0], dtype=np.float64),
                self._labels[a:b][keep],
                self._difficult[a:b][keep],
            )
        ]
        cut = np.flatnonzero(touching & ~inside & (area > 0))
        if len(cut):
            label = DotaLabel(
                [
                    DotaObject(
                        tuple(raw[i].reshape(-1).tolist()),
                        self.classes[self._labels[a + i]],
                        int(self._difficult[a + i]),
                    )
                    for i in cut.tolist()
                ]
            )
            clipped = split_label(
                label,
                win.left,
                win.up,
                max(win.width, win.height),
                win.rate,
                image_size=(x1, y1),
            )
            index_of = {c: k for k, c in enumerate(self.classes)}
            parts.append(
                Objects(
                    np.array([o.poly for o in clipped.objects], dtype=np.float64),
                    np.array([index_of[o.name] for o in clipped.objects], dtype=np.int64),
                    np.array([o.difficult for o in clipped.objects], dtype=np.int64),
                )
            )
        return Objects.concat(parts)

    def _load(self, index: int) -> tuple[np.ndarray, Objects, float]:
        """Item ``index`` resized to fit ``imgsz`` (RGB, not padded), its objects, the resize scale."""
        win = self.windows[index]
        src = self._source(win.image, win.rate)
        view = src[win.up : win.up + win.height, win.left : win.left + win.width]
        image, objs, r = resize_to_fit(view, self.window_objects(index), self.imgsz)
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
        return image, objs, r

    def _meta(
        self, index: int, scale: float, pad: tuple[int, int], affine: np.ndarray | None, is_mosaic: bool
    ) -> SampleMeta:
        win = self.windows[index]
        rec = self.images[win.image]
        return SampleMeta(
            image_id=rec.image_id,
            index=index,
            source_size=(rec.width, rec.height),
            offset=(win.left, win.up),
            window_size=(win.width, win.height),
            rate=win.rate,
            scale=scale,
            pad=pad,
            input_size=self.imgsz,
            affine=_IDENTITY if affine is None else tuple(float(v) for v in affine[:2].reshape(-1)),
            mosaic=is_mosaic,
        )

    # --------------------------------------------------------------------------------------- items
    def __getitem__(self, key: int | ItemKey | tuple[int, int, int]) -> Sample:
        if isinstance(key, tuple):
            return self.get(*key)
        return self.get(key)

    def get(self, index: int, epoch: int = 0, seed: int = 0) -> Sample:
        """Item ``index``; its augmentation is drawn from ``default_rng([seed, epoch, index])``."""
        index = int(index)
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"item {index} of a dataset of {n}")
        index %= n
        s = self.imgsz
        spec = self.augment
        if spec is None:
            image, objs, r = self._load(index)
            image, objs, pad = pad_to_square(image, objs, s)
            objs = clip_objects(objs, (0.0, 0.0, float(s), float(s)), min_visible=0.0)
            return self._sample(image, objs, self._meta(index, r, pad, None, False))

        rng = np.random.default_rng([int(seed), int(epoch), index])
        use_mosaic = bool(rng.random() < spec.mosaic)
        partners = rng.integers(0, n, 3)
        centre = (int(rng.uniform(0.5, 1.5) * s), int(rng.uniform(0.5, 1.5) * s))
        params = draw_affine(rng, spec)
        hsv = draw_hsv(rng, spec)

        if use_mosaic:
            loaded = [self._load(int(i)) for i in (index, *partners.tolist())]
            tiles = [(img, o) for img, o, _ in loaded]
            first, r = loaded[0][0], loaded[0][2]
            pad = (centre[0] - first.shape[1], centre[1] - first.shape[0])  # first tile on the canvas
            canvas, objs = mosaic(tiles, s, centre)
            m = affine_matrix(params, (float(s), float(s)), (s / 2, s / 2))
            image, objs = warp(canvas, objs, m, (s, s))
            meta = self._meta(index, r, pad, m, True)
        else:
            image, objs, r = self._load(index)
            if params.is_identity():
                image, objs, pad = pad_to_square(image, objs, s)
                objs = clip_objects(objs, (0.0, 0.0, float(s), float(s)), min_visible=0.0)
                meta = self._meta(index, r, pad, None, False)
            else:
                h, w = image.shape[:2]
                pad = ((s - w) // 2, (s - h) // 2)
                m = affine_matrix(params, (s / 2, s / 2), (s / 2, s / 2))
                shift = np.array([[1.0, 0.0, pad[0]], [0.0, 1.0, pad[1]], [0.0, 0.0, 1.0]])
                image, objs = warp(image, objs, m @ shift, (s, s))
                meta = self._meta(index, r, pad, m, False)
        image = hsv_jitter(image, hsv)
        return self._sample(image, objs, meta)

    @staticmethod
    def _sample(image: np.ndarray, objs: Objects, meta: SampleMeta) -> Sample:
        return Sample(
            image=np.ascontiguousarray(image),
            boxes=_float32_obb(objs.obb()),
            labels=objs.labels.astype(np.int64),
            difficult=objs.difficult.astype(np.int64),
            meta=meta,
        )
