from __future__ import annotations

import math
import time

import pytest
import shapely
import torch

from daik_core.assigners import (
    AALTable,
    AssignResult,
    CandidatePairs,
    PairMetric,
    RotatedTaskAlignedAssigner,
    build_assigner,
    candidate_pairs,
    extent_iou_aligned,
    hbb_iou_aligned,
    pair_overlap,
    points_in_obb,
)
from daik_core.assigners import tal as tal_module
from daik_core.config import AssignerSpec
from daik_core.models.decode import distances_to_obb
from daik_core.ops import rotated_iou_aligned
from daik_core.structures.boxes import obb_to_poly
from daik_core.structures.targets import Targets
from tests.core.assigners._dense import dense_assign


def grid_points(size: int, strides: tuple[int, ...] = (8, 16, 32)) -> torch.Tensor:
    """Anchor points of a square image, levels concatenated, row-major (as the detector makes them)."""
    pts = []
    for s in strides:
        c = (torch.arange(size // s, dtype=torch.float32) + 0.5) * s
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        pts.append(torch.stack((xx, yy), -1).reshape(-1, 2))
    return torch.cat(pts)


def targets_of(boxes: list[list[list[float]]], labels: list[list[int]] | None = None) -> Targets:
    """Padded targets from per-image lists of obb (an empty list for an empty image)."""
    bsz = len(boxes)
    m = max((len(b) for b in boxes), default=0)
    t = torch.zeros(bsz, m, 5)
    lab = torch.zeros(bsz, m, dtype=torch.long)
    mask = torch.zeros(bsz, m, dtype=torch.bool)
    for i, img in enumerate(boxes):
        for j, box in enumerate(img):
            t[i, j] = torch.tensor(box)
            mask[i, j] = True
            if labels is not None:
                lab[i, j] = labels[i][j]
    return Targets(t, lab, mask)


def random_scene(
    g: torch.Generator, bsz: int, m: int, size: int, num_classes: int, min_side: float, max_side: float
) -> Targets:
    centre = torch.rand(bsz, m, 2, generator=g) * size
    w = min_side + torch.rand(bsz, m, generator=g) * (max_side - min_side)
    h = w / (1 + 5 * torch.rand(bsz, m, generator=g))
    angle = torch.rand(bsz, m, generator=g) * math.pi
    boxes = torch.cat((centre, w[..., None], h[..., None], angle[..., None]), -1)
    labels = torch.randint(0, num_classes, (bsz, m), generator=g)
    mask = torch.rand(bsz, m, generator=g) < 0.85
    return Targets(boxes, labels, mask)


def random_predictions(
    g: torch.Generator, points: torch.Tensor, bsz: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    a = points.shape[0]
    scores = torch.rand(bsz, a, num_classes, generator=g)
    centre = points.expand(bsz, a, 2) + torch.randn(bsz, a, 2, generator=g) * 4
    w = 6 + torch.rand(bsz, a, generator=g) * 40
    h = w / (1 + 3 * torch.rand(bsz, a, generator=g))
    angle = torch.rand(bsz, a, generator=g) * math.pi
    return scores, torch.cat((centre, w[..., None], h[..., None], angle[..., None]), -1)


def assert_same(result: AssignResult, expected: AssignResult) -> None:
    assert torch.equal(result.fg_mask, expected.fg_mask)
    assert torch.equal(result.matched_gt, expected.matched_gt)
    assert torch.equal(result.target_labels, expected.target_labels)
    torch.testing.assert_close(result.target_boxes, expected.target_boxes)
    torch.testing.assert_close(result.target_scores, expected.target_scores, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(result.align_metric, expected.align_metric, atol=1e-7, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- candidates


def test_points_in_obb_thin_rotated_box_excludes_corner_anchors_of_its_hbb() -> None:
    points = grid_points(64, (8,))  # 8 x 8 anchors at 4, 12, ..., 60
    box = [32.0, 32.0, 90.0, 10.0, math.pi / 4]  # a thin diagonal box: its hbb covers the whole image
    cand = candidate_pairs(points, targets_of([[box]]))
    got = set(cand.anchor.tolist())
    # reference: shapely's covers() on the box polygon
    poly = shapely.Polygon(obb_to_poly(torch.tensor(box, dtype=torch.float64)).reshape(4, 2).tolist())
    ref = {i for i, (x, y) in enumerate(points.tolist()) if poly.covers(shapely.Point(x, y))}
    assert got == ref
    assert len(got) == 8  # exactly the diagonal anchors (4, 4), (12, 12), ..., (60, 60)
    assert got == {i * 8 + i for i in range(8)}
    corner = 7  # anchor (60, 4): inside the hbb, outside the rotated box
    assert corner not in got
    assert bool(torch.equal(cand.batch, torch.zeros(8, dtype=torch.long)))
    assert bool(torch.equal(cand.gt, torch.zeros(8, dtype=torch.long)))


@pytest.mark.parametrize("block_pairs", [1 << 20, 7])
def test_candidates_match_dense_point_in_box_test(block_pairs: int) -> None:
    g = torch.Generator().manual_seed(0)
    points = grid_points(128)
    targets = random_scene(g, 3, 12, 128, 3, 10, 90)
    cand = candidate_pairs(points, targets, block_pairs=block_pairs)
    got = set(zip(cand.batch.tolist(), cand.gt.tolist(), cand.anchor.tolist(), strict=True))
    inside = points_in_obb(points[None, None], targets.boxes[:, :, None, :])  # (B, M, A) dense
    inside &= targets.mask[..., None]
    ref = {tuple(x) for x in inside.nonzero().tolist()}
    # GTs without any anchor inside take their nearest anchor
    for b, j in (targets.mask & ~inside.any(-1)).nonzero().tolist():
        d2 = ((points - targets.boxes[b, j, :2]) ** 2).sum(-1)
        ref.add((b, j, int(d2.argmin())))
    assert got == ref
    # sorted by (image, GT, anchor)
    key = (cand.batch * 100 + cand.gt) * points.shape[0] + cand.anchor
    assert bool((key[1:] > key[:-1]).all())


def test_tiny_gt_gets_the_nearest_anchor() -> None:
    points = grid_points(64, (8, 16))
    # a 2 x 1 box at (11, 10) holds no anchor point; the nearest is the stride-8 anchor (12, 12)
    box = [11.0, 10.0, 2.0, 1.0, 0.3]
    targets = targets_of([[box]])
    cand = candidate_pairs(points, targets)
    assert cand.anchor.tolist() == [9]
    assert points[9].tolist() == [12.0, 12.0]
    scores = torch.full((1, points.shape[0], 2), 0.5)
    boxes = torch.tensor(box).expand(1, points.shape[0], 5).clone()
    result = RotatedTaskAlignedAssigner(2).assign(scores, boxes, points, targets)
    assert int(result.fg_mask.sum()) == 1 and bool(result.fg_mask[0, 9])
    # near the corner of a stride-8 cell the nearest point is the stride-16 anchor (8, 8)
    cand = candidate_pairs(points, targets_of([[[8.5, 8.5, 1.0, 1.0, 0.0]]]))
    assert points[cand.anchor].tolist() == [[8.0, 8.0]]


# ---------------------------------------------------------------------------------------------- assigner


def test_topk_respected_and_ranked_by_metric() -> None:
    points = grid_points(64, (8,))
    targets = targets_of([[[32.0, 32.0, 60.0, 60.0, 0.0]]])  # covers all 64 anchors
    a = points.shape[0]
    scores = (torch.arange(a, dtype=torch.float32) / a).reshape(1, a, 1)  # s grows with the index
    boxes = targets.boxes[0, 0].expand(1, a, 5).clone()  # u = 1 everywhere: t = s
    result = RotatedTaskAlignedAssigner(1, topk=5).assign(scores, boxes, points, targets)
    assert result.fg_mask[0].nonzero().squeeze(1).tolist() == [59, 60, 61, 62, 63]
    torch.testing.assert_close(result.align_metric[0, 59:], scores[0, 59:, 0])
    # t_hat = t * max(u) / max(t) = s / s_max
    torch.testing.assert_close(result.target_scores[0, 59:, 0], scores[0, 59:, 0] / scores[0, 63, 0])
    assert result.target_labels[0, :59].eq(1).all()  # background label C = 1


def test_ties_broken_by_lower_anchor_index_and_deterministic() -> None:
    points = grid_points(64, (8,))
    targets = targets_of([[[32.0, 32.0, 60.0, 60.0, 0.0]]])
    boxes = targets.boxes[0, 0].expand(1, 64, 5).clone()
    scores = torch.full((1, 64, 1), 0.5)  # every t equal
    assigner = RotatedTaskAlignedAssigner(1, topk=13)
    first = assigner.assign(scores, boxes, points, targets)
    assert first.fg_mask[0].nonzero().squeeze(1).tolist() == list(range(13))
    assert_same(assigner.assign(scores, boxes, points, targets), first)


def test_target_max_per_gt_equals_max_overlap() -> None:
    g = torch.Generator().manual_seed(3)
    points = grid_points(128)
    targets = random_scene(g, 2, 6, 128, 4, 16, 80)
    scores, boxes = random_predictions(g, points, 2, 4)
    result = RotatedTaskAlignedAssigner(4, overlap="rotated_iou").assign(scores, boxes, points, targets)
    checked = 0
    for b, j in targets.mask.nonzero().tolist():
        pos = result.fg_mask[b] & (result.matched_gt[b] == j)
        if not bool(pos.any()):
            continue  # all its anchors went to other GTs
        idx = pos.nonzero().squeeze(1)
        u = pair_overlap("rotated_iou", boxes[b, idx], targets.boxes[b, j].expand(idx.numel(), 5))
        t_hat = result.target_scores[b, idx, int(targets.labels[b, j])]
        max_t = float(result.align_metric[b, idx].max())
        # t_hat = t max(u) / (max(t) + eps): the best pair's target is max(u), up to eps = 1e-9
        expected = float(u.max()) * max_t / (max_t + 1e-9)
        assert float(t_hat.max()) == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert bool((result.target_scores[b, idx].sum(-1) == t_hat).all())  # 0 off the GT's class
        checked += 1
    assert checked >= 8


def test_anchor_inside_two_gts_goes_to_the_higher_overlap() -> None:
    points = grid_points(64, (8,))
    p = 27  # anchor (28, 28)
    gt_a = [24.0, 28.0, 30.0, 12.0, 0.0]
    gt_b = [32.0, 28.0, 30.0, 14.0, 0.0]
    targets = targets_of([[gt_a, gt_b]], [[0, 1]])
    scores = torch.full((1, 64, 2), 0.5)
    for winner, gt in ((0, gt_a), (1, gt_b)):
        boxes = torch.tensor([10.0, 10.0, 4.0, 4.0, 0.0]).expand(1, 64, 5).clone()
        boxes[0, p] = torch.tensor(gt)  # the prediction at the shared anchor is exactly one of the GTs
        result = RotatedTaskAlignedAssigner(2, topk=3).assign(scores, boxes, points, targets)
        assert bool(result.fg_mask[0, p])
        assert int(result.matched_gt[0, p]) == winner
        assert int(result.target_labels[0, p]) == winner
        torch.testing.assert_close(result.target_boxes[0, p], torch.tensor(gt))


@pytest.mark.parametrize("overlap", ["probiou", "rotated_iou", "hbb_iou"])
def test_matches_dense_reference(overlap: str) -> None:
    g = torch.Generator().manual_seed(4)
    points = grid_points(128)
    targets = random_scene(g, 2, 8, 128, 3, 8, 100)
    scores, boxes = random_predictions(g, points, 2, 3)
    kw = dict(topk=7, alpha=1.0, beta=6.0, overlap=overlap)
    result = RotatedTaskAlignedAssigner(3, **kw).assign(scores, boxes, points, targets)  # type: ignore[arg-type]
    assert_same(result, dense_assign(scores, boxes, points, targets, **kw))  # type: ignore[arg-type]
    assert int(result.fg_mask.sum()) > 30


def test_aal_in_the_metric() -> None:
    g = torch.Generator().manual_seed(5)
    points = grid_points(128)
    targets = random_scene(g, 2, 8, 128, 3, 8, 100)
    scores, boxes = random_predictions(g, points, 2, 3)
    aal = AALTable("table", ar_bins=60, angle_bins=60)
    kw = dict(topk=7, beta=4.0, gamma=3.0, aal=aal)
    result = RotatedTaskAlignedAssigner(3, **kw).assign(scores, boxes, points, targets)  # type: ignore[arg-type]
    assert_same(result, dense_assign(scores, boxes, points, targets, **kw))  # type: ignore[arg-type]
    # AAL matters: without it the assignment differs
    plain = RotatedTaskAlignedAssigner(3, topk=7, beta=4.0).assign(scores, boxes, points, targets)
    assert not torch.equal(plain.align_metric, result.align_metric)


def test_gamma_zero_equals_gamma_positive_with_an_all_ones_table() -> None:
    g = torch.Generator().manual_seed(6)
    points = grid_points(128)
    targets = random_scene(g, 2, 8, 128, 3, 8, 100)
    scores, boxes = random_predictions(g, points, 2, 3)
    off = RotatedTaskAlignedAssigner(3, gamma=0.0).assign(scores, boxes, points, targets)
    ones = AALTable.from_grid(torch.ones(8, 8))
    on = RotatedTaskAlignedAssigner(3, gamma=2.0, aal=ones).assign(scores, boxes, points, targets)
    assert_same(on, off)
    assert int(off.fg_mask.sum()) > 0


@pytest.mark.parametrize("mask_all_false", [False, True])
def test_empty_targets_give_all_background(mask_all_false: bool) -> None:
    points = grid_points(64)
    a = points.shape[0]
    if mask_all_false:
        targets = Targets(
            torch.rand(2, 3, 5) * 50, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.bool)
        )
    else:
        targets = targets_of([[], []])
        assert targets.boxes.shape == (2, 0, 5)
    scores = torch.rand(2, a, 4)
    boxes = torch.rand(2, a, 5) * 30
    result = RotatedTaskAlignedAssigner(4).assign(scores, boxes, points, targets)
    assert not bool(result.fg_mask.any())
    assert bool((result.target_labels == 4).all())
    assert float(result.target_scores.abs().sum()) == 0.0
    assert float(result.align_metric.abs().sum()) == 0.0
    for t in result:
        assert t.shape[:2] == (2, a)
        assert not (t.is_floating_point() and bool(t.isnan().any()))


def test_one_empty_image_beside_a_full_one() -> None:
    points = grid_points(64)
    targets = targets_of([[], [[30.0, 30.0, 20.0, 10.0, 0.5]]])
    scores = torch.rand(2, points.shape[0], 1)
    boxes = targets.boxes[1, 0].expand(2, points.shape[0], 5).clone()
    result = RotatedTaskAlignedAssigner(1).assign(scores, boxes, points, targets)
    assert not bool(result.fg_mask[0].any())
    assert int(result.fg_mask[1].sum()) > 0


def test_rank_metric_hook_ranks_but_own_metric_normalises() -> None:
    points = grid_points(64, (8,))
    targets = targets_of([[[32.0, 32.0, 60.0, 60.0, 0.0]]])
    a = points.shape[0]
    scores = (torch.arange(1, a + 1, dtype=torch.float32) / a).reshape(1, a, 1)
    boxes = targets.boxes[0, 0].expand(1, a, 5).clone()
    assigner = RotatedTaskAlignedAssigner(1, topk=4)

    def reversed_rank(pairs: CandidatePairs) -> PairMetric:  # a "teacher" that prefers low indices
        t = 1.0 - pairs.anchor.float() / a
        return PairMetric(t, torch.ones_like(t), torch.ones_like(t), t)

    result = assigner.assign(scores, boxes, points, targets, rank_metric=reversed_rank)
    assert result.fg_mask[0].nonzero().squeeze(1).tolist() == [0, 1, 2, 3]
    own = scores[0, :4, 0]  # own t = s (u = 1); normalised over the chosen positives
    torch.testing.assert_close(result.target_scores[0, :4, 0], own / own.max())
    torch.testing.assert_close(result.align_metric[0, :4], own)

    def wrong_size(pairs: CandidatePairs) -> PairMetric:
        t = torch.ones(3)
        return PairMetric(t, t, t, t)

    with pytest.raises(ValueError, match="one value per candidate pair"):
        assigner.assign(scores, boxes, points, targets, rank_metric=wrong_size)


def test_pair_metric_is_differentiable_outside_no_grad() -> None:
    points = grid_points(64)
    targets = targets_of([[[30.0, 30.0, 20.0, 10.0, 0.5]]])
    scores = torch.rand(1, points.shape[0], 1, requires_grad=True)
    boxes = targets.boxes[0, 0].expand(1, points.shape[0], 5).clone().requires_grad_(True)
    assigner = RotatedTaskAlignedAssigner(1)
    metric = assigner.pair_metric(scores, boxes, targets, assigner.candidates(points, targets), points)
    metric.metric.sum().backward()
    assert scores.grad is not None and float(scores.grad.abs().sum()) > 0
    assert boxes.grad is not None and bool(torch.isfinite(boxes.grad).all())


def test_hbb_iou_definition() -> None:
    a = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0], [0.0, 0.0, 2.0, 2.0, math.pi / 4]])
    b = torch.tensor([[12.0, 10.0, 4.0, 4.0, 0.0], [0.0, 0.0, 2.0, 2.0, 0.0]])
    # half-overlapping squares: 8 / (16 + 16 - 8) = 1/3; a 2 x 2 square turned 45 degrees is enclosed by
    # a square of side 2 sqrt(2) (area 8), which holds the axis-aligned 2 x 2 square: 4 / 8 = 1/2
    torch.testing.assert_close(hbb_iou_aligned(a, b), torch.tensor([1 / 3, 0.5]))


def test_extent_iou_leaves_the_angle_out() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 4.0, 0.0]] * 3)
    pred = torch.tensor(
        [
            [0.0, 0.0, 10.0, 4.0, math.pi / 2],  # the GT turned by 90 degrees: same extents, IoU 1
            [2.0, 0.0, 10.0, 4.0, 0.0],  # shifted 2 px along the long side: 32 / (40 + 40 - 32)
            [0.0, 2.0, 10.0, 4.0, math.pi / 2],  # the same shift along its own (turned) long side
        ]
    )
    points = torch.zeros(3, 2)
    torch.testing.assert_close(extent_iou_aligned(pred, gt, points), torch.tensor([1.0, 2 / 3, 2 / 3]))
    assert float(pair_overlap("rotated_iou", pred[:1], gt[:1])) < 0.5  # the angle counts there
    with pytest.raises(ValueError, match="anchor points"):
        pair_overlap("extent_iou", pred, gt)


