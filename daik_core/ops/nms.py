"""Greedy non-maximum suppression of rotated boxes (obb) and quadrilaterals (poly), with exact IoU.

The result is exactly that of the classic greedy loop (visit boxes by descending score, ties by lower
index; keep a box unless a kept box overlaps it with IoU > ``iou_thr``; the DOTA devkit's rule), computed
without a Python loop per box:

1. candidate pairs whose enclosing axis-aligned boxes overlap (classes are moved apart so that boxes of
   different classes are never paired); those that cannot reach the threshold are dropped with a cheap
   bound (the intersection is inside the intersection of the enclosing boxes, and no larger than the
   smaller area), then the exact IoU of the rest, in bounded chunks;
2. the pairs with IoU > ``iou_thr`` form a graph ``earlier -> later`` (in score order);
3. rounds over that graph: an undecided box with an edge from a kept box is suppressed; one whose earlier
   neighbours are all suppressed (or that has none) is kept. Each round settles at least the first
   undecided box, and in practice a handful of rounds settle everything (the number of rounds is the
   length of the longest chain of boxes that each suppress the next).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from daik_core.ops._pairs import rechunk, self_overlap_pairs
from daik_core.ops.iou import (
    check_shape,
    compute_dtype,
    default_chunk_size,
    obb_pair_inter,
    poly_pair_inter,
    prepare_obb,
    prepare_poly,
)

__all__ = ["greedy_keep", "nms_poly", "nms_rotated", "nms_rotated_dense"]

_UNDECIDED, _KEPT, _SUPPRESSED = 0, 1, 2


def _check_inputs(
    name: str, geoms: Tensor, width: int, scores: Tensor, classes: Tensor | None, thr: float
) -> None:
    check_shape(name, geoms, width)
    n = geoms.shape[0]
    if scores.shape != (n,):
        raise ValueError(f"scores must have shape ({n},) to match {name}, got {tuple(scores.shape)}")
    if classes is not None and classes.shape != (n,):
        raise ValueError(f"classes must have shape ({n},) to match {name}, got {tuple(classes.shape)}")
    if not 0.0 <= float(thr) <= 1.0:
        raise ValueError(f"iou_thr must be in [0, 1], got {thr}")


def _separate_classes(hbb: Tensor, classes: Tensor | None) -> Tensor:
    """Shift the (float64) enclosing boxes ``(N, 4)`` of each class along x so that classes never overlap."""
    hbb = hbb.to(torch.float64)
    if classes is None:
        return hbb
    _, dense = torch.unique(classes, return_inverse=True)  # class ids -> 0..C-1
    span = (hbb[:, 2].amax() - hbb[:, 0].amin()).clamp_min(0) + 1
    shift = dense.to(torch.float64) * span
    return hbb + torch.stack((shift, torch.zeros_like(shift), shift, torch.zeros_like(shift)), dim=1)


def _greedy(n: int, src: Tensor, dst: Tensor) -> Tensor:
    """Greedy NMS on a suppression graph: ``src < dst`` (score ranks) for pairs with IoU > thr.

    Returns the kept ranks ``(K,)`` in increasing order.
    """
    device = src.device
    status = torch.full((n,), _UNDECIDED, dtype=torch.uint8, device=device)
    while True:
        undecided = status == _UNDECIDED
        s = status[src]
        hit = torch.zeros(n, dtype=torch.int32, device=device).index_add_(0, dst, (s == _KEPT).int())
        pending = torch.zeros(n, dtype=torch.int32, device=device).index_add_(0, dst, (s == _UNDECIDED).int())
        status[undecided & (hit > 0)] = _SUPPRESSED
        status[undecided & (hit == 0) & (pending == 0)] = _KEPT
        if not bool((status == _UNDECIDED).any()):
            break
        # an edge still matters while its target is undecided and its source is not suppressed
        live = (status[dst] == _UNDECIDED) & (status[src] != _SUPPRESSED)
        src, dst = src[live], dst[live]
    return (status == _KEPT).nonzero().squeeze(1)


def _may_exceed(prepared: Any, iou_thr: float) -> Callable[[Tensor, Tensor], Tensor]:
    """A cheap test of pairs ``(i, j)``: False where the IoU certainly is <= ``iou_thr``."""
    h, area = prepared.hbb, prepared.area
    # generous slack over the rounding of both the bound and the exact IoU: it only costs some pruning
    slack = max(1e3 * torch.finfo(area.dtype).eps, 1e-9)

    def test(i: Tensor, j: Tensor) -> Tensor:
        hi, hj = h.index_select(0, i), h.index_select(0, j)
        w = (torch.minimum(hi[:, 2], hj[:, 2]) - torch.maximum(hi[:, 0], hj[:, 0])).clamp_min(0)
        ht = (torch.minimum(hi[:, 3], hj[:, 3]) - torch.maximum(hi[:, 1], hj[:, 1])).clamp_min(0)
        ai, aj = area.index_select(0, i), area.index_select(0, j)
        inter = torch.minimum(w * ht, torch.minimum(ai, aj))  # an upper bound of the intersection
        return inter > (iou_thr - slack) * (ai + aj - inter)  # bound / union > thr - slack

    return test


def _nms(
    prepared: Any,
    inter_fn: Callable[[Any, Any, Tensor, Tensor], Tensor],
    order: Tensor,
    hbb: Tensor,
    iou_thr: float,
    eps: float,
    chunk_size: int,
) -> Tensor:
    n = order.numel()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=order.device)
    may_exceed = _may_exceed(prepared, iou_thr)

    def candidates() -> Iterator[tuple[Tensor, Tensor]]:
        for i, j in self_overlap_pairs(hbb, max(chunk_size, 1 << 16)):
            k = may_exceed(i, j).nonzero().squeeze(1)
            yield i.index_select(0, k), j.index_select(0, k)

    srcs, dsts = [], []
    for i, j in rechunk(candidates(), chunk_size):
        inter = inter_fn(prepared, prepared, i, j)
        union = prepared.area.index_select(0, i) + prepared.area.index_select(0, j) - inter
        hit = (inter / union.clamp_min(eps) > iou_thr).nonzero().squeeze(1)
        ri, rj = rank.index_select(0, i.index_select(0, hit)), rank.index_select(0, j.index_select(0, hit))
        srcs.append(torch.minimum(ri, rj))
        dsts.append(torch.maximum(ri, rj))
    empty = torch.zeros(0, dtype=torch.long, device=order.device)
    src = torch.cat(srcs) if srcs else empty
    dst = torch.cat(dsts) if dsts else empty
    return order[_greedy(n, src, dst)]


@torch.no_grad()
def nms_rotated(
    boxes: Tensor,
    scores: Tensor,
    iou_thr: float,
    classes: Tensor | None = None,
    *,
    eps: float = 1e-7,
    chunk_size: int | None = None,
) -> Tensor:
    """Greedy NMS of rotated boxes ``boxes (N, 5)`` (obb) with scores ``(N,)``.

    A box is suppressed when its exact IoU with a kept box is ``> iou_thr`` (kept when ``<=``). With
    ``classes (N,)`` (any integer labels) boxes of different classes never suppress each other. Returns the
    kept indices ``(K,)`` (int64) by descending score; equal scores keep the lower index first.
    """
    _check_inputs("boxes", boxes, 5, scores, classes, iou_thr)
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    dtype = compute_dtype(boxes)
    order = scores.argsort(descending=True, stable=True)
    prepared = prepare_obb(boxes.to(dtype))
    hbb = _separate_classes(prepared.hbb, classes)
    size = chunk_size if chunk_size is not None else default_chunk_size(boxes.device)
    return _nms(prepared, obb_pair_inter, order, hbb, iou_thr, eps, size)


@torch.no_grad()
def nms_poly(
    polys: Tensor,
    scores: Tensor,
    iou_thr: float,
    classes: Tensor | None = None,
    *,
    eps: float = 1e-7,
    chunk_size: int | None = None,
) -> Tensor:
    """Greedy NMS of quadrilaterals ``polys (N, 8)`` with scores ``(N,)``, exact quad IoU (see ``poly_iou``).

    Same rules and result as :func:`nms_rotated`: suppressed when IoU with a kept quad is ``> iou_thr``;
    class-aware with ``classes (N,)``; kept indices ``(K,)`` (int64) by descending score, stable on ties.
    """
    _check_inputs("polys", polys, 8, scores, classes, iou_thr)
    if polys.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=polys.device)
    dtype = compute_dtype(polys)
    order = scores.argsort(descending=True, stable=True)
    prepared = prepare_poly(polys.to(dtype))
    hbb = _separate_classes(prepared.hbb, classes)
    size = chunk_size if chunk_size is not None else default_chunk_size(polys.device)
    return _nms(prepared, poly_pair_inter, order, hbb, iou_thr, eps, size)


# ------------------------------------------------------------------------------ for exported graphs
def greedy_keep(suppress: Tensor) -> Tensor:
    """Greedy NMS on a dense suppression matrix: ``suppress (N, N)`` float, 1 where box ``i`` suppresses
    box ``j`` (``i < j`` in score order, IoU > threshold), 0 elsewhere. Returns the kept mask ``(N,)``.

    The fixed point of ``keep_j = no kept i suppresses j``, iterated from "keep everything": the matrix is
    strictly upper triangular, so after ``t`` rounds the first ``t`` boxes are settled and the iteration
    stops at the greedy loop's answer after at most ``N`` rounds (in practice the longest chain of boxes that
    each suppress the next, plus one). Written for ``torch.jit.script``: exported as an ONNX ``Loop``."""
    keep = torch.ones(suppress.shape[0], dtype=suppress.dtype, device=suppress.device)
    for _ in range(suppress.shape[0]):
        new = (torch.matmul(keep, suppress) == 0).to(suppress.dtype)
        if bool((new == keep).all()):
            break
        keep = new
    return keep > 0.5


def nms_rotated_dense(
    boxes: Tensor,
    iou_thr: float | Tensor,
    classes: Tensor,
    *,
    eps: float = 1e-7,
    greedy: Callable[[Tensor], Tensor] = greedy_keep,
) -> Tensor:
    """The result of :func:`nms_rotated` (class-aware, exact IoU, suppressed when ``> iou_thr``) for boxes
    ``(N, 5)`` *already sorted by descending score*, ties by index (as top-k returns them), computed with
    dense ``(N, N)`` tensors and no data-dependent Python control flow, so that it traces into an ONNX graph
    (``daik export --end2end``; ``greedy`` is then the scripted :func:`greedy_keep`). Returns the kept
    indices ``(K,)``, in order. Memory grows as ``N^2``: for the few thousand candidates of one image, not
    for bulk use."""
    n = boxes.shape[0]
    prepared = prepare_obb(boxes)
    h = prepared.hbb
    order = torch.arange(n, device=boxes.device)
    pairs = (  # earlier -> later, same class, enclosing boxes overlapping: the pairs worth an exact IoU
        (order[:, None] < order[None, :])
        & (classes[:, None] == classes[None, :])
        & (h[:, None, 0] < h[None, :, 2])
        & (h[None, :, 0] < h[:, None, 2])
        & (h[:, None, 1] < h[None, :, 3])
        & (h[None, :, 1] < h[:, None, 3])
    ).nonzero()
    i, j = pairs[:, 0], pairs[:, 1]
    inter = obb_pair_inter(prepared, prepared, i, j)
    union = prepared.area.index_select(0, i) + prepared.area.index_select(0, j) - inter
    hit = (inter / union.clamp_min(eps) > iou_thr).nonzero().squeeze(1)
    suppress = torch.zeros((n, n), dtype=boxes.dtype, device=boxes.device).index_put(
        (i.index_select(0, hit), j.index_select(0, hit)), torch.ones_like(hit, dtype=boxes.dtype)
    )
    return greedy(suppress).nonzero().squeeze(1)
