"""Training throughput (images/s) on synthetic tensors: UMOP against its baselines, one step as Ultralytics trains.

    python bench/step_throughput.py --device cuda          # ATSS R-50 at 1024 px, batch 8; YOLOv8n at 640 px, batch 64
    python bench/step_throughput.py --device cpu --cases atss --atss-imgsz 128 --atss-batch 2 --rounds 2 --steps 2

The models, criteria and synthetic batch are loss_overhead.py's (one model per case, criteria swapped on it, so every
criterion sees the same weights and boxes): ATSS R-50 FPN with the plain eager focal loss (`focal`), the PFL core with
delta 0 (`umop=false`, the loss of cfg/atss_r50.yaml) and PFL + LRP (`umop=true`, cfg/atss_umop.yaml); YOLOv8n with
Ultralytics' `v8DetectionLoss` (`stock`), our level-recording stock loss (`umop=false`) and PFL + LRP (`umop=true`).

A step is what Ultralytics' trainer runs per batch (`BaseTrainer._do_train`, `UmopTrainer.optimizer_step`): forward
and loss under autocast (AMP: fp16 on CUDA unless --no-amp, whatever the experiment's `amp`; off on the CPU, as
Ultralytics does), scaled backward, unscale, gradient clip (the experiment's `grad_clip`: 0 for ATSS, 10 for YOLO),
SGD step (the experiment's lr0, momentum, weight decay and `nesterov`), scaler update, zero_grad, the EMA update when
the experiment's `ema` is on (Ultralytics' ModelEMA), and one host read of the loss (the progress bar's). Seeds and
determinism as Ultralytics' `init_seeds` (the experiment's `deterministic`, true by default). Not included: data
loading and augmentation, which Ultralytics' dataloader runs in worker processes alongside the steps, and the
per-level recorder (0.002-0.025% of a step, docs/benchmarks.md).

After `--warmup` steps per criterion, rounds of `--steps` consecutive steps alternate between the criteria (order
flipped every round); images/s is the median over rounds, the time ratio the median over rounds of candidate time /
the adjacent baseline time. Peak memory: on CUDA `torch.cuda.max_memory_allocated` over the criterion's rounds
(weights, SGD momentum, EMA and activations); on the CPU the peak of one step's allocations (loss_overhead.py's
profiler count).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from loss_overhead import Case, dense_case, peak_bytes, sync_device, train_args, yolo_case
from ultralytics.utils.torch_utils import ModelEMA, init_seeds, unset_deterministic

from umop_yolo.cfg import CFG_DIR, find_file, load_yaml

EXPERIMENTS = {"atss": "atss_umop.yaml", "yolo": "yolov8n_umop.yaml"}  # optimiser and EMA settings of each case
PAIRS = {"atss": [("focal", "umop=true"), ("umop=false", "umop=true")],
         "yolo": [("stock", "umop=true"), ("umop=false", "umop=true")]}
GOALS = {"time_ratio": 1.02, "atss_images_per_s": 30.0}  # targets: ATSS R-50 + UMOP on one GPU, AMP, 1024 px, batch 8


def experiment_args(name: str) -> Any:
    """Ultralytics' settings namespace of an experiment YAML in cfg/ (UMOP keys included)."""
    spec = load_yaml(find_file(name, CFG_DIR, "experiment"), "experiment")
    return train_args(**{k: v for k, v in spec.items() if k not in {"model", "data"}})


