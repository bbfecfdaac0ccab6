"""The GPU check: UMOP's loss overhead, AMP throughput and peak memory on one CUDA GPU, as one Markdown block for
docs/benchmarks.md.

    bash bench/gpu_check.sh                        # one CUDA GPU, synthetic data, a few minutes
    bash bench/gpu_check.sh --device cpu --tiny    # the same block at toy sizes on the CPU (CI runs this)

Run it through bench/gpu_check.sh (which puts the repo on PYTHONPATH and can install carried wheels first). Sections:
the machine and the command; bench/loss_overhead.py (step, loss and memory ratios, host syncs counted by
instrumentation and by `torch.cuda.set_sync_debug_mode("warn")`) at the training sizes below; bench/step_throughput.py
(images/s with AMP, peak memory): ATSS R-50 + UMOP against plain focal at 1024 px, batch 8, and YOLOv8n + UMOP
against stock at 640 px, batch 64; then every ratio against its goal, measured and printed, never asserted.

The block goes to stdout and to `--out` (default $OUT/gpu_check.md when OUT is set, else
runs/gpu_check/gpu_check_<UTC time>.md), rewritten after every section so that a run cut short keeps what it measured;
the raw numbers go next to it as .json. A section that fails shows its error in the block and the exit status is 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PINNED_ULTRALYTICS = "8.4.190"
# Sizes: the paper's ATSS input (1024 px letterboxed squares, batch 8 on one GPU) and YOLOv8n's COCO default (640, 64).
LOSS_ARGS = {"full": ["--yolo-imgsz", "640", "--yolo-batch", "64", "--dense-depth", "50", "--dense-imgsz", "1024",
                      "--dense-batch", "8", "--reps", "21", "--loss-reps", "51", "--warmup", "3"],
             "tiny": ["--yolo-imgsz", "64", "--yolo-batch", "2", "--dense-depth", "18", "--dense-imgsz", "64",
                      "--dense-batch", "1", "--reps", "2", "--loss-reps", "2", "--warmup", "1"]}
THROUGHPUT_ARGS = {"full": ["--atss-imgsz", "1024", "--atss-batch", "8", "--dense-depth", "50", "--yolo-imgsz", "640",
                            "--yolo-batch", "64", "--warmup", "5", "--rounds", "5", "--steps", "10"],
                   "tiny": ["--atss-imgsz", "64", "--atss-batch", "2", "--dense-depth", "18", "--yolo-imgsz", "64",
                            "--yolo-batch", "2", "--warmup", "1", "--rounds", "2", "--steps", "1"]}


def preflight(device: str) -> None:
    """Stop with one line when torch or Ultralytics cannot be imported, or CUDA is asked for and not there."""
    try:
        import torch
    except ImportError as e:
        sys.exit(f"gpu_check: cannot import torch ({e}); run it with the Python that has PyTorch (PYTHON=...)")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"gpu_check: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device; without a "
                 "GPU run: bash bench/gpu_check.sh --device cpu --tiny")
    for module in ("umop_yolo", "ultralytics"):  # umop_yolo first: it keeps Ultralytics offline, read on its import
        try:
            importlib.import_module(module)
        except ImportError as e:
            sys.exit(f"gpu_check: cannot import {module} ({e}): `pip install -e .` here, or, offline, carry the "
                     f"ultralytics=={PINNED_ULTRALYTICS} wheel and pass --wheels DIR (docs/benchmarks.md, GPU check)")


def shell(cmd: list[str]) -> str:
    """A command's first output line, or '' when it is missing or fails."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""


