"""COCO at full size: data preparation, evaluation and level diagnostics timed on a synthetic train2017.

    python bench/coco_scale.py                        # 118,287 images, 860,001 boxes (bench/coco_synth.py)
    python bench/coco_scale.py --images 10000 --out /tmp/coco10k --keep

Each stage runs in a process forked from this one after the imports, with its peak-RSS mark reset (Linux'
/proc/self/clear_refs), so its peak is its own: wall and CPU seconds (all threads), peak RSS, and RSS before the stage
(the imports, the prepared inputs) are printed per stage. The stages:
  generate  the synthetic COCO JSON and images, train2017 and a 5,000-image val2017 (not a target; for the record)
  check     `umop check data=coco.yaml` over both splits: every image header against the JSON, every annotation
  convert   umop's COCO -> YOLO conversion (`umop convert format=coco`), with the size of the labels it writes
  cache     Ultralytics' label cache: every image header and label file verified, as the first training does
  loader    one pass of the training data loader (mosaic, 640 px, batch 16, workers 0) over 1,000 images
            (fewer if the dataset has fewer); RSS growth from the first quarter of the batches to the last
  eval      COCOeval (bbox) of `--eval-images` (5,000) images x 100 detections with pycocotools, then with
            faster-coco-eval, through umop's `evaluate_boxes`; the largest difference of their six numbers is printed
  levels    12 epochs x `--steps-per-epoch` (7,300) steps into umop's LevelRecorder (5 levels, the default
            level_log_interval), writing levels.csv as training does; RSS per epoch for growth, and the recorder's
            share of an epoch of `--step-ms` steps
  plots     levels.csv read back and the level plots rendered (`umop plots`)
The dataset goes to `--out` (default: the temp folder) and is deleted at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # coco_synth, level_stats_overhead
import coco_synth  # noqa: E402

MARKER = ".coco_scale"  # marks a folder this script made, which it may delete
EPOCHS, LOADER_IMAGES, BATCH, VAL_IMAGES = 12, 1_000, 16, 5_000
LEVELS = ["P3", "P4", "P5", "P6", "P7"]  # RetinaNet / ATSS: the most rows per window


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def rss_mb() -> float:
    """Current resident set size."""
    return _status_mb("VmRSS")


def reset_peak() -> None:
    """Set this process' peak RSS mark (VmHWM) to its current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _train_cfg() -> Any:
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG

    return get_cfg(DEFAULT_CFG, {"imgsz": 640, "batch": BATCH})


def _dataset(out: Path) -> Any:
    from ultralytics.data.build import build_yolo_dataset

    data = {"names": dict(enumerate(coco_synth.category_names())), "nc": 80, "channels": 3}
    return build_yolo_dataset(_train_cfg(), str(out / "yolo" / "images" / "train"), BATCH, data, mode="train")


def generate(root: Path, images: int) -> dict:
    (root / "annotations").mkdir(parents=True)
    boxes = {}
    for split, n, seed in (("train2017", images, 0), ("val2017", min(images, VAL_IMAGES), 1)):
        tables = coco_synth.make_tables(n, seed)
        coco_synth.write_instances(tables, root / "annotations" / f"instances_{split}.json", split, seed)
        coco_synth.write_images(tables, root / split, root / "prototypes")
        boxes[split] = len(tables.owner)
    (root / "coco.yaml").write_text("format: coco\ntrain: train2017\nval: val2017\n"
                                    "train_json: annotations/instances_train2017.json\n"
                                    "val_json: annotations/instances_val2017.json\n")
    json_mb = (root / "annotations" / "instances_train2017.json").stat().st_size / 2**20
    return {"boxes": boxes["train2017"], "val_boxes": boxes["val2017"], "json_mb": json_mb}


def check(root: Path) -> dict:
    from umop_yolo.data.check import check_data

    _, problems, images = check_data(root / "coco.yaml")
    return {"images": images, "problems": len(problems)}


