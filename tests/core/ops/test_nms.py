import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from daik_core.ops import nms_poly, nms_rotated, poly_iou, rotated_iou
from daik_core.ops.nms import greedy_keep, nms_rotated_dense
from daik_core.structures import obb_to_poly
from tests.core.ops._data import random_quads
from tests.core.ops._reference import greedy_nms

F64 = torch.float64


def cuda(test: Any) -> Any:
    """Marks ``test`` as a GPU test, skipped without a CUDA device."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(test))


def obb(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def scores(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def detections(
    n: int, seed: int, objects: int, classes: int, dtype: torch.dtype = F64
) -> tuple[torch.Tensor, ...]:
    """Detector-like output: ``n`` jittered copies of ``objects`` boxes, random scores and classes."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(objects, 2, generator=g, dtype=F64) * 300
    w = 10 + torch.rand(objects, generator=g, dtype=F64) * 60
    h = w / (1 + 4 * torch.rand(objects, generator=g, dtype=F64))
    angle = torch.rand(objects, generator=g, dtype=F64) * math.pi
    base = torch.cat((centre, w[:, None], h[:, None], angle[:, None]), dim=1)
    pick = torch.randint(0, objects, (n,), generator=g)
    jitter = torch.randn(n, 5, generator=g, dtype=F64) * torch.tensor([4, 4, 4, 2, 0.15], dtype=F64)
    boxes = base[pick] + jitter
    boxes[:, 2:4] = boxes[:, 2:4].abs() + 1
    score = torch.rand(n, generator=g, dtype=F64).round(decimals=2)  # many ties
    cls = torch.randint(0, classes, (n,), generator=g)
    return boxes.to(dtype), score.to(dtype), cls


def test_hand_cases_class_aware_and_agnostic() -> None:
    boxes = obb((0, 0, 10, 10, 0), (1, 0, 10, 10, 0), (50, 50, 10, 10, 0))
    s = scores(0.5, 0.9, 0.7)
    keep = nms_rotated(boxes, s, 0.5)
    assert keep.dtype == torch.int64
    assert keep.tolist() == [1, 2]  # descending score; box 0 is suppressed by box 1 (IoU 9/11)
    assert nms_rotated(boxes, s, 0.5, classes=torch.tensor([0, 1, 0])).tolist() == [1, 2, 0]
    assert nms_rotated(boxes, s, 0.5, classes=torch.tensor([7, 7, 3])).tolist() == [1, 2]
    assert nms_rotated(boxes, s, 0.85).tolist() == [1, 2, 0]  # 9/11 <= 0.85


def test_threshold_equality_keeps_the_box() -> None:
    boxes = obb((0.5, 0.5, 1, 1, 0), (1, 0.5, 1, 1, 0))  # IoU exactly 1/3
    assert float(rotated_iou(boxes[:1], boxes[1:])) == 1 / 3
    assert nms_rotated(boxes, scores(0.9, 0.8), 1 / 3).tolist() == [0, 1]
    assert nms_rotated(boxes, scores(0.9, 0.8), 1 / 3 - 1e-9).tolist() == [0]
    polys = obb_to_poly(boxes)
    assert nms_poly(polys, scores(0.9, 0.8), 1 / 3).tolist() == [0, 1]
    assert nms_poly(polys, scores(0.9, 0.8), 1 / 3 - 1e-9).tolist() == [0]


def test_ties_are_stable_and_a_chain_is_resolved_greedily() -> None:
    # A overlaps B, B overlaps C, A does not overlap C: A kept, B suppressed, C kept
    boxes = obb((0, 0, 10, 10, 0), (4, 0, 10, 10, 0), (8, 0, 10, 10, 0), (8, 0, 10, 10, 0))
    assert nms_rotated(boxes, scores(0.9, 0.8, 0.7, 0.7), 0.3).tolist() == [0, 2]
    # equal scores: the lower index wins
    assert nms_rotated(boxes, scores(0.5, 0.5, 0.5, 0.5), 0.3).tolist() == [0, 2]
    assert nms_rotated(boxes[[3, 2]], scores(0.5, 0.5), 0.3).tolist() == [0]