def machine_lines(device: Any) -> list[str]:
    """GPU, CPU and software versions, as Markdown list items."""
    import torch
    import ultralytics
    from level_stats_overhead import cpu_name  # bench/ is on sys.path when this script runs

    import umop_yolo

    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        driver = shell(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]) or "unknown"
        gpu = f"{p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}, driver {driver}"
    else:
        gpu = "none used (--device cpu)"
    commit = shell(["git", "rev-parse", "--short", "HEAD"])
    dirty = " with uncommitted changes" if commit and shell(["git", "status", "--porcelain"]) else ""
    pin = "" if ultralytics.__version__ == PINNED_ULTRALYTICS else f" (the project pins {PINNED_ULTRALYTICS})"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return [f"- GPU: {gpu}",
            f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores; {platform.system()} {platform.machine()}",
            f"- Software: Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}, "
            f"cuDNN {cudnn}), Ultralytics {ultralytics.__version__}{pin}, umop_yolo {umop_yolo.__version__} "
            f"(commit {commit + dirty if commit else 'unknown: not a git checkout'})"]


def loss_section(mode: str, device: str, raw: dict) -> tuple[list[str], list[str]]:
    """bench/loss_overhead.py at this mode's sizes: the block's lines and the summary's lines."""
    import loss_overhead

    argv = ["--device", device, *LOSS_ARGS[mode]]
    rows, notes, where = loss_overhead.run(loss_overhead.parse_args(argv),
                                           on_case=lambda r: log(f"loss overhead: {r[0]['model']} done"))
    raw["loss_overhead"] = rows
    clock = "wall time, synchronised" if device == "cuda" else "process CPU time"
    lines = [f"Command: `python bench/loss_overhead.py {' '.join(argv)}` ({where}; {clock})", "",
             loss_overhead.markdown(rows), "", *(f"- {n}" for n in notes),
             "- syncs/step: sync-causing calls counted by instrumentation; CUDA syncs: warnings of "
             "`torch.cuda.set_sync_debug_mode(\"warn\")` during one step (- on the CPU)"]
    goals = "goals " + ", ".join(f"<= {loss_overhead.TARGETS[k]}" for k in ("step", "loss", "memory"))
    summary = []
    for r in rows:
        cuda = ("n/a on the CPU" if r["cuda_syncs"][0] is None else f"{r['cuda_syncs'][0]} -> {r['cuda_syncs'][1]}")
        summary.append(f"- loss overhead, {r['model']} {r['baseline']} -> {r['candidate']}: step ratio "
                       f"{r['step']:.3f}, loss ratio {r['loss']:.3f}, memory ratio {r['memory']:.3f} ({goals}); "
                       f"syncs per step {r['syncs'][0]} -> {r['syncs'][1]}, CUDA sync warnings {cuda} (goal: none "
                       "added)")
    return lines, summary


