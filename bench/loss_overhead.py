"""Cost of the UMOP loss next to its baseline, in one process, on the same model, weights and batch.

    nice -n 10 python bench/loss_overhead.py                    # YOLOv8n, RetinaNet R-18, ATSS R-18
    nice -n 10 python bench/loss_overhead.py --cases yolo --reps 40 --threads 2
    python bench/loss_overhead.py --device cuda --yolo-imgsz 640 --yolo-batch 64 --dense-depth 50 \
        --dense-imgsz 1024 --dense-batch 8                      # the paper's sizes on one GPU (bench/gpu_check.sh)

Every case builds one model and swaps criteria on it, so the baseline and the candidate see identical weights and an
identical synthetic batch (boxes log-uniform in size, so every pyramid level gets positives):

    yolo:       stock = Ultralytics' `v8DetectionLoss`; umop=false = our level-recording stock loss; umop=true = PFL
    retinanet / atss:  focal = a plain sigmoid focal loss (alpha .25, gamma 2, / #pos) in the PFL core's place;
                       umop=false = the PFL core with delta 0 (the project's focal baseline); umop=true = PFL + LRP

Reported per candidate, each as candidate / baseline:
    step:  forward + loss + backward (Ultralytics' `model.loss(batch)`, `.sum().backward()`), median of paired ratios
    loss:  the criterion alone, forward + backward into detached head outputs, median of paired ratios
    memory: peak bytes of live tensors during one step above the bytes live before it, from the PyTorch profiler's
            allocation events on CPU (`profile_memory=True`), `torch.cuda.max_memory_allocated` on CUDA
    syncs: device-to-host syncs per step, counted by a TorchFunctionMode (`.item`, `.tolist`, `.cpu`, `.numpy`,
           `__bool__`, `__float__`, `__int__`, `__index__`, `nonzero`, `masked_select`, `unique`, boolean-mask
           indexing) and, on CUDA, also by `torch.cuda.set_sync_debug_mode("warn")`

Timings alternate baseline and candidate one step at a time (order flipped every repetition), so load from other
processes hits both alike; the ratio is the median over repetitions of candidate time / adjacent baseline time.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from umop_yolo.engine import runtime
from umop_yolo.engine.args_adapter import settings_from_args
from umop_yolo.engine.build import build_model
from umop_yolo.engine.dense_schema import load_model_yaml
from umop_yolo.engine.loss import LevelSplitDetectionLoss, PFLDetectionLoss

runtime.register()  # a script is an entry point: the UMOP keys in Ultralytics' defaults, offline

TARGETS = {"step": 1.02, "loss": 1.15, "memory": 1.02}  # candidate / baseline at most; added syncs: 0


@dataclass
class Case:
    """One model and batch, the criteria to compare on them, and which one each candidate is measured against."""

    name: str
    model: torch.nn.Module
    batch: dict[str, Tensor]
    criteria: dict[str, Any]
    pairs: list[tuple[str, str]]  # (baseline, candidate)
    notes: list[str] = field(default_factory=list)


def synthetic_batch(n: int, imgsz: int, boxes: int, nc: int, device: torch.device, seed: int = 0) -> dict[str, Tensor]:
    """Ultralytics' training batch layout: images in [0, 1], normalised xywh boxes of log-uniform size (3-70%)."""
    g = torch.Generator().manual_seed(seed)
    size = torch.empty(n * boxes, 2).uniform_(math.log(0.03), math.log(0.7), generator=g).exp()
    centre = size / 2 + torch.rand(n * boxes, 2, generator=g) * (1 - size)
    batch = {
        "img": torch.rand(n, 3, imgsz, imgsz, generator=g),
        "batch_idx": torch.arange(n).repeat_interleave(boxes).float(),
        "cls": torch.randint(0, nc, (n * boxes, 1), generator=g).float(),
        "bboxes": torch.cat([centre, size], 1),
    }
    return {k: v.to(device) for k, v in batch.items()}


def train_args(**overrides: Any) -> Any:
    """Ultralytics' default training settings (UMOP keys included): the namespace criteria read settings from."""
    from ultralytics.cfg import get_cfg

    return get_cfg(overrides=overrides)


def yolo_case(imgsz: int, batch: int, nc: int, device: torch.device) -> Case:
    """YOLOv8n: Ultralytics' stock loss, our level-recording stock loss (umop=false) and PFL + LRP (umop=true)."""
    from ultralytics.utils.loss import v8DetectionLoss

    torch.manual_seed(0)
    model = build_model("yolov8n.yaml", nc=nc, verbose=False).train().to(device)
    model.args = train_args(umop=True)
    criteria = {"stock": v8DetectionLoss(model), "umop=false": LevelSplitDetectionLoss(model),
                "umop=true": PFLDetectionLoss(model, pfl=settings_from_args(model.args).pfl)}
    return Case("YOLOv8n", model, synthetic_batch(batch, imgsz, 8, nc, device), criteria,
                [("stock", "umop=true"), ("umop=false", "umop=true"), ("stock", "umop=false")],
                [f"{imgsz} px, batch {batch}, {nc} classes, 8 boxes per image"])