def convert(root: Path, out: Path) -> dict:
    from umop_yolo.data.convert import convert as convert_dataset

    convert_dataset("coco", root, out / "yolo", splits=["train2017"])
    stats = [f.stat() for f in (out / "yolo" / "labels" / "train").iterdir()]
    return {"labels_mb": sum(s.st_size for s in stats) / 2**20,
            "labels_disk_mb": sum(s.st_blocks for s in stats) / 2**11}  # st_blocks: 512-byte units


def cache(out: Path) -> dict:
    cache_file = out / "yolo" / "labels" / "train.cache"
    cache_file.unlink(missing_ok=True)
    dataset = _dataset(out)
    return {"labels": len(dataset.labels), "boxes": sum(len(lb["cls"]) for lb in dataset.labels),
            "cache_mb": cache_file.stat().st_size / 2**20}


def loader(out: Path) -> dict:
    from ultralytics.data.build import build_dataloader

    batches = build_dataloader(_dataset(out), BATCH, 0, shuffle=True, pin_memory=False, device="cpu")
    rss = [rss_mb() for _, _ in zip(range(math.ceil(LOADER_IMAGES / BATCH)), batches)]
    quarters = "/".join(f"{rss[min(len(rss) - 1, len(rss) * k // 4)]:.0f}" for k in range(1, 5))
    return {"batches": len(rss), "rss_mb_quarters": quarters}


def _eval_inputs(images: int) -> tuple[dict, list[dict]]:
    tables = coco_synth.make_tables(images, seed=3)
    return coco_synth.ground_truth(tables), coco_synth.detections(tables)


def evaluate(inputs: tuple[dict, list[dict]], backend: str) -> dict:
    from umop_yolo.eval.coco_eval import evaluate_boxes

    gt, dets = inputs
    scores = evaluate_boxes(gt, dets, backend=backend)
    return {"detections": len(dets), **{f"stat_{k}": v for k, v in scores.stats.items()}}


def _level_stats(n: int) -> list[dict]:
    """n steps' worth of per-level stats (positives, samples, gamma, alpha, loss), as a UMOP criterion keeps them."""
    import torch

    g = torch.Generator().manual_seed(0)
    samples = torch.tensor([76_800, 19_200, 4_800, 1_200, 300]) * 9  # 640 px, 9 anchors per location
    out = []
    for _ in range(n):
        num_pos = torch.randint(0, 400, (len(LEVELS),), generator=g)
        out.append({"num_pos": num_pos, "num_samples": samples, "gamma": 2 + torch.rand(5, generator=g) - 0.5,
                    "alpha": torch.rand(5, generator=g) * 0.5, "loss": torch.rand(5, generator=g)})
    return out


def levels(pool: list[dict], out: Path, steps_per_epoch: int, step_ms: float) -> dict:
    from umop_yolo.engine.levels.level_stats import LevelRecorder
    from umop_yolo.settings import UMOP_DEFAULTS

    csv = out / "run" / "levels.csv"
    recorder, rss, start = LevelRecorder(csv, UMOP_DEFAULTS["level_log_interval"]), [], time.perf_counter()
    for epoch in range(1, EPOCHS + 1):
        recorder.start_epoch(epoch, (epoch - 1) * steps_per_epoch, LEVELS)
        for step in range(steps_per_epoch):
            recorder.update(pool[step % len(pool)])
        recorder.end_epoch()
        rss.append(rss_mb())
    per_epoch = (time.perf_counter() - start) / EPOCHS
    return {"csv_mb": csv.stat().st_size / 2**20, "rss_growth_mb": rss[-1] - rss[0],
            "us_per_step": 1e6 * per_epoch / steps_per_epoch,
            "pct_of_epoch": 100 * per_epoch / (steps_per_epoch * step_ms / 1e3)}


def plots(out: Path) -> dict:
    from umop_yolo.engine.levels.level_plots import plot_run

    return {"pngs": len(plot_run(out / "run"))}


def _warm() -> None:
    """Import what the stages use once, before the stages fork, so no stage pays for the imports."""
    import faster_coco_eval  # noqa: F401
    import pycocotools.cocoeval  # noqa: F401
    import ultralytics.data.build  # noqa: F401

    import umop_yolo.data.check  # noqa: F401
    import umop_yolo.data.convert  # noqa: F401
    import umop_yolo.engine.levels.level_plots  # noqa: F401
    import umop_yolo.eval.coco_eval  # noqa: F401


