"""Training throughput (images/s) of our `UmopTrainer` (umop=true) against Ultralytics' stock `DetectionTrainer`.

    nice -n 10 python bench/throughput.py                       # YOLOv8n, shapes, 320 px, batch 16, 3 trials each
    nice -n 10 python bench/throughput.py --trials 5 --batches 12 --imgsz 256

Both trainers get the same model YAML, data (the built-in shapes set; validation cut to a few images so that the
end-of-training validation both trainers insist on stays short), settings and dataloader (mosaic on, `workers`
processes). Each trial is one real `trainer.train()` over a capped training set (`fraction`); the clock runs from
the end of the `--warmup`-th training batch to the end of the last one, so it covers data loading, forward, loss,
backward, optimizer and callbacks, but not setup or validation. Trials alternate stock / ours (order flipped every
round); the ratio is the median of ours over the median of stock, target >= 0.98.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from umop_yolo.data.resolve import resolve_data
from umop_yolo.engine import runtime

runtime.register()  # a script is an entry point: the UMOP keys in Ultralytics' defaults, offline

TARGET = 0.98


def short_val_data(data: str, n_val: int, folder: Path) -> Path:
    """A copy of a data YAML whose val split is its first `n_val` images (an image list file)."""
    spec = yaml.safe_load(Path(data).read_text())
    root = Path(spec["path"])
    images = sorted(p for p in (root / spec["val"]).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    listing = folder / "val.txt"
    listing.write_text("".join(f"{p}\n" for p in images[:n_val]))
    path = folder / "data.yaml"
    path.write_text(yaml.safe_dump({**spec, "val": str(listing)}))
    return path


def trainer_class(kind: str) -> Any:
    if kind == "stock":
        from ultralytics.models.yolo.detect import DetectionTrainer

        return DetectionTrainer
    from umop_yolo.engine.trainer import UmopTrainer

    return UmopTrainer


def images_per_second(kind: str, settings: dict[str, Any], warmup: int) -> float:
    """One capped training run; images/s over the batches after the first `warmup`."""
    ends: list[float] = []
    trainer = trainer_class(kind)(overrides=settings)
    trainer.add_callback("on_train_batch_end", lambda _: ends.append(time.perf_counter()))
    trainer.train()
    timed = len(ends) - 1 - warmup
    if timed < 1:
        raise RuntimeError(f"only {len(ends)} batches ran; raise --batches or the dataset fraction")
    return timed * settings["batch"] / (ends[-1] - ends[warmup])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="yolov8n.yaml")
    parser.add_argument("--data", default="shapes")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=12, help="training batches per trial (timed: all after warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches at the start of every trial")
    parser.add_argument("--trials", type=int, default=3, help="trials per trainer")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-val", type=int, default=4, help="validation images (not timed, only kept short)")
    parser.add_argument("--device", default="cpu")
    a = parser.parse_args()
    data = resolve_data(a.data)
    spec = yaml.safe_load(Path(data).read_text())
    train_dir = Path(spec["path"]) / spec["train"]
    n_train = sum(1 for p in train_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    fraction = min(1.0, (a.batches * a.batch + 0.5) / n_train)
    rates: dict[str, list[float]] = {"stock": [], "umop": []}
    with tempfile.TemporaryDirectory(prefix="umop-throughput-") as tmp:
        settings = dict(model=a.model, data=str(short_val_data(data, a.n_val, Path(tmp))), imgsz=a.imgsz,
                        batch=a.batch, epochs=1, fraction=fraction, close_mosaic=0, workers=a.workers,
                        device=a.device, plots=False, project=tmp, exist_ok=True, verbose=False, seed=0)
        for trial in range(a.trials):
            for kind in ("stock", "umop") if trial % 2 == 0 else ("umop", "stock"):
                rate = images_per_second(kind, {**settings, "name": kind}, a.warmup)
                rates[kind].append(rate)
                print(f"trial {trial + 1}/{a.trials} {kind}: {rate:.2f} images/s", flush=True)
    stock, ours = statistics.median(rates["stock"]), statistics.median(rates["umop"])
    ratio = ours / stock
    where = torch.cuda.get_device_name() if a.device != "cpu" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{a.model}, {Path(data).parent.name}, {a.imgsz} px, batch {a.batch}, {a.workers} workers, "
          f"{a.batches - a.warmup - 1} timed batches x {a.trials} trials per trainer ({where}, "
          f"torch {torch.__version__})")
    print("| trainer | images/s (median) | trials |\n|---|---|---|")
    for name, kind, median in (("Ultralytics DetectionTrainer (stock loss)", "stock", stock),
                               ("UmopTrainer (umop=true)", "umop", ours)):
        print(f"| {name} | {median:.2f} | {', '.join(f'{r:.2f}' for r in rates[kind])} |")
    print(f"\nratio ours / stock: {ratio:.3f} (target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
