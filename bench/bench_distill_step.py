"""What distillation adds to a training step, beyond the teacher's forward pass.

    .venv/bin/python bench/bench_distill_step.py --student n --teacher s --imgsz 256 --batch 8

Times, on random images with random rotated boxes (the step's cost does not depend on what it learns):

* ``student``: the student's forward, detection loss, backward and AdamW step (a plain training step);
* ``teacher``: the frozen, fused teacher's forward under ``no_grad``;
* ``distill``: one full distillation step as the trainer runs it (teacher forward, student forward,
  detection loss with SAD's teacher-ranked positives, AD + AAL + LD + class KD + SAD-KL + CWD, backward,
  step).

and prints ``overhead = distill / (student + teacher) - 1``: the cost of the KD terms and SAD themselves.
Target: <= 15%. The three are measured in interleaved rounds (student, teacher, distill, repeat) and the
medians compared, so that load from other processes hits all three alike. One intra-op thread by default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from daik_core.assigners import job_assigner_spec
from daik_core.config import DistillSpec, parse_spec
from daik_core.engine.teacher import freeze
from daik_core.losses.detection import DetectionLoss
from daik_core.losses.distillation import DistillationLoss, sad_rank_metric
from daik_core.presets import build_detector
from daik_core.structures.targets import Targets

FULL_DAIK = {
    "ad": {"enabled": True},
    "aal": {"enabled": True},
    "sad": {"enabled": True, "kl_weight": 0.1},
    "ld": {"enabled": True},
    "cls_kd": {"enabled": True},
    "feat": {"kind": "cwd"},
}


def random_targets(batch: int, objects: int, imgsz: int, classes: int) -> Targets:
    g = torch.Generator().manual_seed(0)
    wh = (torch.rand(batch, objects, 2, generator=g) * 0.15 + 0.02) * imgsz
    boxes = torch.cat(
        [
            torch.rand(batch, objects, 2, generator=g) * imgsz,
            wh.sort(-1, descending=True).values,
            torch.rand(batch, objects, 1, generator=g) * 3.14,
        ],
        -1,
    )
    labels = torch.randint(0, classes, (batch, objects), generator=g)
    return Targets(boxes, labels, torch.ones(batch, objects, dtype=torch.bool))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="n")
    ap.add_argument("--teacher", default="s")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--objects", type=int, default=30, help="objects per image")
    ap.add_argument("--classes", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    spec = parse_spec({"name": "b", "kind": "distill", "dataset": {"train": "x"},
                       "teacher": {"checkpoint": "t.pt"}, "losses": FULL_DAIK})  # fmt: skip
    losses: DistillSpec = spec.losses
    student = build_detector(args.student, args.classes).train()
    teacher = freeze(build_detector(args.teacher, args.classes).eval().fuse())
    plain_loss = DetectionLoss(args.classes, 16)
    det_loss = DetectionLoss(args.classes, 16, job_assigner_spec(spec.assigner, spec.losses.aal))
    kd = DistillationLoss(losses, student.config.head_channels, teacher.config.head_channels)
    opt = torch.optim.AdamW([*student.parameters(), *kd.parameters()], 1e-4, foreach=True)
    images = torch.randn(args.batch, 3, args.imgsz, args.imgsz)
    targets = random_targets(args.batch, args.objects, args.imgsz, args.classes)

    def student_step() -> None:
        out = student(images)
        total = torch.stack(list(plain_loss(out, targets)[0].values())).sum()
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def teacher_forward() -> None:
        with torch.no_grad():
            teacher(images)

    def distill_step() -> None:
        with torch.no_grad():
            t_out = teacher(images)
        out = student(images)
        rank = sad_rank_metric(det_loss.assigner, t_out, targets)
        det, assign = det_loss(out, targets, rank_metric=rank)
        terms = det | kd(out, t_out, assign, 0, 10, targets=targets, assigner=det_loss.assigner)
        torch.stack(list(terms.values())).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    fns: dict[str, Callable[[], None]] = {
        "student": student_step,
        "teacher": teacher_forward,
        "distill": distill_step,
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    overhead = med["distill"] / (med["student"] + med["teacher"]) - 1.0
    print(
        f"student {args.student} <- teacher {args.teacher}, imgsz {args.imgsz}, batch {args.batch}, "
        f"{args.objects} objects/image, {args.threads} thread(s), median of {args.rounds} rounds:"
    )
    for k, v in med.items():
        print(f"  {k:8s} {v:8.1f} ms")
    print(
        f"distillation overhead over student step + teacher forward: {overhead * 100:+.1f}% (target <= 15%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