def test_extent_iou_is_the_rotated_iou_of_the_prediction_decoded_under_the_gt_angle() -> None:
    g = torch.Generator().manual_seed(3)
    n = 64
    gt = torch.cat(
        (
            torch.rand(n, 2, generator=g) * 40,
            4 + torch.rand(n, 2, generator=g) * 30,
            torch.rand(n, 1, generator=g) * math.pi,
        ),
        1,
    )
    points = gt[:, :2] + (torch.rand(n, 2, generator=g) - 0.5) * 4  # near the centres, some outside
    dist = 1 + torch.rand(n, 4, generator=g) * 20  # predicted l, t, r, b
    dist[:, [0, 2]] += dist[:, [1, 3]]  # l + r >= t + b: the long side is the predicted one (no swap)
    pred = distances_to_obb(dist, torch.rand(n, generator=g) * math.pi, points)
    under_gt_angle = distances_to_obb(dist, gt[:, 4], points)
    expect = rotated_iou_aligned(under_gt_angle, gt)
    torch.testing.assert_close(extent_iou_aligned(pred, gt, points), expect, atol=2e-4, rtol=1e-3)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="AAL table"):
        RotatedTaskAlignedAssigner(3, gamma=1.0)
    with pytest.raises(ValueError, match="overlap"):
        RotatedTaskAlignedAssigner(3, overlap="giou")  # type: ignore[arg-type]
    points = grid_points(64)
    assigner = RotatedTaskAlignedAssigner(2)
    targets = targets_of([[[30.0, 30.0, 20.0, 10.0, 0.5]]], [[5]])
    scores, boxes = torch.rand(1, points.shape[0], 2), torch.rand(1, points.shape[0], 5)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        assigner.assign(scores, boxes, points, targets)
    with pytest.raises(ValueError, match="pred_boxes"):
        assigner.assign(scores, boxes[:, :10], points, targets)