def test_empty_and_bad_inputs() -> None:
    assert nms_rotated(torch.zeros(0, 5), torch.zeros(0), 0.5).shape == (0,)
    assert nms_rotated(torch.zeros(0, 5), torch.zeros(0), 0.5).dtype == torch.int64
    assert nms_poly(
        torch.zeros(0, 8), torch.zeros(0), 0.5, classes=torch.zeros(0, dtype=torch.long)
    ).shape == (0,)
    assert nms_rotated(obb((0, 0, 1, 1, 0)), scores(0.1), 0.5).tolist() == [0]
    with pytest.raises(ValueError, match=r"scores must have shape \(2,\)"):
        nms_rotated(torch.zeros(2, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="iou_thr"):
        nms_rotated(torch.zeros(2, 5), torch.zeros(2), 1.5)
    with pytest.raises(ValueError, match=r"classes must have shape \(2,\)"):
        nms_poly(torch.zeros(2, 8), torch.zeros(2), 0.5, classes=torch.zeros(3))


@pytest.mark.parametrize("thr", [0.1, 0.5, 0.8])
def test_matches_the_reference_greedy_loop(thr: float) -> None:
    boxes, s, cls = detections(400, seed=30, objects=40, classes=3)
    iou = rotated_iou(boxes, boxes).tolist()
    for classes in (cls, None):
        labels = cls.tolist() if classes is not None else [0] * len(s)
        expected = greedy_nms(iou, s.tolist(), thr, labels)
        assert nms_rotated(boxes, s, thr, classes=classes).tolist() == expected
        assert nms_rotated(boxes, s, thr, classes=classes, chunk_size=64).tolist() == expected
    # float32 boxes: the same rule on their own (float32) IoU
    b32, s32 = boxes.float(), s.float()
    iou32 = rotated_iou(b32, b32).tolist()
    assert nms_rotated(b32, s32, thr, classes=cls).tolist() == greedy_nms(
        iou32, s32.tolist(), thr, cls.tolist()
    )


def test_nms_poly_matches_the_reference_loop_and_nms_rotated() -> None:
    boxes, s, cls = detections(300, seed=31, objects=30, classes=2)
    polys = obb_to_poly(boxes)
    assert nms_poly(polys, s, 0.4, classes=cls).tolist() == nms_rotated(boxes, s, 0.4, classes=cls).tolist()
    quads = torch.cat((random_quads(150, seed=32, convex=False), random_quads(150, seed=33, convex=True)))
    quads = quads * 0.5  # crowd them
    qs = torch.rand(quads.shape[0], generator=torch.Generator().manual_seed(34), dtype=F64)
    labels = (torch.arange(quads.shape[0]) % 2).tolist()
    expected = greedy_nms(poly_iou(quads, quads).tolist(), qs.tolist(), 0.3, labels)
    assert len(expected) < quads.shape[0]
    assert nms_poly(quads, qs, 0.3, classes=torch.tensor(labels)).tolist() == expected


def test_large_class_ids_and_far_apart_classes() -> None:
    # classes may be any integers (e.g. image indices); they must never interact
    boxes = obb((0, 0, 10, 10, 0), (0, 0, 10, 10, 0), (0, 0, 10, 10, 0))
    keep = nms_rotated(boxes, scores(0.3, 0.2, 0.1), 0.5, classes=torch.tensor([10**12, -5, 10**12]))
    assert keep.tolist() == [0, 1]


@cuda
def test_cuda_matches_cpu() -> None:
    boxes, s, cls = detections(2000, seed=35, objects=100, classes=5)
    expected = nms_rotated(boxes, s, 0.5, classes=cls)
    assert torch.equal(nms_rotated(boxes.cuda(), s.cuda(), 0.5, classes=cls.cuda()).cpu(), expected)
    polys = obb_to_poly(boxes)
    assert torch.equal(nms_poly(polys.cuda(), s.cuda(), 0.5, classes=cls.cuda()).cpu(), expected)


@pytest.mark.parametrize(("seed", "thr"), [(0, 0.1), (1, 0.45), (2, 0.7)])
def test_dense_nms_for_graphs_is_nms_rotated(seed: int, thr: float) -> None:
    """``nms_rotated_dense`` (the exported graph's NMS) keeps exactly what ``nms_rotated`` keeps, boxes
    sorted by score as top-k gives them, ties included."""
    boxes, score, cls = detections(300, seed, objects=25, classes=3, dtype=torch.float32)
    order = score.argsort(descending=True, stable=True)
    boxes, score, cls = boxes[order], score[order], cls[order]
    want = nms_rotated(boxes, score, thr, cls)
    assert torch.equal(nms_rotated_dense(boxes, thr, cls), want)
    assert 10 < len(want) < 300  # the case suppresses, and not everything
    empty = torch.zeros(0, 5)
    assert nms_rotated_dense(empty, thr, torch.zeros(0, dtype=torch.long)).numel() == 0


def test_dense_nms_exports_to_onnx_and_onnxruntime_keeps_the_same_boxes(tmp_path: Path) -> None:
    """The NMS as an ONNX graph (exact rotated IoU of the candidate pairs, the greedy rule as a Loop), run
    by onnxruntime on sets it was not traced with, against ``nms_rotated``."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import warnings

    class Nms(torch.nn.Module):
        def forward(self, boxes: torch.Tensor, cls: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
            return nms_rotated_dense(boxes, iou, cls, greedy=torch.jit.script(greedy_keep))

    boxes, _, cls = detections(40, 9, objects=5, classes=2, dtype=torch.float32)
    path = tmp_path / "nms.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Nms(), (boxes, cls, torch.tensor(0.3)), str(path), dynamo=False, opset_version=17,
            input_names=["boxes", "cls", "iou"], output_names=["keep"],
            dynamic_axes={"boxes": {0: "n"}, "cls": {0: "n"}, "keep": {0: "k"}},
        )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seed, n, thr in ((0, 300, 0.1), (1, 500, 0.45), (2, 7, 0.7), (3, 1, 0.5)):
        boxes, score, cls = detections(n, seed, objects=max(n // 12, 1), classes=3, dtype=torch.float32)
        order = score.argsort(descending=True, stable=True)
        boxes, score, cls = boxes[order], score[order], cls[order]
        feed = {"boxes": boxes.numpy(), "cls": cls.numpy(), "iou": np.array(thr, dtype=np.float32)}
        (got,) = session.run(None, feed)
        assert np.array_equal(got, nms_rotated(boxes, score, thr, cls).numpy()), (seed, n, thr)
