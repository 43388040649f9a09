"""Probe: what SAD (teacher-ranked positives) changes in a student's label assignment.

For each student checkpoint given and the teacher, on the first ``--batches`` batches of a dataset (no
augmentation), it assigns twice with the distillation assigner (AAL on, the base spec's exponents): plain
(the student's own metric picks the top-k inside each GT) and with SAD (the teacher's metric picks them,
the student's metric still normalises ``t_hat``). It prints, per checkpoint:

* positives per image under each assignment and the Jaccard overlap of the two positive sets;
* mean ``t_hat`` (the VFL target and the weight of every other loss) of the positives under each;
* the student's own IoU with the GT at the positives (decoded as the assigner decodes).

    .venv/bin/python bench/probe_sad.py --spec configs/synth-kd.yaml \\
        --teacher runs/synth-kd-teacher/weights/last.pt STUDENT.pt [STUDENT.pt ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from daik_core.assigners import job_assigner_spec
from daik_core.config import load_spec
from daik_core.data.dataset import DotaDataset
from daik_core.data.loader import build_dataloader
from daik_core.engine.checkpoint import load_detector
from daik_core.losses import DetectionLoss, decode_predictions, sad_rank_metric
from daik_core.ops import rotated_iou_aligned


@torch.no_grad()
def probe(student_path: Path, teacher: torch.nn.Module, criterion: DetectionLoss, batches: list) -> dict:
    student, _ = load_detector(student_path)
    n_img = 0
    stats = {"pos_plain": 0, "pos_sad": 0, "inter": 0, "union": 0}
    that: dict[str, list[torch.Tensor]] = {"plain": [], "sad": []}
    iou: dict[str, list[torch.Tensor]] = {"plain": [], "sad": []}
    for batch in batches:
        s_out, t_out = student(batch.images), teacher(batch.images)
        _, boxes = decode_predictions(s_out)
        _, plain = criterion(s_out, batch.targets)
        _, sad = criterion(
            s_out, batch.targets, rank_metric=sad_rank_metric(criterion.assigner, t_out, batch.targets)
        )
        n_img += batch.images.shape[0]
        stats["pos_plain"] += int(plain.fg_mask.sum())
        stats["pos_sad"] += int(sad.fg_mask.sum())
        stats["inter"] += int((plain.fg_mask & sad.fg_mask).sum())
        stats["union"] += int((plain.fg_mask | sad.fg_mask).sum())
        for key, res in (("plain", plain), ("sad", sad)):
            fg = res.fg_mask
            that[key].append(res.target_scores.sum(-1)[fg])
            iou[key].append(rotated_iou_aligned(boxes[fg], res.target_boxes[fg]))
    out = {
        "positives/image plain": stats["pos_plain"] / n_img,
        "positives/image SAD": stats["pos_sad"] / n_img,
        "Jaccard(plain, SAD)": stats["inter"] / max(stats["union"], 1),
    }
    for key in ("plain", "sad"):
        out[f"mean t_hat {key}"] = float(torch.cat(that[key]).mean())
        out[f"student IoU at positives {key}"] = float(torch.cat(iou[key]).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("students", nargs="+", type=Path, help="student checkpoints")
    ap.add_argument("--spec", type=Path, required=True, help="the distillation spec (data, AAL exponents)")
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_spec(args.spec)
    classes = spec.dataset.classes
    criterion = DetectionLoss(
        len(classes), spec.student.reg_max, job_assigner_spec(spec.assigner, spec.losses.aal), spec.loss
    )
    teacher, _ = load_detector(args.teacher)
    data = DotaDataset(spec.dataset.train, classes, spec.hparams.imgsz, augment=None, train=False)
    loader = build_dataloader(data, spec.hparams.batch, workers=0, shuffle=False, seed=0)
    batches = [b for _, b in zip(range(args.batches), loader, strict=False)]
    print(
        f"{len(batches)} batches of {spec.hparams.batch} images from {spec.dataset.train};"
        f" teacher {args.teacher}"
    )
    for path in args.students:
        print(f"\n{path}")
        for key, value in probe(path, teacher, criterion, batches).items():
            print(f"  {key:34s} {value:8.3f}")


if __name__ == "__main__":
    main()
