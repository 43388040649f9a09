"""A slow, obviously-correct dense reference of the rotated task-aligned assigner (Python loops over GTs
and anchors), for comparing the sparse implementation against on small inputs."""

from __future__ import annotations

import torch
from torch import Tensor

from daik_core.assigners import AALTable, AssignResult, pair_overlap, points_in_obb
from daik_core.assigners.tal import OverlapKind
from daik_core.structures.targets import Targets


def dense_assign(
    scores: Tensor,
    boxes: Tensor,
    points: Tensor,
    targets: Targets,
    *,
    topk: int = 13,
    alpha: float = 1.0,
    beta: float = 6.0,
    gamma: float = 0.0,
    overlap: OverlapKind = "probiou",
    aal: AALTable | None = None,
    eps: float = 1e-9,
) -> AssignResult:
    bsz, a_num, c_num = scores.shape
    labels_out = torch.full((bsz, a_num), c_num, dtype=torch.long)
    boxes_out = torch.zeros(bsz, a_num, 5)
    scores_out = torch.zeros(bsz, a_num, c_num)
    fg = torch.zeros(bsz, a_num, dtype=torch.bool)
    matched = torch.zeros(bsz, a_num, dtype=torch.long)
    metric_out = torch.zeros(bsz, a_num)
    for b in range(bsz):
        gts = [j for j in range(targets.boxes.shape[1]) if bool(targets.mask[b, j])]
        chosen: dict[int, list[tuple[float, int, float]]] = {}  # anchor -> [(u, j, t)]
        per_gt: dict[int, list[tuple[int, float, float]]] = {}  # j -> [(anchor, t, u)]
        for j in gts:
            gt = targets.boxes[b, j].float()
            inside = points_in_obb(points, gt.expand(a_num, 5))
            cand = inside.nonzero().squeeze(1).tolist()
            if not cand:
                d2 = ((points - gt[:2]) ** 2).sum(-1)
                cand = [int(d2.argmin())]
            idx = torch.tensor(cand)
            u = pair_overlap(overlap, boxes[b, idx].float(), gt.expand(len(cand), 5))
            s = scores[b, idx, int(targets.labels[b, j])].float()
            t = s.pow(alpha) * u.pow(beta)
            if gamma > 0:
                assert aal is not None
                w = aal(gt[2:3] / gt[3:4], boxes[b, idx, 4].float() - gt[4])
                t = t * w.pow(gamma)
            ranked = sorted(range(len(cand)), key=lambda k: (-float(t[k]), cand[k]))[:topk]
            for k in ranked:
                chosen.setdefault(cand[k], []).append((float(u[k]), j, float(t[k])))
        for anchor, options in chosen.items():
            u_best, j_best, t_best = sorted(options, key=lambda o: (-o[0], o[1]))[0]
            per_gt.setdefault(j_best, []).append((anchor, t_best, u_best))
        for j, members in per_gt.items():
            max_t = max(m[1] for m in members)
            max_u = max(m[2] for m in members)
            label = int(targets.labels[b, j])
            for anchor, t_pair, _ in members:
                fg[b, anchor] = True
                matched[b, anchor] = j
                labels_out[b, anchor] = label
                boxes_out[b, anchor] = targets.boxes[b, j].float()
                scores_out[b, anchor, label] = t_pair * max_u / (max_t + eps)
                metric_out[b, anchor] = t_pair
    return AssignResult(labels_out, boxes_out, scores_out, fg, matched, metric_out)