def throughput_section(mode: str, device: str, raw: dict) -> tuple[list[str], list[str]]:
    """bench/step_throughput.py at this mode's sizes: the block's lines and the summary's lines."""
    import step_throughput

    argv = ["--device", device, *THROUGHPUT_ARGS[mode]]
    rows = step_throughput.run(step_throughput.parse_args(argv),
                               on_case=lambda r: log(f"throughput: {r[0]['model']} done"))
    raw["throughput"] = rows
    per_case = {r["model"]: r for r in rows}
    lines = [f"Command: `python bench/step_throughput.py {' '.join(argv)}` (wall time; AMP is fp16 autocast on CUDA "
             "and off on the CPU, as Ultralytics trains)", "", step_throughput.markdown(rows), "",
             "- synthetic tensors, no data loading; a step is Ultralytics' trainer step (autocast forward and loss, "
             "scaled backward, clip, SGD, EMA if on, one host read of the loss); peak MiB: CUDA max allocated over "
             "the rounds (weights, optimizer, EMA, activations), CPU one step's allocations",
             "- settings from " + "; ".join(
                 f"{m}: cfg/{r['experiment']} (EMA {'on' if r['ema'] else 'off'}, Nesterov {r['nesterov']}, grad_clip "
                 f"{r['grad_clip']:g}, deterministic {r['deterministic']})" for m, r in per_case.items())
             + "; AMP on, whatever the experiment's `amp` (`--no-amp` measures fp32)",
             "- non-finite losses during the runs: " + ", ".join(f"{m} {r['nonfinite_losses']}"
                                                                 for m, r in per_case.items()),
             "- AMP loss scale before -> after the timed rounds (a drop: GradScaler skipped steps): " + ", ".join(
                 f"{m} {r['amp_scale'][0]:g} -> {r['amp_scale'][1]:g}" for m, r in per_case.items())]
    rate = {(r["model"], r["criterion"]): r["images_per_s"] for r in rows}
    summary = []
    for r in (r for r in rows if "vs" in r):
        goal = (f" (goal >= {step_throughput.GOALS['atss_images_per_s']:.0f}; MMDetection: about 10 per V100)"
                if r["model"].startswith("ATSS") else "")
        base = ", ".join(f"{b} {rate[r['model'], b]:.2f}" for b in r["vs"])
        times = ", ".join(f"{v['time_ratio']:.3f} vs {b}" for b, v in r["vs"].items())
        memory = ", ".join(f"{v['memory_ratio']:.3f} vs {b}" for b, v in r["vs"].items())
        summary.append(f"- throughput, {r['model']}, {r['imgsz']} px, batch {r['batch']}, AMP "
                       f"{'on' if r['amp'] else 'off'}: {r['criterion']} {r['images_per_s']:.2f} images/s{goal}, "
                       f"{base}; time ratio {times} (goal <= {step_throughput.GOALS['time_ratio']}); peak memory "
                       f"{r['peak_mib']:.0f} MiB, memory ratio {memory}")
    return lines, summary


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def default_out() -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.md"
    return ROOT / "runs" / "gpu_check" / f"gpu_check_{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="toy sizes and few steps: the CPU smoke run of CI")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write (.json beside it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    preflight(a.device)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # Ultralytics' deterministic training sets it too
    import torch

    device = torch.device(a.device)
    mode = "tiny" if a.tiny else "full"
    command = os.environ.get("GPU_CHECK_COMMAND") or f"python bench/gpu_check.py {' '.join(sys.argv[1:])}".strip()
    out = a.out or default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    start, raw, failed = time.perf_counter(), {"command": command, "mode": mode}, False
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    head = [f"### GPU check: {where}, {dt.date.today().isoformat()}", "",
            f"- Command: `{command}` ({mode} sizes, synthetic data; backbones from scratch, which timing does not "
            "depend on)", *machine_lines(device)]
    if a.tiny:
        head.append("- Tiny run: toy sizes and 1-2 steps to keep the script working; its numbers measure nothing")
    sections: list[tuple[str, list[str]]] = []
    summary: list[str] = []

    def write() -> str:
        body = [*head, f"- Wall time: {time.perf_counter() - start:.0f} s", ""]
        for title, lines in sections:
            body += [f"#### {title}", "", *lines, ""]
        body += ["#### Against the goals (measured, not asserted)", "", *summary]
        text = "\n".join(body).rstrip() + "\n"
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
        return text

    parts: list[tuple[str, Callable[..., tuple[list[str], list[str]]]]] = [  # the headline numbers first
        ("Training throughput, AMP (bench/step_throughput.py)", throughput_section),
        ("Loss overhead (bench/loss_overhead.py)", loss_section)]
    for title, section in parts:
        log(f"{title} ...")
        section_start = time.perf_counter()
        try:
            lines, section_summary = section(mode, a.device, raw)
            lines.append(f"- section wall time: {time.perf_counter() - section_start:.0f} s")
        except Exception as e:  # keep the other sections' numbers; the block names the failure
            failed = True
            traceback.print_exc()
            error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            lines, section_summary = [f"**failed**: `{error}`"], [f"- {title}: failed, no ratios ({error})"]
        sections.append((title, lines))
        summary += section_summary
        write()
        gc.collect()  # the next section starts with the device's memory free, also after a failure
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(write(), end="")
    log(f"wrote {out} and {out.with_suffix('.json').name} in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
