"""Rotated task-aligned assigner (TAL of TOOD, for oriented boxes), with DAIK's AAL factor.

Shape letters: B images, A anchor points, C classes, M objects per image (padded), T candidate pairs.

Algorithm, per image and GT ``j`` (all of it under ``torch.no_grad()``):

1. **Candidates**: the anchor points inside the rotated GT (:func:`points_in_obb`, boundary included).
   *Fallback*: a GT that contains no anchor centre at all (tiny, or thin and between grid points) takes
   the single anchor point nearest to its centre (Euclidean, any level, ties to the lower anchor index),
   so no GT is left without a positive. On the detector's grids that is a stride-8 point, or, for a
   centre near the corner of a stride-8 cell, the coarser point sitting on that corner (stride-16 and
   stride-32 points lie on stride-8 cell corners); either can predict a tiny box.
2. **Metric** of each candidate pair (anchor i, GT j), :meth:`RotatedTaskAlignedAssigner.pair_metric`::

       t = s^alpha * u^beta * AAL(AR_j, angle_i - angle_j)^gamma

   ``s``: the predicted score of GT j's class at anchor i; ``u``: the overlap of the predicted box with
   the GT (``overlap``: ``"probiou"``, ``"rotated_iou"`` (exact), ``"hbb_iou"`` = the IoU of the two
   boxes' enclosing axis-aligned boxes, or ``"extent_iou"`` = angle-free, :func:`extent_iou_aligned`, the
   predicted distances against the GT's, as ``loss_box`` decodes the prediction under the GT's angle);
   AAL: :class:`~daik_core.assigners.aal.AALTable` of the GT's aspect ratio and the predicted-minus-GT
   long-side angle (``gamma = 0`` skips it).
3. **Top-k**: per GT, the ``topk`` candidates with the largest ``t`` become positives (ties to the lower
   anchor index). Candidates with ``t = 0`` may be among them when a GT has fewer than ``topk`` candidates
   with ``t > 0`` (TAL does the same; their normalised target is then 0).
4. **Conflicts**: an anchor that is a positive of several GTs keeps the GT with the largest overlap ``u``
   (ties to the lower GT index), as TAL does.
5. **Targets**: per GT over its final positives, ``t_hat = t * max(u) / (max(t) + eps)``; the anchor's
   ``target_scores`` hold ``t_hat`` at the GT's class and 0 elsewhere.

Scale: overlaps are computed for candidate pairs only, never anchors x objects. Candidates are found
without a dense test either: the anchors are indexed once by their (x, y) grid coordinates, each GT's
enclosing axis-aligned box selects its columns and, per column, one contiguous run of rows
(``searchsorted``); only those anchors are enumerated, in blocks of at most ``block_pairs`` pairs, and
tested exactly. Time and memory grow with the anchors inside the GTs' enclosing boxes, not with ``A x M``.

Hook for SAD (sample alignment distillation): ``assign(..., rank_metric=fn)`` ranks the candidates (steps
3 and 4) by ``fn(pairs)``, e.g. the teacher's :meth:`pair_metric` on the same candidate pairs, while the
targets (step 5) are still normalised with the assigned model's own metric. :meth:`candidates` and
:meth:`pair_metric` are public for the SAD-KL option (a differentiable ``t`` over the anchors inside each
GT: call ``pair_metric`` outside ``no_grad``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, get_args

import torch
from torch import Tensor, nn

from daik_core.assigners.aal import AALTable
from daik_core.config import AssignerSpec, KDAALSpec, OverlapKind
from daik_core.models.decode import obb_to_distances
from daik_core.ops import probiou_aligned, rotated_iou_aligned
from daik_core.structures.boxes import obb_to_hbb
from daik_core.structures.targets import Targets

__all__ = [
    "AssignResult",
    "CandidatePairs",
    "OverlapKind",
    "PairMetric",
    "RotatedTaskAlignedAssigner",
    "build_assigner",
    "candidate_pairs",
    "extent_iou_aligned",
    "hbb_iou_aligned",
    "job_assigner_spec",
    "normalized_alignment",
    "pair_overlap",
    "points_in_obb",
]


#: Default bound on the (anchor, GT) pairs expanded and tested at once while finding candidates.
BLOCK_PAIRS = 1 << 20
#: Tiny GTs whose nearest anchor is searched at once (each costs A distances).
_FALLBACK_BLOCK = 128
#: Slack (pixels) of the x-range sweep, so that float rounding of the enclosing box never drops a point
#: that the exact test accepts.
_SWEEP_PAD = 1e-3


class CandidatePairs(NamedTuple):
    """Candidate (anchor, GT) pairs of a batch, ``T`` of them, sorted by (image, GT, anchor).

    ``batch (T,)`` image index b; ``anchor (T,)`` anchor index in ``[0, A)``; ``gt (T,)`` object index in
    ``[0, M)`` (all int64).
    """

    batch: Tensor
    anchor: Tensor
    gt: Tensor


class PairMetric(NamedTuple):
    """Per candidate pair (``(T,)`` float32 each): ``score`` s, ``overlap`` u, ``aal`` W (1 when gamma = 0)
    and the alignment ``metric`` t = s^alpha u^beta W^gamma."""

    score: Tensor
    overlap: Tensor
    aal: Tensor
    metric: Tensor


class AssignResult(NamedTuple):
    """What the assigner hands to the losses (B images, A anchors, C classes, M objects).

    * ``target_labels (B, A)`` int64: the assigned GT's class; ``C`` (the background label) elsewhere, so
      ``one_hot(target_labels, C + 1)[..., :C]`` is the positive indicator.
    * ``target_boxes (B, A, 5)`` float32: the assigned GT's obb; 0 for background.
    * ``target_scores (B, A, C)`` float32: ``t_hat`` at the assigned class, 0 elsewhere.
    * ``fg_mask (B, A)`` bool: positives.
    * ``matched_gt (B, A)`` int64: index into M of the assigned GT, 0 for background.
    * ``align_metric (B, A)`` float32: ``t`` of the assigned pair (un-normalised), 0 for background.
    """

    target_labels: Tensor
    target_boxes: Tensor
    target_scores: Tensor
    fg_mask: Tensor
    matched_gt: Tensor
    align_metric: Tensor


RankMetricFn = Callable[[CandidatePairs], PairMetric]


def points_in_obb(points: Tensor, boxes: Tensor) -> Tensor:
    """Whether points ``(..., 2)`` lie inside (or on the boundary of) rotated boxes ``(..., 5)``; bool
    ``(...)``, broadcast. A point is inside when its four distances to the box's sides are >= 0."""
    return (obb_to_distances(boxes, points) >= 0).all(dim=-1)


