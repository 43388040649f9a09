"""Collation, the epoch-aware sampler and the data loader (daik_core.data.loader)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from daik_core.config import AugmentSpec
from daik_core.data.dataset import DotaDataset, ItemKey, Sample
from daik_core.data.loader import Batch, EpochLoader, EpochSampler, build_dataloader, collate
from daik_core.data.synth import SYNTH_CLASSES, generate_dataset
from daik_core.errors import DaikError

AUG = AugmentSpec(rotate_deg=15, mosaic=0.3)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "d"
    generate_dataset(root, images=4, size=256, seed=0, difficulty="easy", progress=False)
    # one image without objects
    (root / "labelTxt" / "synth_000003.txt").write_text("imagesource:daik-synth\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def dataset(synth: Path) -> DotaDataset:
    return DotaDataset(synth, SYNTH_CLASSES, 96, augment=AUG)


def batches(loader: EpochLoader) -> list[Batch]:
    return list(loader)


def assert_same(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.images, y.images)
        assert torch.equal(x.targets.boxes, y.targets.boxes)
        assert torch.equal(x.targets.labels, y.targets.labels)
        assert torch.equal(x.targets.mask, y.targets.mask)
        assert x.metas == y.metas


# ----------------------------------------------------------------------------------------- collate
def test_collate_pads_to_the_most_objects(dataset: DotaDataset) -> None:
    samples = [dataset.get(i) for i in (0, 3, 1)]
    counts = [len(s.boxes) for s in samples]
    assert counts[1] == 0 and max(counts) > 0
    batch = collate(samples)
    images, targets, metas = batch
    m = max(counts)
    assert images.shape == (3, 3, 96, 96) and images.dtype == torch.float32 and images.is_contiguous()
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert targets.boxes.shape == (3, m, 5) and targets.boxes.dtype == torch.float32
    assert targets.labels.shape == (3, m) and targets.labels.dtype == torch.int64
    assert targets.mask.dtype == torch.bool and targets.mask.sum(1).tolist() == counts
    for k, s in enumerate(samples):
        n = counts[k]
        assert torch.equal(targets.boxes[k, :n], torch.from_numpy(s.boxes))
        assert torch.equal(targets.labels[k, :n], torch.from_numpy(s.labels))
        assert not targets.boxes[k, n:].any() and not targets.labels[k, n:].any()
        # channel-first RGB, scaled to [0, 1]
        assert torch.equal(images[k], torch.from_numpy(s.image).permute(2, 0, 1).float() / 255)
    assert [mt.image_id for mt in metas] == [s.meta.image_id for s in samples]


def test_batch_without_objects_has_m_zero(dataset: DotaDataset) -> None:
    empty: Sample = dataset.get(3)
    batch = collate([empty, empty])
    assert batch.targets.boxes.shape == (2, 0, 5)
    assert batch.targets.labels.shape == (2, 0) and batch.targets.mask.shape == (2, 0)
    assert batch.images.shape == (2, 3, 96, 96) and torch.isfinite(batch.images).all()
    moved = batch.to("cpu")
    assert moved.targets.boxes.shape == (2, 0, 5)
    with pytest.raises(ValueError, match="no samples"):
        collate([])


# ------------------------------------------------------------------------------------ determinism
def test_same_seed_and_epoch_same_batches(dataset: DotaDataset) -> None:
    a = build_dataloader(dataset, 2, seed=3, epoch=1)
    b = build_dataloader(dataset, 2, seed=3, epoch=1)
    assert_same(batches(a), batches(b))
    b.set_epoch(2)
    other = batches(b)
    assert any(not torch.equal(x.images, y.images) for x, y in zip(batches(a), other, strict=True))
    a.set_epoch(2)
    assert_same(batches(a), other)


def test_workers_do_not_change_the_batches(dataset: DotaDataset) -> None:
    """workers=0 and 2 give identical batches, also after set_epoch with persistent workers."""
    serial = build_dataloader(dataset, 3, workers=0, seed=1)
    parallel = build_dataloader(dataset, 3, workers=2, seed=1)
    assert parallel.loader.persistent_workers
    assert_same(batches(serial), batches(parallel))
    serial.set_epoch(5)
    parallel.set_epoch(5)  # the workers already exist: the epoch reaches them with each item key
    assert_same(batches(serial), batches(parallel))


def test_workers_start_after_opencv_used_threads(dataset: DotaDataset) -> None:
    """OpenCV's thread pool does not survive fork: workers forked from a process whose pool is running
    must not touch it (they used to hang in cv2.setNumThreads)."""
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        big = np.zeros((1500, 1500, 3), np.uint8)
        for _ in range(3):  # start the pool's threads
            cv2.resize(big, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
            cv2.warpAffine(big, np.eye(2, 3), (1200, 1200))
        time.sleep(0.5)  # the pool's threads stop spinning and wait on its condition variable
        loader = build_dataloader(dataset, 2, workers=2, timeout=60)
        assert len(batches(loader)) == 2
    finally:
        cv2.setNumThreads(before)


def test_loader_leaves_the_global_random_state_alone(dataset: DotaDataset) -> None:
    loader = build_dataloader(dataset, 2, seed=0)
    state = torch.get_rng_state()
    batches(loader)
    assert torch.equal(state, torch.get_rng_state())


def test_sampler_keys_and_order() -> None:
    s = EpochSampler(10, shuffle=True, seed=4, epoch=2)
    keys = list(s)
    assert len(keys) == len(s) == 10
    assert sorted(k.item for k in keys) == list(range(10))
    assert all(k == ItemKey(k.item, 2, 4) for k in keys)
    assert [k.item for k in keys] != list(range(10))
    assert list(s) == keys  # iterating again: the same epoch
    s.set_epoch(3)
    assert [k.item for k in s] != [k.item for k in keys]
    assert [k.item for k in EpochSampler(5, shuffle=False, seed=0)] == [0, 1, 2, 3, 4]


def test_distributed_shards_cover_the_items() -> None:
    ranks = [EpochSampler(10, shuffle=True, seed=0, num_replicas=3, rank=r) for r in range(3)]
    items = [[k.item for k in r] for r in ranks]
    assert all(len(x) == 4 for x in items)  # 10 items padded to 12
    assert set().union(*map(set, items)) == set(range(10))


def test_distributed_loader(dataset: DotaDataset) -> None:
    with pytest.raises(DaikError, match="process group"):
        build_dataloader(dataset, 2, distributed=True)
    shards = [build_dataloader(dataset, 1, distributed=True, num_replicas=2, rank=r, seed=0) for r in (0, 1)]
    ids = [[b.metas[0].index for b in batches(s)] for s in shards]
    assert sorted(ids[0] + ids[1]) == [0, 1, 2, 3]


def test_drop_last_and_lengths(dataset: DotaDataset) -> None:
    assert len(build_dataloader(dataset, 3)) == 2
    loader = build_dataloader(dataset, 3, drop_last=True)
    assert len(loader) == 1 and [b.images.shape[0] for b in batches(loader)] == [3]
    assert loader.dataset is dataset and loader.epoch == 0


def test_bad_arguments(dataset: DotaDataset) -> None:
    with pytest.raises(DaikError, match="batch_size"):
        build_dataloader(dataset, 0)
    with pytest.raises(DaikError, match="workers"):
        build_dataloader(dataset, 1, workers=-1)
    with pytest.raises(DaikError, match="seed"):
        build_dataloader(dataset, 1, seed=-1)
    with pytest.raises(DaikError, match="epoch"):
        build_dataloader(dataset, 1).set_epoch(-1)
