"""Validation time of a UMOP (focal-form) YOLOv8n against stock YOLOv8n on the same images, and what the pre-NMS cap
(`nms_pre`) does to COCO AP.

    OMP_NUM_THREADS=1 nice -n 19 python bench/val_speed.py          # trains both briefly on the built-in shapes data
    OMP_NUM_THREADS=1 nice -n 19 python bench/val_speed.py --stock stock/best.pt --umop umop/best.pt --rounds 5
    OMP_NUM_THREADS=1 nice -n 19 python bench/val_speed.py --stock ... --umop ... --sweep 100,200,300,500,1000,3000

Without weights, both models are trained here from the shipped experiments (cfg/yolov8n_stock.yaml and
cfg/yolov8n_umop.yaml, same data and seed) for `--epochs` epochs, so a fresh clone can run it. Both are then validated
by the project's validator (`UmopYOLO.val`, as `umop val` runs it: conf 0.001, COCOeval), in alternation (stock,
umop; then umop, stock; ...) on the same images and settings. A round's time is the process CPU time of one whole
`val()` (dataloader with workers=0, forward, NMS, COCOeval), so other load on a shared machine does not count.
Then each model is validated once more with the cap lifted (nms_pre above any image's number of scores: every score
above conf enters Ultralytics' NMS, which keeps its own max_nms=30000) and the COCO APs are printed side by side.
`--sweep` adds one validation of each model at each of the given caps (COCO AP, detections per image, CPU time): how
the default was chosen.

Last line: `val_time_ratio=<median over rounds of umop / stock CPU time>` at the default nms_pre. Targets: <= 1.1,
with the UMOP model's COCO AP within 0.1 of the uncapped one.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from level_stats_overhead import cpu_name  # bench/ is on sys.path when this script runs
from ultralytics.utils import LOGGER

from umop_yolo import UmopYOLO
from umop_yolo.settings import UMOP_DEFAULTS

UNCAPPED = 2**62  # more scores than any image has: keep_top_scores returns the head's output untouched
EXPERIMENTS = {"stock": "yolov8n_stock.yaml", "umop": "yolov8n_umop.yaml"}
TARGET_RATIO, TARGET_AP = 1.1, 0.1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stock", help="stock YOLOv8n weights (.pt); default: train one here")
    parser.add_argument("--umop", help="UMOP YOLOv8n weights (.pt); default: train one here")
    parser.add_argument("--data", default="shapes.yaml", help="data to train and validate on")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16, help="validation batch")
    parser.add_argument("--rounds", type=int, default=5, help="timed validations of each model, alternating")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the training done without weights")
    parser.add_argument("--nms-pre", type=int, default=UMOP_DEFAULTS["nms_pre"], help="the cap to time")
    parser.add_argument("--project", help="folder for trainings and validation outputs (default: a temporary one)")
    parser.add_argument("--sweep", default="", help="comma-separated nms_pre values to validate each model at once")
    return parser.parse_args(argv)


def train(name: str, args: argparse.Namespace, project: Path) -> Path:
    """Train YOLOv8n from the named experiment for `args.epochs` on `args.data`; its last.pt."""
    print(f"training {name} YOLOv8n ({EXPERIMENTS[name]}, {args.epochs} epochs on {args.data}) ...", flush=True)
    model = UmopYOLO("yolov8n.yaml")
    model.train(cfg=EXPERIMENTS[name], data=args.data, epochs=args.epochs, imgsz=args.imgsz, seed=0, val=False,
                plots=False, project=str(project), name=name, exist_ok=True)
    return Path(model.trainer.last)


def validate(model: UmopYOLO, args: argparse.Namespace, project: Path, nms_pre: int) -> tuple[float, Any]:
    """One whole validation: its process CPU seconds and metrics."""
    start = time.process_time()
    metrics = model.val(data=args.data, imgsz=args.imgsz, batch=args.batch, device="cpu", workers=0, plots=False,
                        verbose=False, nms_pre=nms_pre, project=str(project), name="val", exist_ok=True)
    return time.process_time() - start, metrics


def run(args: argparse.Namespace, project: Path) -> float:
    """Print the timings and APs; return the median umop / stock CPU-time ratio at `args.nms_pre`."""
    weights = {"stock": args.stock, "umop": args.umop}
    models = {k: UmopYOLO(v or train(k, args, project)) for k, v in weights.items()}
    for model in models.values():
        validate(model, args, project, args.nms_pre)  # warm-up: label cache, COCO ground truth, fused model
    times: dict[str, list[float]] = {k: [] for k in models}
    metrics = {}
    for r in range(args.rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            seconds, metrics[name] = validate(models[name], args, project, args.nms_pre)
            times[name].append(seconds)
    ratio = statistics.median(u / s for s, u in zip(times["stock"], times["umop"]))
    uncapped = {k: validate(m, args, project, UNCAPPED) for k, m in models.items()}

    print(f"\nCPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); data {args.data}, "
          f"imgsz {args.imgsz}, batch {args.batch}, {args.rounds} rounds")
    print("| model | nms_pre | val CPU s (median) | NMS ms/image | COCO AP | AP50 |")
    print("|---|---|---|---|---|---|")
    for name in models:
        rows = [(args.nms_pre, statistics.median(times[name]), metrics[name]),
                ("uncapped", *uncapped[name])]
        for cap, seconds, m in rows:
            print(f"| {name} | {cap} | {seconds:.2f} | {m.speed['postprocess']:.2f} | {100 * m.coco['AP']:.2f} | "
                  f"{100 * m.coco['AP50']:.2f} |")
    change = 100 * (metrics["umop"].coco["AP"] - uncapped["umop"][1].coco["AP"])
    before = uncapped["umop"][0] / uncapped["stock"][0]
    print(f"\numop COCO AP, nms_pre={args.nms_pre} - uncapped: {change:+.2f} (target: within {TARGET_AP})")
    print(f"umop / stock val CPU time uncapped (one round): {before:.3f}; per round at nms_pre={args.nms_pre}: "
          + ", ".join(f"{u / s:.3f}" for s, u in zip(times["stock"], times["umop"])))
    print(f"target: <= {TARGET_RATIO} ({'met' if ratio <= TARGET_RATIO and abs(change) <= TARGET_AP else 'MISSED'})")
    if args.sweep:
        sweep(models, args, project, [int(v) for v in args.sweep.split(",")])
    return ratio


def sweep(models: dict[str, UmopYOLO], args: argparse.Namespace, project: Path, caps: list[int]) -> None:
    """One validation of every model at every cap: COCO AP (and its difference to uncapped), detections per image
    after NMS (what COCOeval and predictions.json handle), CPU seconds."""
    print("\n| model | nms_pre | COCO AP | AP - uncapped | AP50 | detections / image | val CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, model in models.items():
        counts: list[float] = []
        model.add_callback("on_val_end", lambda v, counts=counts: counts.append(len(v.jdict) / max(v.seen, 1)))
        rows = [(cap, *validate(model, args, project, cap)) for cap in [*caps, UNCAPPED]]
        for (cap, seconds, m), detections in zip(rows, counts):
            print(f"| {name} | {cap if cap < UNCAPPED else 'uncapped'} | {100 * m.coco['AP']:.2f} | "
                  f"{100 * (m.coco['AP'] - rows[-1][2].coco['AP']):+.2f} | {100 * m.coco['AP50']:.2f} | "
                  f"{detections:.0f} | {seconds:.2f} |")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    LOGGER.setLevel(logging.WARNING)  # Ultralytics' per-run tables and COCOeval summaries
    if args.project:
        ratio = run(args, Path(args.project))
    else:
        with tempfile.TemporaryDirectory(prefix="val_speed-") as folder:
            ratio = run(args, Path(folder))
    print(f"val_time_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