def hbb_iou_aligned(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU ``(N,)`` of the enclosing axis-aligned boxes of aligned pairs of rotated boxes ``(N, 5)``."""
    h1, h2 = obb_to_hbb(boxes1), obb_to_hbb(boxes2)
    iw = (torch.minimum(h1[:, 2], h2[:, 2]) - torch.maximum(h1[:, 0], h2[:, 0])).clamp_min(0)
    ih = (torch.minimum(h1[:, 3], h2[:, 3]) - torch.maximum(h1[:, 1], h2[:, 1])).clamp_min(0)
    inter = iw * ih
    area1 = (h1[:, 2] - h1[:, 0]) * (h1[:, 3] - h1[:, 1])
    area2 = (h2[:, 2] - h2[:, 0]) * (h2[:, 3] - h2[:, 1])
    return inter / (area1 + area2 - inter).clamp_min(eps)


def extent_iou_aligned(pred: Tensor, gt: Tensor, points: Tensor, eps: float = 1e-7) -> Tensor:
    """Angle-free IoU ``(N,)`` of aligned predicted and GT boxes ``(N, 5)`` seen from their anchor points
    ``(N, 2)``: each box as its four distances (l, t, r, b) from the point to its sides *in its own
    long-side frame*, compared as if both frames were the GT's: ``inter = (min(l) + min(r))+ * (min(t) +
    min(b))+``. For a prediction whose long side is its predicted ``l + r`` (no long-side swap in
    decoding) this is the rotated IoU of the GT and the prediction decoded under the GT's angle, the box
    that ``loss_box`` scores. A point outside a box (the nearest-anchor fallback) has negative distances
    there; the interval formula still holds.

    Example: a 10 x 4 GT centred on the point and a prediction of the same size and centre turned by 90
    degrees give 1 (the angle is left out: that is AAL's job)."""
    d_pred = obb_to_distances(pred, points)  # (N, 4) l, t, r, b
    d_gt = obb_to_distances(gt, points)
    m = torch.minimum(d_pred, d_gt)
    inter = (m[:, 0] + m[:, 2]).clamp_min(0) * (m[:, 1] + m[:, 3]).clamp_min(0)
    area_p = (d_pred[:, 0] + d_pred[:, 2]) * (d_pred[:, 1] + d_pred[:, 3])
    area_g = gt[:, 2] * gt[:, 3]
    return inter / (area_p + area_g - inter).clamp_min(eps)


def pair_overlap(kind: OverlapKind, pred: Tensor, gt: Tensor, points: Tensor | None = None) -> Tensor:
    """Overlap ``(N,)`` in ``[0, 1]`` of aligned predicted and GT boxes ``(N, 5)`` (float32); ``extent_iou``
    needs the pairs' anchor ``points (N, 2)``."""
    if kind == "probiou":
        u = probiou_aligned(pred, gt)
    elif kind == "rotated_iou":
        u = rotated_iou_aligned(pred, gt)
    elif kind == "hbb_iou":
        u = hbb_iou_aligned(pred, gt)
    elif kind == "extent_iou":
        if points is None:
            raise ValueError("overlap 'extent_iou' needs the anchor points of the pairs")
        u = extent_iou_aligned(pred, gt, points)
    else:
        raise ValueError(f"overlap must be one of {', '.join(get_args(OverlapKind))}, got {kind!r}")
    return u.to(torch.float32).clamp(0.0, 1.0)


def normalized_alignment(
    metric: Tensor, overlap: Tensor, group: Tensor, num_groups: int, eps: float = 1e-9
) -> Tensor:
    """TAL's normalised target of pairs ``(P,)``: per group (a GT) ``t_hat = t * max(u) / (max(t) + eps)``
    over the group's pairs, so each GT's best pair gets its best overlap. ``group (P,)`` in
    ``[0, num_groups)``."""
    max_t = metric.new_zeros(num_groups).scatter_reduce(0, group, metric, reduce="amax", include_self=False)
    max_u = overlap.new_zeros(num_groups).scatter_reduce(0, group, overlap, reduce="amax", include_self=False)
    return metric * max_u[group] / (max_t[group] + eps)


def _blocks(counts: Tensor, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive index ranges ``[i, j)`` of ``counts (G,)`` whose sum stays within ``budget`` (a range
    holds at least one entry, so a single larger count forms its own block)."""
    cum = counts.cumsum(0)
    total = counts.numel()
    i = 0
    while i < total:
        base = int(cum[i - 1]) if i > 0 else 0
        j = int(torch.searchsorted(cum, base + budget, right=True))
        j = min(max(j, i + 1), total)
        yield i, j
        i = j


def _expand(lo: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Ranges ``[lo[g], lo[g] + counts[g])``, ``(G,)`` each, as flat ``(owner g, position)`` pairs."""
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    start = counts.cumsum(0) - counts  # (G,) exclusive
    pos = torch.arange(owner.numel(), device=counts.device) - start[owner] + lo[owner]
    return owner, pos


class _AnchorIndex(NamedTuple):
    """Anchor points sorted by (column, row): ``xs (X,)`` and ``ys (Y,)`` the sorted distinct coordinates,
    ``key (A,)`` sorted int64 keys ``column * Y + row``, ``order (A,)`` the anchor index of each key."""

    xs: Tensor
    ys: Tensor
    key: Tensor
    order: Tensor


def _index_anchors(points: Tensor) -> _AnchorIndex:
    xs, col = torch.unique(points[:, 0], sorted=True, return_inverse=True)
    ys, row = torch.unique(points[:, 1], sorted=True, return_inverse=True)
    key, order = torch.sort(col * ys.numel() + row, stable=True)
    return _AnchorIndex(xs, ys, key, order)


def _pairs_in_hbb(index: _AnchorIndex, hbb: Tensor, budget: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``(owner, anchor)`` pairs of the anchors inside each enclosing box ``hbb (G, 4)`` (plus a rounding
    slack), in blocks of at most about ``budget`` pairs."""
    ny = index.ys.numel()
    c_lo = torch.searchsorted(index.xs, hbb[:, 0] - _SWEEP_PAD, right=False)  # (G,) first column
    c_hi = torch.searchsorted(index.xs, hbb[:, 2] + _SWEEP_PAD, right=True)
    r_lo = torch.searchsorted(index.ys, hbb[:, 1] - _SWEEP_PAD, right=False)  # (G,) first row
    r_hi = torch.searchsorted(index.ys, hbb[:, 3] + _SWEEP_PAD, right=True)
    n_cols = (c_hi - c_lo).clamp_min(0)
    for g0, g1 in _blocks(n_cols, budget):
        # stage 1: (GT, column) pairs; each is one contiguous run of keys, rows [r_lo, r_hi)
        owner, col = _expand(c_lo[g0:g1], n_cols[g0:g1])
        owner = owner + g0
        lo = torch.searchsorted(index.key, col * ny + r_lo[owner], right=False)
        hi = torch.searchsorted(index.key, col * ny + r_hi[owner], right=False)
        counts = (hi - lo).clamp_min(0)
        # stage 2: the anchors of those runs
        for k0, k1 in _blocks(counts, budget):
            run, pos = _expand(lo[k0:k1], counts[k0:k1])
            yield owner[k0:k1][run], index.order[pos]


def candidate_pairs(
    anchor_points: Tensor, targets: Targets, *, block_pairs: int = BLOCK_PAIRS
) -> CandidatePairs:
    """All (anchor inside GT) pairs of a batch, plus the nearest-anchor fallback for GTs that contain no
    anchor point (module docstring). ``anchor_points (A, 2)`` px; sorted by (image, GT, anchor).

    Search: the anchors are indexed once by (distinct x, distinct y); each GT's enclosing box selects a
    range of columns, and in each column one contiguous run of rows, so only the anchors inside the
    enclosing boxes are enumerated (in blocks of ``block_pairs``) and tested exactly. On a grid the cost
    is about the number of anchors inside the enclosing boxes, whatever the number of objects.
    """
    device = anchor_points.device
    num_anchors = anchor_points.shape[0]
    empty = torch.zeros(0, dtype=torch.long, device=device)
    valid_b, valid_j = targets.mask.nonzero(as_tuple=True)  # (G,) each, in (image, GT) order
    if valid_b.numel() == 0 or num_anchors == 0:
        return CandidatePairs(empty, empty, empty)
    points = anchor_points.float()
    boxes = targets.boxes[valid_b, valid_j].float()  # (G, 5)
    num_gt = boxes.shape[0]

    owners, anchors = [], []
    for owner, anchor in _pairs_in_hbb(_index_anchors(points), obb_to_hbb(boxes), block_pairs):
        inside = points_in_obb(points[anchor], boxes[owner])
        owners.append(owner[inside])
        anchors.append(anchor[inside])
    owner = torch.cat(owners) if owners else empty
    anchor = torch.cat(anchors) if anchors else empty

    # fallback: GTs without any anchor inside take the anchor nearest to their centre
    has_any = torch.zeros(num_gt, dtype=torch.bool, device=device)
    has_any[owner] = True
    lonely = (~has_any).nonzero().squeeze(1)
    if lonely.numel():
        nearest = []
        for s in range(0, lonely.numel(), _FALLBACK_BLOCK):
            centres = boxes[lonely[s : s + _FALLBACK_BLOCK], :2]  # (Q, 2)
            d2 = (centres[:, None, :] - points[None, :, :]).square().sum(-1)  # (Q, A)
            nearest.append(d2.argmin(dim=1))  # first minimum: the lower anchor index
        owner = torch.cat((owner, lonely))
        anchor = torch.cat((anchor, *nearest))

    # canonical order (image, GT, anchor): valid GTs are numbered in (image, GT) order
    perm = torch.sort(owner * num_anchors + anchor).indices
    owner, anchor = owner[perm], anchor[perm]
    return CandidatePairs(valid_b[owner], anchor, valid_j[owner])


def _rank_in_run(group: Tensor) -> Tensor:
    """For sorted group ids ``(T,)``: each element's rank inside its run of equal ids."""
    t = group.numel()
    idx = torch.arange(t, device=group.device)
    is_start = torch.ones(t, dtype=torch.bool, device=group.device)
    is_start[1:] = group[1:] != group[:-1]
    start = torch.where(is_start, idx, torch.zeros_like(idx)).cummax(dim=0).values
    return idx - start


class RotatedTaskAlignedAssigner(nn.Module):
    """Rotated TAL with AAL (module docstring). A module only so that the AAL table follows ``.to()``.

    ``num_classes`` C; ``topk`` positives per GT; ``alpha``, ``beta``, ``gamma`` the exponents of score,
    overlap and AAL; ``overlap`` the kind of u; ``aal`` the table (required when ``gamma > 0``); ``eps``
    keeps the normalisation finite; ``block_pairs`` bounds the memory of the candidate search.
    """

    def __init__(
        self,
        num_classes: int,
        topk: int = 13,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 0.0,
        overlap: OverlapKind = "probiou",
        aal: AALTable | None = None,
        eps: float = 1e-9,
        *,
        block_pairs: int = BLOCK_PAIRS,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if min(alpha, beta, gamma) < 0:
            raise ValueError(f"alpha, beta, gamma must be >= 0, got {alpha}, {beta}, {gamma}")
        if overlap not in get_args(OverlapKind):
            raise ValueError(f"overlap must be one of {', '.join(get_args(OverlapKind))}, got {overlap!r}")
        if gamma > 0 and aal is None:
            raise ValueError(f"gamma = {gamma} > 0 needs an AAL table (aal=AALTable(...))")
        if block_pairs < 1:
            raise ValueError(f"block_pairs must be >= 1, got {block_pairs}")
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.overlap: OverlapKind = overlap
        self.aal = aal
        self.eps = float(eps)
        self.block_pairs = block_pairs

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, topk={self.topk}, alpha={self.alpha}, beta={self.beta}, "
            f"gamma={self.gamma}, overlap={self.overlap!r}"
        )

    def candidates(self, anchor_points: Tensor, targets: Targets) -> CandidatePairs:
        """The candidate pairs of a batch (:func:`candidate_pairs`)."""
        return candidate_pairs(anchor_points, targets, block_pairs=self.block_pairs)

    def pair_metric(
        self,
        pred_scores: Tensor,
        pred_boxes: Tensor,
        targets: Targets,
        pairs: CandidatePairs,
        anchor_points: Tensor,
    ) -> PairMetric:
        """``s, u, W, t`` of candidate pairs for predictions ``pred_scores (B, A, C)`` (probabilities) and
        ``pred_boxes (B, A, 5)`` (obb px) at ``anchor_points (A, 2)`` px. Differentiable in both unless
        called under ``no_grad``."""
        b, a, j = pairs
        labels = targets.labels[b, j]
        gt = targets.boxes[b, j].float()  # (T, 5)
        pred = pred_boxes[b, a].float()  # (T, 5)
        s = pred_scores[b, a, labels].float().clamp(0.0, 1.0)
        u = pair_overlap(self.overlap, pred, gt, anchor_points[a].float())
        if self.gamma > 0:
            assert self.aal is not None  # checked in __init__
            ar = gt[:, 2] / gt[:, 3].clamp_min(torch.finfo(gt.dtype).tiny)
            w = self.aal(ar, pred[:, 4] - gt[:, 4]).to(torch.float32)
        else:
            w = torch.ones_like(u)
        t = s.pow(self.alpha) * u.pow(self.beta)
        if self.gamma > 0:
            t = t * w.pow(self.gamma)
        return PairMetric(s, u, w, t)

    @torch.no_grad()
    def assign(
        self,
        pred_scores: Tensor,
        pred_boxes: Tensor,
        anchor_points: Tensor,
        targets: Targets,
        *,
        rank_metric: RankMetricFn | None = None,
    ) -> AssignResult:
        """Assign a batch. ``pred_scores (B, A, C)`` sigmoid probabilities, ``pred_boxes (B, A, 5)`` decoded
        obb (px), ``anchor_points (A, 2)`` px, ``targets`` with ``M >= 0`` objects per image.

        ``rank_metric``: optional ``fn(pairs) -> PairMetric`` whose ``metric`` ranks the candidates (top-k)
        and whose ``overlap`` resolves conflicts instead of this prediction's own (the SAD hook); the
        targets are normalised with the own metric in any case.
        """
        self._check(pred_scores, pred_boxes, anchor_points, targets)
        bsz, num_anchors, num_classes = pred_scores.shape
        m = targets.boxes.shape[1]
        device = pred_scores.device

        target_labels = torch.full((bsz, num_anchors), num_classes, dtype=torch.long, device=device)
        target_boxes = torch.zeros(bsz, num_anchors, 5, dtype=torch.float32, device=device)
        target_scores = torch.zeros(bsz, num_anchors, num_classes, dtype=torch.float32, device=device)
        fg_mask = torch.zeros(bsz, num_anchors, dtype=torch.bool, device=device)
        matched_gt = torch.zeros(bsz, num_anchors, dtype=torch.long, device=device)
        align_metric = torch.zeros(bsz, num_anchors, dtype=torch.float32, device=device)

        pairs = self.candidates(anchor_points, targets)
        if pairs.batch.numel() == 0:
            return AssignResult(target_labels, target_boxes, target_scores, fg_mask, matched_gt, align_metric)
        own = self.pair_metric(pred_scores, pred_boxes, targets, pairs, anchor_points)
        rank = own if rank_metric is None else rank_metric(pairs)
        if rank.metric.shape != own.metric.shape or rank.overlap.shape != own.overlap.shape:
            raise ValueError(
                f"rank_metric must return one value per candidate pair ({own.metric.numel()}), got "
                f"metric {tuple(rank.metric.shape)} and overlap {tuple(rank.overlap.shape)}"
            )

        # top-k per GT: order by (GT, -t); pairs arrive in (GT, anchor) order, so stable sorts keep ties
        # by the lower anchor index
        gt_key = pairs.batch * m + pairs.gt  # (T,)
        o1 = torch.sort(-rank.metric.float(), stable=True).indices
        order = o1[torch.sort(gt_key[o1], stable=True).indices]
        kept = order[_rank_in_run(gt_key[order]) < self.topk]  # in (GT, -t) order

        # conflicts: per anchor keep the largest overlap; ties go to the lower GT (the earlier in `kept`)
        anchor_key = pairs.batch[kept] * num_anchors + pairs.anchor[kept]
        o1 = torch.sort(-rank.overlap[kept].float(), stable=True).indices
        o2 = o1[torch.sort(anchor_key[o1], stable=True).indices]
        win = kept[o2][_rank_in_run(anchor_key[o2]) == 0]  # (P,) winning pairs

        # normalised targets per GT over its final positives, with the own metric
        t = own.metric[win]
        t_hat = normalized_alignment(t, own.overlap[win], gt_key[win], bsz * m, self.eps)

        b, a, j = pairs.batch[win], pairs.anchor[win], pairs.gt[win]
        labels = targets.labels[b, j]
        target_labels[b, a] = labels
        target_boxes[b, a] = targets.boxes[b, j].float()
        target_scores[b, a, labels] = t_hat
        fg_mask[b, a] = True
        matched_gt[b, a] = j
        align_metric[b, a] = t
        return AssignResult(target_labels, target_boxes, target_scores, fg_mask, matched_gt, align_metric)

    def _check(
        self, pred_scores: Tensor, pred_boxes: Tensor, anchor_points: Tensor, targets: Targets
    ) -> None:
        if pred_scores.dim() != 3 or pred_scores.shape[2] != self.num_classes:
            raise ValueError(
                f"pred_scores must have shape (B, A, {self.num_classes}), got {tuple(pred_scores.shape)}"
            )
        bsz, num_anchors = pred_scores.shape[:2]
        if pred_boxes.shape != (bsz, num_anchors, 5):
            raise ValueError(
                f"pred_boxes must have shape ({bsz}, {num_anchors}, 5), got {tuple(pred_boxes.shape)}"
            )
        if anchor_points.shape != (num_anchors, 2):
            raise ValueError(
                f"anchor_points must have shape ({num_anchors}, 2), got {tuple(anchor_points.shape)}"
            )
        boxes, labels, mask = targets
        if boxes.dim() != 3 or boxes.shape[0] != bsz or boxes.shape[2] != 5:
            raise ValueError(f"targets.boxes must have shape ({bsz}, M, 5), got {tuple(boxes.shape)}")
        if labels.shape != boxes.shape[:2] or mask.shape != boxes.shape[:2]:
            raise ValueError(
                f"targets.labels and targets.mask must have shape {tuple(boxes.shape[:2])}, got "
                f"{tuple(labels.shape)} and {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool:
            raise ValueError(f"targets.mask must be bool, got {mask.dtype}")
        valid_labels = labels[mask]
        if valid_labels.numel() and (
            int(valid_labels.min()) < 0 or int(valid_labels.max()) >= self.num_classes
        ):
            raise ValueError(
                f"target labels must lie in [0, {self.num_classes}), got "
                f"[{int(valid_labels.min())}, {int(valid_labels.max())}]"
            )


#: Largest aspect ratio the AAL table distinguishes (METHOD: AR in [1, 7]); longer boxes are read at 7.
AAL_AR_MAX = 7.0


def job_assigner_spec(assigner: AssignerSpec, aal: KDAALSpec) -> AssignerSpec:
    """The assigner a job trains with: its ``assigner``, with AAL's exponents, table and overlap when
    ``losses.aal`` is on (AAL in assignment and, through ``t_hat``, in the loss weights)."""
    if not aal.enabled:
        return assigner
    update: dict[str, Any] = {"beta": aal.beta, "gamma": aal.gamma, "aal": aal.form, "aal_r": aal.r}
    if aal.overlap is not None:
        update["overlap"] = aal.overlap
    return assigner.model_copy(update=update)


def build_assigner(num_classes: int, spec: AssignerSpec) -> RotatedTaskAlignedAssigner:
    """The assigner of a job spec. The AAL table is built only when ``spec.gamma > 0`` (it is unused
    otherwise), over ``AR in [1, AAL_AR_MAX]``."""
    aal = (
        AALTable(spec.aal, AAL_AR_MAX, spec.aal_ar_bins, spec.aal_angle_bins, spec.aal_r)
        if spec.gamma > 0
        else None
    )
    return RotatedTaskAlignedAssigner(
        num_classes,
        topk=spec.topk,
        alpha=spec.alpha,
        beta=spec.beta,
        gamma=spec.gamma,
        overlap=spec.overlap,
        aal=aal,
    )