class Stepper:
    """One model's training step with any of its criteria, as Ultralytics' trainer steps (see the module docstring)."""

    def __init__(self, case: Case, args: Any, amp: bool) -> None:
        self.case, self.amp, self.grad_clip = case, amp, float(args.grad_clip)
        self.device = case.batch["img"].device
        self.optimizer = torch.optim.SGD(case.model.parameters(), lr=args.lr0, momentum=args.momentum,
                                         weight_decay=args.weight_decay, nesterov=getattr(args, "nesterov", True))
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.ema = ModelEMA(case.model) if getattr(args, "ema", True) else None
        self.losses: list[float] = []
        self.scales: tuple[float, float] = (1.0, 1.0)  # AMP loss scale before and after the timed rounds

    def step(self, criterion: str) -> None:
        model = self.case.model
        model.criterion = self.case.criteria[criterion]
        with torch.autocast(self.device.type, enabled=self.amp):  # fp16 on CUDA, as Ultralytics' autocast(True)
            loss, _ = model.loss(self.case.batch)
            loss = loss.sum()
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema:
            self.ema.update(model)
        self.losses.append(float(loss.detach()))  # the progress bar reads the loss every step

    def timed_rounds(self, names: list[str], rounds: int, steps: int, warmup: int) -> dict[str, dict[str, list]]:
        """Seconds and CUDA peak bytes of each round of `steps` steps per criterion, alternating criteria. A loss
        scale lower after the rounds than before means GradScaler skipped optimizer steps (inf/NaN gradients)."""
        for name in names:
            for _ in range(warmup):
                self.step(name)
        scale_before = self.scaler.get_scale()
        out: dict[str, dict[str, list]] = {n: {"seconds": [], "peak": []} for n in names}
        for r in range(rounds):
            for name in names if r % 2 == 0 else reversed(names):
                sync_device(self.device)
                if self.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(self.device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    self.step(name)
                sync_device(self.device)
                out[name]["seconds"].append(time.perf_counter() - t0)
                if self.device.type == "cuda":
                    out[name]["peak"].append(torch.cuda.max_memory_allocated(self.device))
        self.scales = (scale_before, self.scaler.get_scale())
        return out


def build_case(kind: str, a: argparse.Namespace, device: torch.device) -> Case:
    if kind == "atss":
        return dense_case("atss", a.dense_depth, a.atss_imgsz, a.atss_batch, a.nc, device)
    return yolo_case(a.yolo_imgsz, a.yolo_batch, a.nc, device)


def measure(kind: str, a: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """The rows of one case: images/s, step time, peak memory of every criterion, ratios against the baselines."""
    args = experiment_args(EXPERIMENTS[kind])
    init_seeds(0, deterministic=args.deterministic)  # as the trainer, before the model is built
    case = build_case(kind, a, device)
    amp = device.type == "cuda" and not a.no_amp
    stepper = Stepper(case, args, amp)
    names = sorted({n for pair in PAIRS[kind] for n in pair}, key=list(case.criteria).index)
    timed = stepper.timed_rounds(names, a.rounds, a.steps, a.warmup)
    batch = len(case.batch["img"])
    rows = []
    for name in names:
        seconds = timed[name]["seconds"]
        peak = (max(timed[name]["peak"]) if device.type == "cuda"
                else peak_bytes(lambda n=name: stepper.step(n), device))
        rows.append({"model": case.name, "criterion": name, "imgsz": case.batch["img"].shape[-1], "batch": batch,
                     "amp": amp, "images_per_s": statistics.median(a.steps * batch / s for s in seconds),
                     "step_ms": 1e3 * statistics.median(seconds) / a.steps, "peak_mib": peak / 2**20,
                     "rounds": [a.steps * batch / s for s in seconds]})
    by_name = {r["criterion"]: r for r in rows}
    for base, cand in PAIRS[kind]:
        ratio = statistics.median(c / b for b, c in zip(timed[base]["seconds"], timed[cand]["seconds"]))
        by_name[cand].setdefault("vs", {})[base] = {
            "time_ratio": ratio, "memory_ratio": by_name[cand]["peak_mib"] / by_name[base]["peak_mib"]}
    bad = sum(not math.isfinite(x) for x in stepper.losses)
    for r in rows:
        r.update(nonfinite_losses=bad, amp_scale=stepper.scales, experiment=EXPERIMENTS[kind],
                 deterministic=bool(args.deterministic), ema=stepper.ema is not None,
                 nesterov=stepper.optimizer.defaults["nesterov"], grad_clip=stepper.grad_clip)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per criterion; ratios are against each baseline named in `vs` (time: higher is slower)."""
    lines = ["| model | px | batch | AMP | loss | images/s (median) | step ms | peak MiB | time ratio | memory ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = r.get("vs", {})
        time_ratio = "; ".join(f"{v['time_ratio']:.3f} vs {b}" for b, v in vs.items()) or "-"
        memory_ratio = "; ".join(f"{v['memory_ratio']:.3f} vs {b}" for b, v in vs.items()) or "-"
        lines.append(f"| {r['model']} | {r['imgsz']} | {r['batch']} | {'on' if r['amp'] else 'off'} | {r['criterion']} "
                     f"| {r['images_per_s']:.2f} | {r['step_ms']:.1f} | {r['peak_mib']:.0f} | {time_ratio} "
                     f"| {memory_ratio} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """This script's command line (`argv`, default sys.argv[1:])."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="atss,yolo", help="comma-separated: atss, yolo")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when torch sees a GPU, else cpu)")
    parser.add_argument("--atss-imgsz", type=int, default=1024)
    parser.add_argument("--atss-batch", type=int, default=8)
    parser.add_argument("--dense-depth", type=int, default=50, choices=(18, 50))
    parser.add_argument("--yolo-imgsz", type=int, default=640)
    parser.add_argument("--yolo-batch", type=int, default=64)
    parser.add_argument("--nc", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per criterion before the rounds")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per criterion")
    parser.add_argument("--steps", type=int, default=10, help="consecutive steps per round")
    parser.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args(argv)


def run(a: argparse.Namespace, on_case: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Every case of `a.cases`; `on_case` sees each case's rows as it finishes. Leaves deterministic algorithms as
    it found them (each case switches them on as the trainer does)."""
    torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    rows = []
    try:
        for kind in a.cases.split(","):
            rows += (case_rows := measure(kind, a, device))
            if on_case:
                on_case(case_rows)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        if not was_deterministic:
            unset_deterministic()
    return rows


def main() -> None:
    a = parse_args()
    rows = run(a, on_case=lambda r: print(markdown(r), flush=True))
    print("\n" + markdown(rows))


if __name__ == "__main__":
    main()
