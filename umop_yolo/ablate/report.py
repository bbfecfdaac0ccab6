"""The ablation's report: Table 1 (mean ± std, difference to the baseline, its paired 95% CI), curves and CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from umop_yolo.ablate.stats import PairedDifference, epochs_to_reach, mean_curve, mean_std, paired_difference
from umop_yolo.eval.coco_eval import METRICS

PAIRED = ("AP", "AP50")  # metrics whose paired difference to the baseline gets a confidence-interval column
Finals = dict[str, dict[int, dict[str, float]]]  # variant -> seed -> metric -> final value


def run_name(variant: str, seed: int) -> str:
    """The folder of one (variant, seed) training inside the ablation's directory."""
    return f"{variant}-seed{seed}"


def summarize(finals: Finals) -> dict[str, dict[str, tuple[float, float]]]:
    """Per variant and metric: (mean, std) over the seeds' final numbers. A size range without ground truth (nan, or
    pycocotools' -1 in older runs) is left out; a metric with no value at all is (nan, nan)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for variant, by_seed in finals.items():
        values = {m: [f[m] for f in by_seed.values() if f[m] >= 0] for m in METRICS}  # nan >= 0 is False
        out[variant] = {m: mean_std(v) if v else (math.nan, math.nan) for m, v in values.items()}
    return out


def paired(finals: Finals) -> dict[str, dict[str, PairedDifference]]:
    """Per non-baseline variant and metric in PAIRED: the paired difference to the baseline over common seeds."""
    if "baseline" not in finals:
        return {}
    base = finals["baseline"]
    return {v: {m: paired_difference({s: f[m] for s, f in by_seed.items()}, {s: f[m] for s, f in base.items()})
                for m in PAIRED} for v, by_seed in finals.items() if v != "baseline"}


def _cell(mean: float, std: float, seeds: int, diff: float | None) -> str:
    if math.isnan(mean):
        return "n/a"
    text = f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")
    return text + (f" ({100 * diff:+.1f})" if diff is not None and not math.isnan(diff) else "")


def ci_cell(d: PairedDifference) -> str:
    """`+1.3 [-0.4, +3.0]` in %: the mean paired difference and its 95% interval, `*` when it excludes 0."""
    if math.isnan(d.mean):
        return "n/a"
    if math.isnan(d.half_width):
        return f"{100 * d.mean:+.1f} (1 seed)"
    low, high = 100 * (d.mean - d.half_width), 100 * (d.mean + d.half_width)
    return f"{100 * d.mean:+.1f} [{low:+.1f}, {high:+.1f}]" + ("*" if d.significant else "")


def table_markdown(stats: dict[str, dict[str, tuple[float, float]]], seeds: int,
                   reach: dict[str, int | None] | None = None, own: dict[str, dict[str, Any]] | None = None,
                   pairs: dict[str, dict[str, PairedDifference]] | None = None,
                   switches: dict[str, dict[str, bool]] | None = None) -> str:
    """Table 1: mean ± std (in %) per variant and metric, the difference to the baseline in brackets, given `pairs`
    the paired difference with its 95% CI, and given `reach` the epochs each variant needs to reach the baseline's
    final AP. Rows name the variant's `switches` and own settings."""
    base = stats.get("baseline")
    head = ["variant", *METRICS]
    head += [f"Δ{m} paired, 95% CI" for m in PAIRED] if pairs is not None else []
    head += ["epochs to baseline AP"] if reach is not None else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, row in stats.items():
        settings = {**(switches or {}).get(variant, {}), **(own or {}).get(variant, {})}
        shown = " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items())
        cells = [f"{variant} ({shown})" if shown else variant]
        for m in METRICS:
            diff = None if base is None or variant == "baseline" else row[m][0] - base[m][0]
            cells.append(_cell(*row[m], seeds, diff))
        if pairs is not None:
            cells += [ci_cell(pairs[variant][m]) if variant in pairs else "-" for m in PAIRED]
        if reach is not None:
            cells.append("not reached" if reach[variant] is None else str(reach[variant]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(curves: dict[str, list[list[float]]], path: Path, title: str) -> Path:
    """COCO AP (%) versus epoch: mean over seeds with a ±1 std band, one line per variant."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for variant, runs in curves.items():
        mean, std = mean_curve(runs)
        epochs = range(1, len(mean) + 1)
        (line,) = ax.plot(epochs, [100 * m for m in mean], marker="o", markersize=3, label=f"{variant} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(epochs, [100 * (m - s) for m, s in zip(mean, std)],
                            [100 * (m + s) for m, s in zip(mean, std)], color=line.get_color(), alpha=0.2, lw=0)
    ax.set(title=title, xlabel="epoch", ylabel="COCO AP (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path)
    return path


def _percent(value: float) -> str:
    return f"{100 * value:.2f}" if value >= 0 else "n/a"


def write_report(out: Path, finals: Finals, curves: dict[str, list[list[float]]], title: str,
                 own: dict[str, dict[str, Any]], switches: dict[str, dict[str, bool]], footer: list[str]) -> None:
    """ablation.md, ablation.csv and ap_curves.png for `finals` and `curves` (per variant, in seed order)."""
    variants, seeds = list(finals), sorted({s for by_seed in finals.values() for s in by_seed})
    stats, pairs = summarize(finals), paired(finals)
    reach = None
    if "baseline" in stats and stats["baseline"]["AP"][0] > 0:  # an untrained baseline (AP 0) is reached by anything
        target = stats["baseline"]["AP"][0]
        reach = {v: epochs_to_reach(mean_curve(curves[v])[0], target - 1e-12) for v in variants}
    plot_curves(curves, out / "ap_curves.png", f"{title}: COCO AP per epoch")
    with open(out / "ablation.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "seed", *METRICS, "run"])
        for v in variants:
            writer.writerows([v, s, *(f"{f[m]:.6f}" for m in METRICS), run_name(v, s)] for s, f in finals[v].items())
    per_run = ["| run | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 1)]
    per_run += [f"| {run_name(v, s)} | " + " | ".join(_percent(f[m]) for m in METRICS) + " |"
                for v in variants for s, f in finals[v].items()]
    by_seed = [f"- {v}: " + ", ".join(f"{100 * d:+.1f}" for d in pairs[v]["AP"].diffs) for v in pairs]
    lines = [
        f"# UMOP ablation: {title}",
        "",
        f"{len(variants)} variants x {len(seeds)} seed(s) ({', '.join(map(str, seeds))}). COCO AP (COCOeval) in %, "
        "after the last epoch: mean ± sample std over seeds, difference to the baseline's mean in brackets (n/a: no "
        "ground truth of that size). Paired: the mean over seeds of (variant - baseline) with the same seed, and its "
        "95% Student-t interval; * marks an interval that excludes 0.",
        "",
        table_markdown(stats, len(seeds), reach, own, pairs if pairs else None, switches),
        "",
        "Epochs to baseline AP: the first epoch at which the variant's seed-mean AP reaches the baseline's final "
        f"seed-mean AP ({100 * stats['baseline']['AP'][0]:.2f})." if reach is not None else "",
        "",
        *(["Paired AP differences to the baseline, seed by seed:", "", *by_seed, ""] if by_seed else []),
        "![COCO AP per epoch](ap_curves.png)",
        "",
        "## Runs",
        "",
        *per_run,
        "",
        *footer,
        "",
    ]
    (out / "ablation.md").write_text("\n".join(lines))