def test_build_assigner_from_spec() -> None:
    plain = build_assigner(3, AssignerSpec())
    assert plain.aal is None and plain.overlap == "probiou" and plain.topk == 13
    spec = AssignerSpec(gamma=1.0, aal="sin", aal_r=2.0, overlap="hbb_iou", topk=9)
    with_aal = build_assigner(3, spec)
    assert with_aal.aal is not None and with_aal.aal.mode == "sin" and with_aal.aal.r == 2.0
    assert with_aal.overlap == "hbb_iou" and with_aal.topk == 9


def test_many_objects_at_1024_px_stays_sparse_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(7)
    points = grid_points(1024)
    assert points.shape[0] == 21504
    m = 1000
    targets = random_scene(g, 1, m, 1024, 15, 8, 60)
    scores, boxes = random_predictions(g, points, 1, 15)
    seen: list[int] = []
    real = tal_module.pair_overlap

    def counting(kind: str, pred: torch.Tensor, gt: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        seen.append(pred.shape[0])
        return real(kind, pred, gt, pts)  # type: ignore[arg-type]

    monkeypatch.setattr(tal_module, "pair_overlap", counting)
    assigner = RotatedTaskAlignedAssigner(15, overlap="rotated_iou")
    start = time.perf_counter()
    result = assigner.assign(scores, boxes, points, targets)
    elapsed = time.perf_counter() - start
    n_pairs = candidate_pairs(points, targets).batch.numel()
    assert seen == [n_pairs]  # overlaps only for the candidate pairs
    assert n_pairs < points.shape[0] * m / 200
    assert int(result.fg_mask.sum()) > 0.9 * int(targets.mask.sum())
    assert elapsed < 10.0
