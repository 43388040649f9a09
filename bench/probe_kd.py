"""Probe: how strongly each loss term pulls on the student, and how the positives are weighted.

On the first ``--batches`` training batches of a distillation spec (no augmentation), for a student
(a checkpoint, or ``--init`` for a freshly initialised one) and the spec's teacher, it prints:

* each loss term's value and the norm of its gradient on the shared layers (backbone + neck, the
  parameters every branch trains), so one sees which terms drive the features: e.g. the CSL angle loss
  averaged over the 180 bins (``--angle-reduction mean``) against summed;
* the effective number of positives per object under each weighting of ``losses.weighting`` (student
  ``t_hat``, teacher ``t_hat``, uniform): ``(sum w)^2 / sum w^2`` per GT, averaged over the GTs.

    .venv/bin/python bench/probe_kd.py --spec configs/synth-kd.yaml --init
    .venv/bin/python bench/probe_kd.py --spec configs/synth-kd.yaml --student runs/x/weights/last.pt
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch

from daik_core.assigners import job_assigner_spec
from daik_core.config import load_spec
from daik_core.data.dataset import DotaDataset
from daik_core.data.loader import build_dataloader
from daik_core.engine.checkpoint import load_detector
from daik_core.engine.teacher import load_teacher
from daik_core.losses import DetectionLoss, DistillationLoss, sad_rank_metric, teacher_alignment
from daik_core.presets import build_detector
from daik_core.structures.boxes import ANGLE_BINS


def effective_positives(weight: torch.Tensor, group: torch.Tensor) -> float:
    """Mean over the groups (GTs) of ``(sum w)^2 / sum w^2``: how many positives carry the weight."""
    ids, inv = torch.unique(group, return_inverse=True)
    s1 = torch.zeros(ids.numel()).index_add(0, inv, weight)
    s2 = torch.zeros(ids.numel()).index_add(0, inv, weight * weight)
    ok = s2 > 0
    return float((s1[ok] ** 2 / s2[ok]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", type=Path, required=True, help="a kind: distill spec (data, teacher, losses)")
    ap.add_argument("--student", type=Path, default=None, help="student checkpoint (default: --init)")
    ap.add_argument("--init", action="store_true", help="a freshly initialised student (seed 0)")
    ap.add_argument("--angle-reduction", choices=("sum", "mean"), default=None)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_spec(args.spec)
    if args.angle_reduction is not None:
        spec = spec.model_copy(
            update={"loss": spec.loss.model_copy(update={"angle_reduction": args.angle_reduction})}
        )
    classes = spec.dataset.class_names()
    assert spec.teacher is not None and spec.teacher.checkpoint is not None, (
        "the spec needs teacher.checkpoint"
    )
    teacher, _ = load_teacher(
        spec.teacher.checkpoint, classes=classes, reg_max=spec.student.reg_max, angle_bins=ANGLE_BINS,
        device=torch.device("cpu"),
    )  # fmt: skip
    if args.student is not None:
        student, _ = load_detector(args.student)
    else:
        torch.manual_seed(0)
        student = build_detector(spec.student.preset, len(classes), reg_max=spec.student.reg_max)
    student.train()
    det = DetectionLoss(
        len(classes), spec.student.reg_max, job_assigner_spec(spec.assigner, spec.losses.aal), spec.loss
    )
    kd = DistillationLoss(spec.losses, student.config.head_channels, teacher.config.head_channels, spec.loss)
    shared = [p for n, p in student.named_parameters() if not n.startswith("head.")]
    data = DotaDataset(spec.dataset.train, classes, spec.hparams.imgsz, augment=None, train=False)
    loader = build_dataloader(data, spec.hparams.batch, workers=0, shuffle=False, seed=0)
    values: dict[str, list[float]] = defaultdict(list)
    grads: dict[str, list[float]] = defaultdict(list)
    eff: dict[str, list[float]] = defaultdict(list)
    for _, batch in zip(range(args.batches), loader, strict=False):
        with torch.no_grad():
            t_out = teacher(batch.images)
        s_out = student(batch.images)
        rank = sad_rank_metric(det.assigner, t_out, batch.targets) if spec.losses.sad.enabled else None
        losses, assign = det(s_out, batch.targets, rank_metric=rank)
        losses |= kd(
            s_out, t_out, assign, 0, spec.hparams.epochs, targets=batch.targets, assigner=det.assigner
        )
        for key, value in losses.items():
            g = torch.autograd.grad(value, shared, retain_graph=True, allow_unused=True)
            values[key].append(float(value))
            grads[key].append(float(torch.sqrt(sum((x.float() ** 2).sum() for x in g if x is not None))))
        b, a = assign.fg_mask.nonzero(as_tuple=True)
        group = b * batch.targets.boxes.shape[1] + assign.matched_gt[b, a]
        eff["student t_hat"].append(effective_positives(assign.target_scores[b, a].sum(-1), group))
        t_w = teacher_alignment(det.assigner, t_out, batch.targets, assign)
        eff["teacher t_hat"].append(effective_positives(t_w, group))
        eff["uniform"].append(effective_positives(torch.ones_like(t_w), group))
    who = "a freshly initialised student" if args.student is None else str(args.student)
    print(f"{who}, teacher {spec.teacher.checkpoint}, {args.batches} batches of {spec.hparams.batch}")
    print(f"{'term':16s} {'value':>9s} {'grad norm (shared layers)':>26s}")
    for key in values:
        v, g = sum(values[key]) / len(values[key]), sum(grads[key]) / len(grads[key])
        print(f"{key:16s} {v:9.4f} {g:26.3e}")
    print("effective positives per object:")
    for key, xs in eff.items():
        print(f"  {key:14s} {sum(xs) / len(xs):6.2f}")


if __name__ == "__main__":
    main()