def measured(run: Callable[..., dict], prepare: Callable[[], Any] | None, args: tuple) -> dict:
    """In the forked process: prepare the inputs, reset the peak RSS mark, then time `run(*prepared, *args)`."""
    prepared = (prepare(),) if prepare else ()
    reset_peak()
    before = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    extra = run(*prepared, *args)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "peak_rss_mb": _status_mb("VmHWM"),
            "start_rss_mb": before, **extra}


def stage(name: str, run: Callable[..., dict], *args: Any, prepare: Callable[[], Any] | None = None) -> dict:
    """Run one stage in its own forked process and print its line."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        r = pool.apply(measured, (run, prepare, args))
    notes = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                     if k not in {"wall_s", "cpu_s", "peak_rss_mb", "start_rss_mb"})
    print(f"{name:<16} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['peak_rss_mb']:9.0f} {r['start_rss_mb']:9.0f}  {notes}",
          flush=True)
    return r


def prepare_out(out: Path) -> None:
    """A fresh, empty `out`; an existing folder is replaced only if this script made it."""
    if out.exists():
        if not (out / MARKER).is_file():
            sys.exit(f"--out {out} exists and was not made by {Path(__file__).name}: name a new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=coco_synth.TRAIN2017["images"], help="train images")
    parser.add_argument("--out", type=Path, help="work folder (default: <temp>/umop_coco_scale_<images>)")
    parser.add_argument("--eval-images", type=int, default=5_000, help="val images for COCOeval (val2017: 5000)")
    parser.add_argument("--steps-per-epoch", type=int, default=7_300, help="levels: training steps per epoch "
                        "(train2017 at 16 images per step: 7,393)")
    parser.add_argument("--step-ms", type=float, default=100.0, help="training step the level diagnostics are "
                        "compared with (default 100 ms, a fast 8-GPU COCO step)")
    parser.add_argument("--keep", action="store_true", help="keep the generated dataset and outputs")
    args = parser.parse_args()
    out = (args.out or Path(tempfile.gettempdir()) / f"umop_coco_scale_{args.images}").resolve()
    prepare_out(out)
    _warm()
    from level_stats_overhead import cpu_name

    print(f"coco_scale: {args.images} images in {out}, {cpu_name()}, {os.cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'stage':<16} {'wall s':>8} {'cpu s':>8} {'peak MB':>9} {'start MB':>9}  notes")
    root = out / "coco"
    try:
        stage("generate", generate, root, args.images)
        stage("check", check, root)
        r_convert = stage("convert", convert, root, out)
        r_cache = stage("cache", cache, out)
        r_loader = stage("loader", loader, out)
        r_eval = stage("eval pycocotools", evaluate, "pycocotools", prepare=partial(_eval_inputs, args.eval_images))
        r_fast = stage("eval faster", evaluate, "faster-coco-eval", prepare=partial(_eval_inputs, args.eval_images))
        r_levels = stage("levels", levels, out, args.steps_per_epoch, args.step_ms, prepare=partial(_level_stats, 64))
        r_plots = stage("plots", plots, out)
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    diff = max(0.0 if r_eval[k] == r_fast[k] or math.isnan(r_eval[k] + r_fast[k]) else abs(r_eval[k] - r_fast[k])
               for k in r_eval if k.startswith("stat_"))
    peak = max(r["peak_rss_mb"] for r in (r_convert, r_cache, r_loader, r_eval, r_fast, r_levels, r_plots))
    print(f"faster-coco-eval vs pycocotools: largest difference of the six numbers {diff:.2g}")
    print(f"coco_scale images={args.images} convert_s={r_convert['wall_s']:.1f} cache_s={r_cache['wall_s']:.1f} "
          f"peak_rss_mb={peak:.0f} eval_s={r_eval['wall_s']:.1f} eval_fast_s={r_fast['wall_s']:.1f} "
          f"levels_csv_mb={r_levels['csv_mb']:.2f} plots_s={r_plots['wall_s']:.1f}")


if __name__ == "__main__":
    main()
