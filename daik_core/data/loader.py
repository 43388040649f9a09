"""Batches for the trainer: :func:`collate`, an epoch-aware sampler, and :func:`build_dataloader`.

Reproducibility
    A batch depends only on ``(seed, epoch)`` (and, when distributed, the rank and the number of ranks),
    never on the number of worker processes, their scheduling or what ran before:

    * the order of the items comes from :class:`torch.utils.data.DistributedSampler` (one replica when not
      distributed), which shuffles with a generator seeded by ``seed + epoch``;
    * the sampler hands the dataset :class:`~daik_core.data.dataset.ItemKey` ``(item, epoch, seed)``, and
      the dataset draws the item's augmentation from ``numpy.random.default_rng([seed, epoch, index])``
      alone: no worker or global random state is used, and persistent workers need no notice of the
      epoch (it travels with every request);
    * the DataLoader gets its own ``torch.Generator`` (seeded with ``seed``), so iterating it leaves the
      global torch random state alone.

    Call :meth:`EpochLoader.set_epoch` before each epoch; resuming at epoch ``e`` with the same seed gives
    the batches that epoch ``e`` gave the first time.

Speed
    Decoding and augmentation run in ``workers`` processes (cv2, one OpenCV thread each), collation too;
    workers persist across epochs. Pinned memory when CUDA is available.

Worker processes
    Forked by default on Linux (fast to start; ``multiprocessing_context="spawn"`` is the alternative,
    which re-imports torch in every worker). OpenCV's thread pool does not survive a fork, so with workers
    the calling process is switched to one OpenCV thread before they start (it does no image work while
    they run); the workers run one OpenCV thread each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, cast

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from daik_core.data.dataset import DotaDataset, ItemKey, Sample, SampleMeta
from daik_core.errors import DaikError
from daik_core.structures.targets import Targets

__all__ = ["Batch", "EpochLoader", "EpochSampler", "build_dataloader", "collate"]


class Batch(NamedTuple):
    """``images`` (B, 3, S, S) float32 RGB in [0, 1]; ``targets`` padded to M = the most objects of an
    image of the batch (M may be 0); ``metas`` one :class:`SampleMeta` per image (to map predictions back
    to the source images)."""

    images: Tensor
    targets: Targets
    metas: list[SampleMeta]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.images.to(device, non_blocking=non_blocking),
            self.targets.to(device, non_blocking=non_blocking),
            self.metas,
        )


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples of one input size into a :class:`Batch`."""
    if not samples:
        raise ValueError("collate: no samples")
    shape = samples[0].image.shape
    for s in samples:
        if s.image.shape != shape or s.image.dtype != np.uint8:
            raise ValueError(
                f"collate: images must all be uint8 {shape}, got {s.image.dtype} {s.image.shape}"
            )
    pixels = torch.from_numpy(np.stack([s.image for s in samples]))  # (B, S, S, 3) uint8
    images = pixels.permute(0, 3, 1, 2).contiguous().float().div_(255.0)  # (B, 3, S, S)
    b = len(samples)
    m = max(len(s.boxes) for s in samples)
    boxes = torch.zeros((b, m, 5), dtype=torch.float32)
    labels = torch.zeros((b, m), dtype=torch.int64)
    mask = torch.zeros((b, m), dtype=torch.bool)
    for i, s in enumerate(samples):
        n = len(s.boxes)
        if n:
            boxes[i, :n] = torch.from_numpy(np.asarray(s.boxes, dtype=np.float32))
            labels[i, :n] = torch.from_numpy(np.asarray(s.labels, dtype=np.int64))
            mask[i, :n] = True
    return Batch(images, Targets(boxes, labels, mask), [s.meta for s in samples])