def plain_focal(logits: list[Tensor], targets: list[Tensor], normalizer: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Sigmoid focal loss (alpha 0.25, gamma 2) summed over all levels / normalizer: the PFL core's interface."""
    x, t = torch.cat(logits, 1).float(), torch.cat(targets, 1).float()
    p = x.sigmoid()
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = 0.25 * t + 0.75 * (1 - t)
    return (alpha_t * (1 - p_t) ** 2 * ce).sum() / normalizer, {}


def dense_case(detector: str, depth: int, imgsz: int, batch: int, nc: int, device: torch.device) -> Case:
    """RetinaNet / ATSS: plain focal loss, the PFL core with delta 0 (umop=false) and PFL + LRP (umop=true)."""
    spec = load_model_yaml(f"{detector}_r{depth}_fpn.yaml")
    spec["backbone"]["pretrained"] = None  # timing and memory do not depend on the weights
    torch.manual_seed(0)
    model = build_model(spec, nc=nc, verbose=False).train().to(device)
    criteria = {}
    for umop in (False, True):
        model.args = train_args(umop=umop)
        criteria[f"umop={str(umop).lower()}"] = model.init_criterion()
    focal = copy.copy(criteria["umop=false"])
    focal.loss = copy.copy(focal.loss)
    focal.loss.pfl = plain_focal
    criteria = {"focal": focal, **criteria}
    name = f"{'RetinaNet' if detector == 'retinanet' else 'ATSS'} R-{depth}"
    return Case(name, model, synthetic_batch(batch, imgsz, 8, nc, device), criteria,
                [("umop=false", "umop=true"), ("focal", "umop=true"), ("focal", "umop=false")],
                [f"{imgsz} px, batch {batch}, {nc} classes, 8 boxes per image, backbone from scratch"])


def train_step(case: Case, criterion: Any) -> Callable[[], None]:
    """One training step of `case.model` with `criterion`: forward, loss, backward (as Ultralytics' trainer does)."""

    def run() -> None:
        case.model.criterion = criterion
        case.model.zero_grad(set_to_none=True)
        loss, _ = case.model.loss(case.batch)
        loss.sum().backward()

    return run


def head_outputs(case: Case) -> dict[str, Any]:
    """The model's training outputs, detached: leaves that require grad (feature maps only give shapes)."""
    with torch.no_grad():
        preds = case.model(case.batch["img"])
    return {k: v if k == "feats" else v.detach().requires_grad_() for k, v in preds.items()}


def loss_step(case: Case, criterion: Any, preds: dict[str, Any]) -> Callable[[], None]:
    """The criterion alone: loss on fixed head outputs and its backward into them."""
    leaves = [v for k, v in preds.items() if k != "feats"]

    def run() -> None:
        for v in leaves:
            v.grad = None
        loss, _ = criterion(preds, case.batch)
        loss.sum().backward()

    return run


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paired_times(fns: dict[str, Callable[[], None]], reps: int, warmup: int,
                 device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of every function, interleaved one call at a time, order reversed every repetition.

    CPU: this process's CPU time (other processes' load on a shared machine does not count); CUDA: wall time.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        for name in names if r % 2 == 0 else reversed(names):
            sync_device(device)
            t0 = clock()
            fns[name]()
            sync_device(device)
            times[name].append(clock() - t0)
    return times


def paired_ratio(base: list[float], cand: list[float]) -> float:
    """Median over repetitions of candidate / baseline time (each pair ran back to back)."""
    return statistics.median(c / b for b, c in zip(base, cand))


def peak_bytes(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes of tensors allocated by `fn` and alive at the same time (above what was live before it)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


class SyncCounter(torch.overrides.TorchFunctionMode):
    """Counts the tensor calls that make the host wait for the device (`calls`: name -> count)."""

    NAMES = {"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero",
             "masked_select", "unique"}

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.NAMES:
            self.calls[name] += 1
        elif name in {"__getitem__", "__setitem__"} and _has_bool_mask(args[1] if len(args) > 1 else None):
            self.calls[f"{name}[bool mask]"] += 1
        return func(*args, **(kwargs or {}))


def _has_bool_mask(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, Tensor) and i.dtype == torch.bool for i in items)


def count_syncs(fn: Callable[[], None], device: torch.device) -> tuple[Counter[str], int | None]:
    """Sync-causing calls of one `fn()` by instrumentation, and CUDA's own count (None off CUDA): the warnings
    `torch.cuda.set_sync_debug_mode("warn")` raises, one per synchronizing call."""
    with SyncCounter() as counter:
        fn()
    if device.type != "cuda":
        return counter.calls, None
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return counter.calls, sum("synchroniz" in str(w.message) for w in caught)


def measure(case: Case, reps: int, loss_reps: int, warmup: int) -> list[dict[str, Any]]:
    """Every (baseline, candidate) pair of the case: time, loss-time, memory ratios and sync counts."""
    names = list(case.criteria)
    device = case.batch["img"].device
    steps = {n: train_step(case, case.criteria[n]) for n in names}
    step_t = paired_times(steps, reps, warmup, device)
    preds = head_outputs(case)
    loss_t = paired_times({n: loss_step(case, case.criteria[n], preds) for n in names}, loss_reps, warmup, device)
    peak, syncs = {}, {}
    for n in names:
        steps[n]()  # reach the steady state (gradients allocated once before) for each criterion alike
        case.model.zero_grad(set_to_none=True)
        peak[n] = peak_bytes(steps[n], device)
        syncs[n] = count_syncs(steps[n], device)
    rows = []
    for base, cand in case.pairs:
        rows.append({
            "model": case.name, "baseline": base, "candidate": cand,
            "step_ms": (1e3 * statistics.median(step_t[base]), 1e3 * statistics.median(step_t[cand])),
            "step": paired_ratio(step_t[base], step_t[cand]),
            "loss_ms": (1e3 * statistics.median(loss_t[base]), 1e3 * statistics.median(loss_t[cand])),
            "loss": paired_ratio(loss_t[base], loss_t[cand]),
            "mem_mb": (peak[base] / 2**20, peak[cand] / 2**20),
            "memory": peak[cand] / peak[base],
            "syncs": (sum(syncs[base][0].values()), sum(syncs[cand][0].values())),
            "sync_detail": (dict(syncs[base][0]), dict(syncs[cand][0])),
            "cuda_syncs": (syncs[base][1], syncs[cand][1]),
        })
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (ratios are candidate / baseline; `ok` checks the targets)."""
    lines = ["| model | baseline -> candidate | step ms | step ratio | loss ms | loss ratio | peak MiB | memory ratio "
             "| syncs/step | CUDA syncs | targets |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = all(r[k] <= v for k, v in TARGETS.items()) and r["syncs"][1] <= r["syncs"][0]
        cuda = "-" if r["cuda_syncs"][0] is None else f"{r['cuda_syncs'][0]} -> {r['cuda_syncs'][1]}"
        lines.append(
            f"| {r['model']} | {r['baseline']} -> {r['candidate']} "
            f"| {r['step_ms'][0]:.1f} -> {r['step_ms'][1]:.1f} | {r['step']:.3f} "
            f"| {r['loss_ms'][0]:.2f} -> {r['loss_ms'][1]:.2f} | {r['loss']:.3f} "
            f"| {r['mem_mb'][0]:.1f} -> {r['mem_mb'][1]:.1f} | {r['memory']:.3f} "
            f"| {r['syncs'][0]} -> {r['syncs'][1]} | {cuda} | {'met' if ok else 'MISSED'} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """This script's command line (`argv`, default sys.argv[1:])."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="yolo,retinanet,atss", help="comma-separated: yolo, retinanet, atss")
    parser.add_argument("--reps", type=int, default=21, help="timed training steps per criterion")
    parser.add_argument("--loss-reps", type=int, default=101, help="timed loss-only calls per criterion")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadier on a shared machine)")
    parser.add_argument("--yolo-imgsz", type=int, default=320)
    parser.add_argument("--yolo-batch", type=int, default=8)
    parser.add_argument("--dense-depth", type=int, default=18, choices=(18, 50))
    parser.add_argument("--dense-imgsz", type=int, default=256)
    parser.add_argument("--dense-batch", type=int, default=2)
    parser.add_argument("--nc", type=int, default=80)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when torch sees a GPU, else cpu)")
    return parser.parse_args(argv)


