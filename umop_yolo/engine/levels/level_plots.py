"""PNG plots of per-level statistics: positive proportion (paper Fig. 2), gamma_l / alpha_l per iteration (Fig. 3),
per-level classification loss. Training ends with them, drawn from the levels.csv that `level_stats` writes, as
Ultralytics' trainer draws results.png from results.csv. Drawn on matplotlib's Agg canvas directly (no pyplot state,
no backend switch) with its bundled DejaVu Sans, so nothing is downloaded. An end-to-end head's run gets one set per
branch (`levels_pos_ratio_o2m.png`, `levels_pos_ratio_o2o.png` ...).
"""

from __future__ import annotations

import csv
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from ultralytics.utils.plotting import plot_results

from umop_yolo.engine.levels.level_stats import BRANCH_NAMES, is_level_key
from umop_yolo.errors import InputNotFoundError, UserInputError

MARKERS, DASHES = "os^Dv", ("-", "--", ":", "-.", (0, (5, 1, 1, 1)))
POS_RATIO_PNG, GAMMA_ALPHA_PNG, CLS_LOSS_PNG = "levels_pos_ratio.png", "levels_gamma_alpha.png", "levels_cls_loss.png"
LevelRows = dict[str, list[dict[str, float]]]


def read_levels(path: Path) -> dict[str, LevelRows]:
    """levels.csv as {branch: {level: [row, ...]}} in file order, numbers as floats (NaN where empty); the branch of
    a file without a `branch` column (a single-branch head's) is ''."""
    out: dict[str, LevelRows] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            levels = out.setdefault(row.pop("branch", None) or "", {})
            levels.setdefault(row.pop("level"), []).append({k: float(v) if v else math.nan for k, v in row.items()})
    return out


def box_from_values(values: np.ndarray, label: str) -> dict:
    """Box-plot statistics of raw values: quartiles, whiskers at min and max, mean."""
    q = np.percentile(values, [0, 25, 50, 75, 100])
    return {"label": label, "whislo": q[0], "q1": q[1], "med": q[2], "q3": q[3], "whishi": q[4],
            "mean": float(np.mean(values)), "fliers": []}


def box_from_windows(rows: list[dict[str, float]], label: str) -> dict:
    """Box-plot statistics pooled over levels.csv windows: exact mean and extremes, quartiles averaged over windows
    (weighted by their steps)."""
    w = np.array([r["iterations"] for r in rows])
    avg = {k: float(np.average([r[f"pos_ratio_{k}"] for r in rows], weights=w)) for k in ("q1", "median", "q3")}
    return {"label": label, "whislo": min(r["pos_ratio_min"] for r in rows), "q1": avg["q1"], "med": avg["median"],
            "q3": avg["q3"], "whishi": max(r["pos_ratio_max"] for r in rows),
            "mean": float(np.average([r["pos_ratio_mean"] for r in rows], weights=w)), "fliers": []}


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return path


def plot_positive_proportion(boxes: list[dict], path: Path, title: str, note: str) -> Path:
    """Fig. 2: one box per level of the positive proportion (in %), the means joined by a line and labelled."""
    boxes = [{**b, **{k: 100 * b[k] for k in ("whislo", "q1", "med", "q3", "whishi", "mean")}} for b in boxes]
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.bxp(boxes, showfliers=False, patch_artist=True, widths=0.5,
           boxprops={"facecolor": "#c6dbef", "edgecolor": "#08519c"}, medianprops={"color": "#08519c"})
    x, means = np.arange(1, len(boxes) + 1), [b["mean"] for b in boxes]
    ax.plot(x, means, "o-", color="#d62728", zorder=3)
    for xi, m in zip(x, means):
        ax.annotate(f"{m:.3g}%", (xi + 0.28, m), va="center", color="#d62728", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0.5, len(boxes) + 0.8)
    fig.suptitle(title)
    ax.set_title(note, fontsize=8, color="0.35")
    ax.set(xlabel="pyramid level", ylabel="positive samples / samples at the level (%)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(handles=[Line2D([], [], color="#d62728", marker="o", label="mean (joined)"),
                        Patch(facecolor="#c6dbef", edgecolor="#08519c", label="quartiles, median"),
                        Line2D([], [], color="black", label="whiskers: min to max")],
               loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return _save(fig, path)


def _curves(ax, levels: LevelRows, key: str) -> None:
    """One line per level of `key` against the window's last iteration; distinct dashes and markers (markers only
    when there are few windows) keep coinciding levels visible."""
    for i, (level, rows) in enumerate(levels.items()):
        marker = MARKERS[i % len(MARKERS)] if len(rows) <= 30 else None
        ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], color=f"C{i}", marker=marker, ms=5,
                ls=DASHES[i % len(DASHES)], label=level)
    ax.grid(alpha=0.3)