class EpochSampler(Sampler[ItemKey]):
    """Item keys ``(item, epoch, seed)`` of one epoch, in the order of a
    :class:`~torch.utils.data.DistributedSampler` over ``size`` items (``num_replicas`` ranks; with more
    than one, the items are padded by repetition to a multiple of the ranks, as DDP expects)."""

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool,
        seed: int,
        epoch: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if seed < 0:
            raise DaikError(f"loader: seed must be >= 0, got {seed}")
        if epoch < 0:
            raise DaikError(f"loader: epoch must be >= 0, got {epoch}")
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self._order: DistributedSampler[int] = DistributedSampler(
            cast(Dataset[int], range(size)),
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self._order.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise DaikError(f"loader: epoch must be >= 0, got {epoch}")
        self.epoch = epoch
        self._order.set_epoch(epoch)

    def __iter__(self) -> Iterator[ItemKey]:
        epoch, seed = self.epoch, self.seed
        for i in self._order:
            yield ItemKey(int(i), epoch, seed)

    def __len__(self) -> int:
        return len(self._order)


class EpochLoader:
    """The trainer's handle: iterate it for :class:`Batch` es, call :meth:`set_epoch` before each epoch."""

    def __init__(self, loader: DataLoader[Sample], sampler: EpochSampler) -> None:
        self.loader = loader
        self.sampler = sampler

    @property
    def dataset(self) -> DotaDataset:
        return cast(DotaDataset, self.loader.dataset)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:
        if self.loader.num_workers > 0:
            _opencv_one_thread()  # before the workers are forked (see _opencv_one_thread)
        return cast(Iterator[Batch], iter(self.loader))

    def __len__(self) -> int:
        return len(self.loader)


def _opencv_one_thread() -> None:
    """One OpenCV thread in this process (the worker processes are the parallelism).

    OpenCV's thread pool does not survive ``fork``: a forked worker that reconfigures it (even
    ``cv2.setNumThreads``) can wait forever on the parent's threads. So the calling process drops its pool
    before workers are forked, and a worker touches the setting only when it is not 1 already, i.e. when
    it was spawned (a fresh process without a pool).
    """
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def _worker_init(worker_id: int) -> None:
    _opencv_one_thread()


def build_dataloader(
    dataset: DotaDataset,
    batch_size: int,
    *,
    workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    distributed: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int = 2,
    multiprocessing_context: str | None = None,
    timeout: float = 0.0,
) -> EpochLoader:
    """A loader of :class:`Batch` es over ``dataset``, deterministic per ``(seed, epoch)`` whatever
    ``workers`` (see the module docstring).

    ``distributed``: shard the items over the ranks of the default process group (or ``num_replicas`` /
    ``rank`` when given). ``drop_last``: drop the last incomplete batch. ``pin_memory`` defaults to CUDA
    being available, ``persistent_workers`` to ``workers > 0``. ``multiprocessing_context``: how worker
    processes start (``None``: the platform default, fork on Linux). ``timeout``: seconds to wait for a
    batch from the workers before raising (0: no limit).
    """
    if batch_size < 1:
        raise DaikError(f"loader: batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise DaikError(f"loader: workers must be >= 0, got {workers}")
    if distributed:
        if num_replicas is None or rank is None:
            if not (dist.is_available() and dist.is_initialized()):
                raise DaikError(
                    "loader: distributed=True needs an initialised process group, or num_replicas and rank"
                )
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
    else:
        num_replicas, rank = 1, 0
    if not 0 <= rank < num_replicas:
        raise DaikError(f"loader: rank {rank} is not in [0, {num_replicas})")
    sampler = EpochSampler(
        len(dataset), shuffle=shuffle, seed=seed, epoch=epoch, num_replicas=num_replicas, rank=rank
    )
    loader: DataLoader[Sample] = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        worker_init_fn=_worker_init if workers > 0 else None,
        persistent_workers=(workers > 0)
        if persistent_workers is None
        else (persistent_workers and workers > 0),
        prefetch_factor=prefetch_factor if workers > 0 else None,
        multiprocessing_context=multiprocessing_context if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        timeout=timeout if workers > 0 else 0.0,
    )
    return EpochLoader(loader, sampler)
