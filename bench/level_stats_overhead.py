"""Cost of the per-level statistics recording: one YOLO training step (forward, loss, backward, SGD step) with and
without it, same model and batch, steps interleaved so drift hits both alike; medians and their ratio, the median of
the back-to-back (paired) ratios, and the spread of the plain step (IQR, % of its median) to read them against.

    python bench/level_stats_overhead.py                 # YOLOv8n, 128 px, batch 8, both umop=true and umop=false
    python bench/level_stats_overhead.py --imgsz 320 --batch 16 --steps 40
    python bench/level_stats_overhead.py --threads 1     # on a shared CPU

umop=true:  PFLDetectionLoss (which computes its stats anyway) with vs without `LevelRecorder.update` per step.
umop=false: Ultralytics' `v8DetectionLoss` vs `LevelSplitDetectionLoss` (same loss, plus per-level stats) with the
            recorder, i.e. the whole cost the level diagnostics add to a stock run.
The recorder writes levels.csv (in a temporary folder) every `--interval` steps, as in training. A second, tighter
number times `LevelRecorder.update` alone (flushes included) against the median step.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG_DICT

from umop_yolo.engine import runtime
from umop_yolo.engine.levels.level_stats import LevelRecorder, criterion_stats
from umop_yolo.engine.model import UmopDetectionModel

runtime.register()  # a script is an entry point: the UMOP keys in Ultralytics' defaults, offline


def cpu_name() -> str:
    """`lscpu`'s model name (from /proc/cpuinfo), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_batch(n: int, imgsz: int, device: torch.device) -> dict[str, torch.Tensor]:
    """n random images with 4 boxes each, small to large (every level gets positives)."""
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([0.08, 0.2, 0.4, 0.7])
    boxes = torch.cat([torch.rand(len(sizes), 2, generator=g) * 0.4 + 0.3, sizes[:, None].expand(-1, 2)], 1)
    return {
        "img": torch.rand(n, 3, imgsz, imgsz, generator=g).to(device),
        "batch_idx": torch.arange(n).repeat_interleave(len(sizes)).float().to(device),
        "cls": torch.randint(0, 5, (n * len(sizes), 1), generator=g).float().to(device),
        "bboxes": boxes.repeat(n, 1).to(device),
    }


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def compare(umop: bool, args: argparse.Namespace, device: torch.device, out: Path) -> dict[str, float]:
    """Median step time without and with recording, for one loss."""
    torch.manual_seed(0)
    model = UmopDetectionModel(args.model, nc=5, verbose=False).to(device).train()
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": umop})
    plain = model.init_criterion() if umop else DetectionModel.init_criterion(model)  # the stock v8DetectionLoss
    recorded = model.init_criterion()
    recorder = LevelRecorder(out / f"levels_umop_{umop}.csv", args.interval)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    batch = make_batch(args.batch, args.imgsz, device)

    def step(criterion, record: bool) -> None:
        model.criterion = criterion
        loss, _ = model.loss(batch)
        loss.sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if record:
            recorder.update(criterion_stats(criterion))

    for _ in range(args.warmup):
        step(plain, False)
        step(recorded, True)
    without, with_ = [], []
    for i in range(args.steps):  # alternate which goes first
        pair = [(without, plain, False), (with_, recorded, True)]
        for times, criterion, record in pair if i % 2 == 0 else pair[::-1]:
            times.append(timed(lambda c=criterion, r=record: step(c, r), device))
    stats = criterion_stats(recorded)
    update_alone = []
    for _ in range(args.update_reps):
        update_alone.append(timed(lambda: recorder.update(stats), device))
    recorder.end_epoch()
    t0, t1 = statistics.median(without), statistics.median(with_)
    q0 = statistics.quantiles(without, n=4)
    return {"without_ms": 1e3 * t0, "with_ms": 1e3 * t1, "ratio": t1 / t0,
            "paired": statistics.median(b / a for a, b in zip(without, with_)),
            "spread_pct": 100 * (q0[2] - q0[0]) / t0,
            "update_us": 1e6 * statistics.mean(update_alone), "update_pct": 100 * statistics.mean(update_alone) / t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolov8n.yaml")
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--interval", type=int, default=10, help="level_log_interval")
    parser.add_argument("--update-reps", type=int, default=1000, help="timed LevelRecorder.update calls")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); 1 keeps a "
                        "shared, oversubscribed CPU from turning OpenMP barriers into the noise being measured")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"{args.model} imgsz={args.imgsz} batch={args.batch} steps={args.steps} interval={args.interval} "
          f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'loss':>10} {'without ms':>11} {'with ms':>9} {'ratio':>7} {'paired':>7} {'IQR %':>6} {'update us':>10} "
          f"{'update %':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for umop in (True, False):
            r = compare(umop, args, device, Path(tmp))
            print(f"{'umop=' + str(umop).lower():>10} {r['without_ms']:11.1f} {r['with_ms']:9.1f} {r['ratio']:7.3f} "
                  f"{r['paired']:7.3f} {r['spread_pct']:6.1f} {r['update_us']:10.1f} {r['update_pct']:8.3f}%")


if __name__ == "__main__":
    main()
