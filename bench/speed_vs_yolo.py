"""CPU speed of RetinaNet / ATSS on the YOLOv8n backbone against stock YOLOv8n, at the same image size and batch.

One training step (forward, loss, backward) and one inference pass (forward with decoding, then Ultralytics' NMS at
the validator's defaults) on the same random batch, all models built in this process from random init. Within every
repeat the two models of a comparison run back to back, in alternating order (A B, B A, ...), so a shared machine's
drift hits both alike; reported are the medians of each and their ratio (dense / YOLOv8n; target <= 1.5), and the
median of the back-to-back ratios. Times are CPU seconds of this process (`time.process_time`).
Stock YOLOv8n is Ultralytics' own `DetectionModel` with its `v8DetectionLoss`.

    OMP_NUM_THREADS=1 nice python bench/speed_vs_yolo.py [--imgsz 320] [--batch 8] [--repeats 9] [--nc 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
from level_stats_overhead import cpu_name  # bench/ is on sys.path when this script runs
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.nms import non_max_suppression

from umop_yolo.engine import runtime
from umop_yolo.engine.dense import DenseDetectionModel

runtime.register()  # a script is an entry point: the UMOP keys in Ultralytics' defaults, offline


def shapes_like_batch(n: int, imgsz: int, nc: int) -> dict[str, torch.Tensor]:
    """n random images with 2-8 boxes each, 5-50% of the image side (the built-in shapes data's range)."""
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(2, 9, (n,), generator=g)
    k = int(counts.sum())
    wh = 0.05 + torch.rand(k, 2, generator=g) * 0.45
    xy = wh / 2 + torch.rand(k, 2, generator=g) * (1 - wh)
    return {"img": torch.rand(n, 3, imgsz, imgsz, generator=g),
            "batch_idx": torch.arange(n).repeat_interleave(counts).float(),
            "cls": torch.randint(0, nc, (k, 1), generator=g).float(), "bboxes": torch.cat([xy, wh], 1)}


def with_args(model: torch.nn.Module, **args) -> torch.nn.Module:
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, **args})
    return model


def train_step(model: torch.nn.Module, batch: dict) -> Callable[[], None]:
    def run() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        model.loss(batch)[0].sum().backward()  # Ultralytics: per-term losses x batch size
    return run


def inference(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], None]:
    @torch.no_grad()
    def run() -> None:
        model.eval()
        non_max_suppression(model(images)[0], 0.001, 0.7, multi_label=True, max_det=300)
    return run


def compare(name: str, a: Callable[[], None], b: Callable[[], None], repeats: int) -> float:
    """Median CPU seconds of a and b timed back to back in alternating order after one warm-up run each; prints
    the line and returns the ratio of the medians."""
    a(), b()
    ta, tb = [], []
    for i in range(repeats):
        for fn, out in ((a, ta), (b, tb))[:: 1 if i % 2 == 0 else -1]:
            t = time.process_time()
            fn()
            out.append(time.process_time() - t)
    ma, mb = statistics.median(ta), statistics.median(tb)
    paired = statistics.median(x / y for x, y in zip(ta, tb))
    print(f"| {name} | {ma:.3f} | {mb:.3f} | {ma / mb:.2f} | {paired:.2f} |", flush=True)
    return ma / mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--nc", type=int, default=5, help="classes (5: the built-in shapes data)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}; torch {torch.__version__}, {args.threads} thread(s); batch {args.batch} x 3 x {args.imgsz}"
          f" x {args.imgsz}, {args.nc} classes; median CPU seconds of {args.repeats}\n")
    print("| comparison | dense (s) | YOLOv8n (s) | ratio of medians | median paired ratio |\n|---|---|---|---|---|")
    batch = shapes_like_batch(args.batch, args.imgsz, args.nc)
    yolo = with_args(DetectionModel("yolov8n.yaml", nc=args.nc, verbose=False))
    dense = {name: with_args(DenseDetectionModel(f"{name}_yolov8n.yaml", nc=args.nc, verbose=False), umop=umop)
             for name, umop in (("atss", False), ("retinanet", False))}
    atss_umop = with_args(DenseDetectionModel("atss_yolov8n.yaml", nc=args.nc, verbose=False), umop=True)
    yolo_train, yolo_infer = train_step(yolo, batch), inference(yolo, batch["img"])
    compare("train step: ATSS (focal) vs YOLOv8n", train_step(dense["atss"], batch), yolo_train, args.repeats)
    compare("train step: ATSS + UMOP vs YOLOv8n", train_step(atss_umop, batch), yolo_train, args.repeats)
    compare("inference: ATSS vs YOLOv8n", inference(dense["atss"], batch["img"]), yolo_infer, args.repeats)
    compare("train step: RetinaNet (focal) vs YOLOv8n", train_step(dense["retinanet"], batch), yolo_train,
            args.repeats)
    compare("inference: RetinaNet vs YOLOv8n", inference(dense["retinanet"], batch["img"]), yolo_infer, args.repeats)


if __name__ == "__main__":
    main()