def plot_gamma_alpha(levels: LevelRows, path: Path, clamp: tuple[float, float, float] | None = None,
                     title: str = "") -> Path:
    """Fig. 3: gamma_l (top) and alpha_l (bottom) per level against the training iteration; with `clamp` =
    (gamma, delta, w) also the range gamma_l is clamped to and the matching alpha_l = w / gamma_l."""
    fig = Figure(figsize=(6.4, 6.4), layout="constrained")
    if title:
        fig.suptitle(title)
    top, bottom = fig.subplots(2, 1, sharex=True)
    _curves(top, levels, "gamma")
    _curves(bottom, levels, "alpha")
    if clamp:
        gamma, delta, w = clamp
        for ax, bounds in ((top, (gamma - delta, gamma + delta)), (bottom, (w / (gamma + delta), w / (gamma - delta)))):
            for b in bounds:
                ax.axhline(b, color="0.5", lw=0.8, ls=(0, (1, 3)), label="clamp bound" if b == bounds[0] else None)
    top.set(title="Focusing parameter per level", ylabel="gamma_l (window mean)")
    bottom.set(title="Balance weight per level", ylabel="alpha_l (window mean)", xlabel="training iteration (batches)")
    fig.legend(*top.get_legend_handles_labels(), loc="outside right center", title="level", fontsize=9,
               title_fontsize=9, frameon=False)
    return _save(fig, path)


def plot_cls_loss(levels: LevelRows, path: Path, title: str = "") -> Path:
    """Each level's classification loss (its share of the cls term, before the cls gain) against the iteration."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    if title:
        fig.suptitle(title)
    ax = fig.add_subplot()
    _curves(ax, levels, "cls_loss")
    values = np.array([r["cls_loss"] for rows in levels.values() for r in rows])
    positive = values[values > 0]
    log = positive.size > 0 and positive.max() > 50 * positive.min()  # levels orders of magnitude apart
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set(title="Classification loss per pyramid level", xlabel="training iteration (batches)",
           ylabel="level's cls loss (window mean, before cls gain)" + (", log scale" if log else ""))
    fig.legend(loc="outside right center", title="level", fontsize=9, title_fontsize=9, frameon=False)
    return _save(fig, path)


def plot_run(run_dir: Path | str) -> list[Path]:
    """The level plots of a training run from its levels.csv: positive proportion, cls loss, and gamma/alpha where
    the loss has them (UMOP, RetinaNet/ATSS focal loss), one set per branch of an end-to-end head (file names end
    in `_o2m`, `_o2o`). Returns the files written."""
    run_dir = Path(run_dir)
    file = run_dir / "levels.csv"
    if not file.is_file():
        raise InputNotFoundError(f"{file} not found (written by `umop train`)")
    branches = read_levels(file)
    if not branches:
        raise UserInputError(f"{file} has no rows")
    clamp = _clamp(run_dir / "args.yaml")
    return [path for branch, levels in branches.items() for path in _plot_branch(levels, run_dir, branch, clamp)]


def _plot_branch(levels: LevelRows, run_dir: Path, branch: str, clamp: tuple[float, float, float] | None) -> list[Path]:
    """The level plots of one branch ('': the only one), named after it."""
    first = next(iter(levels.values()))
    steps = int(sum(r["iterations"] for r in first))
    branch_name = f"{BRANCH_NAMES.get(branch, branch)} branch" if branch else ""
    name = f"{run_dir.name}, {branch_name}" if branch else run_dir.name
    weight = f"; E2ELoss o2m weight {first[0]['o2m_weight']:.2f} to {first[-1]['o2m_weight']:.2f}" if branch else ""
    path = {png: run_dir / (f"{png[:-4]}_{branch}.png" if branch else png)
            for png in (POS_RATIO_PNG, CLS_LOSS_PNG, GAMMA_ALPHA_PNG)}
    boxes = [box_from_windows(rows, level) for level, rows in levels.items()]
    note = f"{steps} training batches; box: window quartiles averaged, whiskers: extremes{weight}"
    written = [
        plot_positive_proportion(boxes, path[POS_RATIO_PNG], f"Positive proportion per level: {name}", note),
        plot_cls_loss(levels, path[CLS_LOSS_PNG], branch_name),
    ]
    if not all(math.isnan(r["gamma"]) for rows in levels.values() for r in rows):  # windows without positives: gaps
        written.append(plot_gamma_alpha(levels, path[GAMMA_ALPHA_PNG], clamp, branch_name))
    return written


def _clamp(args_file: Path) -> tuple[float, float, float] | None:
    """(pfl_gamma, pfl_delta, pfl_w) of a UMOP run from its args.yaml; None for other runs or without the file."""
    args = yaml.safe_load(args_file.read_text()) if args_file.is_file() else None
    if not isinstance(args, dict) or not args.get("umop") or "pfl_delta" not in args:
        return None
    return float(args["pfl_gamma"]), float(args["pfl_delta"]), float(args["pfl_w"])


def plot_results_without_levels(results_csv: Path) -> Path | None:
    """results.png beside results.csv, drawn by Ultralytics' plot_results from every column but the per-level means
    (None if it drew nothing). plot_results puts the columns named *loss* and *metric* in two rows split by count, so
    the `level/cls_loss_P*` columns would push val losses into the train row; the level plots show them instead."""
    with open(results_csv, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(rows[0]) if not is_level_key(name.strip())] if rows else []
    with tempfile.TemporaryDirectory() as tmp:
        standard = Path(tmp) / "results.csv"
        with open(standard, "w", newline="") as f:
            csv.writer(f).writerows([[row[i] if i < len(row) else "" for i in keep] for row in rows])
        plot_results(file=standard)  # logs its own errors
        png = Path(tmp) / "results.png"
        return Path(shutil.move(png, results_csv.parent / png.name)) if png.is_file() else None