def run(a: argparse.Namespace, on_case: Callable[[list[dict[str, Any]]], None] | None = None,
        ) -> tuple[list[dict[str, Any]], list[str], str]:
    """Every case of `a.cases`: the rows of `measure`, the cases' notes and where it ran; `on_case` sees each case's
    rows as it finishes."""
    torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    builders = {"yolo": lambda: yolo_case(a.yolo_imgsz, a.yolo_batch, a.nc, device),
                "retinanet": lambda: dense_case("retinanet", a.dense_depth, a.dense_imgsz, a.dense_batch, a.nc, device),
                "atss": lambda: dense_case("atss", a.dense_depth, a.dense_imgsz, a.dense_batch, a.nc, device)}
    rows, notes = [], []
    for name in a.cases.split(","):
        case = builders[name]()
        rows += measure(case, a.reps, a.loss_reps, a.warmup)
        notes += [f"{case.name}: {n}" for n in case.notes]
        if on_case:
            on_case(rows[-len(case.pairs):])
        del case
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next case starts from an empty cache
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    return rows, notes, where


def main() -> None:
    a = parse_args()
    rows, notes, where = run(a, on_case=lambda case_rows: print(markdown(case_rows), flush=True))
    print(f"\n## all cases ({where}, torch {torch.__version__}, {a.reps} steps / {a.loss_reps} loss calls per "
          "criterion)\n")
    print(markdown(rows))
    print("\n" + "\n".join(f"- {n}" for n in notes))
    print("- sync calls per step (baseline | candidate): " + "; ".join(
        f"{r['model']} {r['baseline']}->{r['candidate']}: {r['sync_detail'][0]} | {r['sync_detail'][1]}" for r in rows))


if __name__ == "__main__":
    main()
