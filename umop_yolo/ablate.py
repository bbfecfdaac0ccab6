"""`umop ablate`: the paper's Table 1 ablation (baseline / + PFL / + PFL + LRP) over seeds, with identical settings.

    umop ablate cfg=yolov8n_umop.yaml seeds=3 variants=baseline,pfl,pfl+lrp baseline:cls=0.5 name=shapes

Every (variant, seed) pair is one training run `<project>/<name>/<variant>-seed<k>/` with the experiment's settings,
the variant's UMOP switches (`umop`, `lrp`: any value in the cfg or command line is replaced), `seed=k` and the
variant's own `VARIANT:key=value` overrides (e.g. `baseline:cls=0.5`: the stock loss with the stock cls gain, the
UMOP variants with the experiment's); nothing else differs between variants, and the report lists what does. The
validator scores every epoch with pycocotools, so each run's results.csv holds the AP curve. The output directory
gets:

    ablation.md     Table 1: final AP, AP50, AP75, APs, APm, APl (mean +- sample std over seeds, difference to the
                    baseline) and the epochs each variant needs to reach the baseline's final AP; then every run
                    and the settings
    ablation.csv    every run's final six numbers
    ap_curves.png   COCO AP versus epoch, mean over seeds with a +-1 std band, one line per variant
    settings.yaml   the shared settings and the variants' own; a later call into the same directory must match them

Finished runs (results.csv with all requested epochs and weights/last.pt) are read, not retrained; an interrupted run
resumes from its last.pt (Ultralytics' resume), or restarts if it never saved one.
"""

from __future__ import annotations

import csv
import math
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from umop_yolo.cfg import ConfigError

VARIANTS: dict[str, dict[str, bool]] = {
    "baseline": {"umop": False},
    "pfl": {"umop": True, "lrp": False},
    "pfl+lrp": {"umop": True, "lrp": True},
}
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
COLUMN = "metrics/{}(COCO)"  # the validator's results.csv columns
SWITCHES = {k for v in VARIANTS.values() for k in v}  # set by each variant, whatever the experiment file says
PER_RUN_KEYS = ("seed", "resume", "save_dir")  # set for each run by the ablation
FREE_KEYS = {"device", "workers", "plots", "verbose"}  # may change between calls into one directory


@dataclass
class Run:
    """One training of the ablation: its variant, seed and run directory."""

    variant: str
    seed: int
    dir: Path

    def rows(self) -> list[dict[str, float]]:
        """results.csv as one dict per epoch (numeric columns, keys stripped); [] if absent."""
        path = self.dir / "results.csv"
        if not path.is_file():
            return []
        with open(path) as f:
            return [{k.strip(): float(v) for k, v in row.items() if v and v.strip()} for row in csv.DictReader(f)]

    def finished(self, epochs: int) -> bool:
        """All requested epochs are in results.csv and weights/last.pt exists."""
        return (self.dir / "weights" / "last.pt").is_file() and len(self.rows()) >= epochs

    def curve(self, metric: str = "AP") -> list[float]:
        """The metric after every epoch."""
        return [row[COLUMN.format(metric)] for row in self.rows()]

    def final(self) -> dict[str, float]:
        """The six COCO numbers of the last epoch."""
        last = self.rows()[-1]
        return {m: last[COLUMN.format(m)] for m in METRICS}


def parse_variants(value: Any) -> list[str]:
    """`baseline,pfl,pfl+lrp` (a string or a sequence) -> known variant names, in the given order."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"variants={value!r}: need distinct names from {', '.join(VARIANTS)}")
    return names


def parse_seeds(value: Any) -> list[int]:
    """`seeds=3` -> [0, 1, 2]; `seeds=0,5` -> [0, 5]."""
    if isinstance(value, bool):
        raise ConfigError(f"seeds={value!r}: need a count (seeds=3) or a list (seeds=0,1,2)")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"seeds={value}: need at least 1")
        return list(range(value))
    seeds = list(value) if isinstance(value, (list, tuple)) else None
    integers = seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    if not integers or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={value!r}: need a count (seeds=3) or distinct integers (seeds=0,1,2)")
    return seeds


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(finals: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per variant and metric: (mean, std) over the seeds' final numbers. pycocotools' -1 (no ground truth in that
    size range) is left out; a metric with no value at all is (nan, nan)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for variant, runs in finals.items():
        values = {m: [f[m] for f in runs if f[m] >= 0] for m in METRICS}
        out[variant] = {m: mean_std(v) if v else (math.nan, math.nan) for m, v in values.items()}
    return out


def mean_curve(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    """Epoch-wise mean and sample std over seeds (curves of equal length)."""
    pairs = [mean_std(list(values)) for values in zip(*curves)]
    return [m for m, _ in pairs], [s for _, s in pairs]


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """The first epoch (1-based) at which `curve` reaches `target`; None if it never does."""
    return next((i + 1 for i, value in enumerate(curve) if value >= target), None)


def _cell(mean: float, std: float, seeds: int, diff: float | None) -> str:
    if math.isnan(mean):
        return "n/a"
    text = f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")
    return text + (f" ({100 * diff:+.1f})" if diff is not None and not math.isnan(diff) else "")


def table_markdown(stats: dict[str, dict[str, tuple[float, float]]], seeds: int,
                   reach: dict[str, int | None] | None = None, own: dict[str, dict[str, Any]] | None = None) -> str:
    """Table 1: mean ± std (in %) per variant and metric, the difference to the baseline in brackets, and, given
    `reach`, the epochs each variant needs to reach the baseline's final AP. Rows name the variant's settings."""
    base = stats.get("baseline")
    head = ["variant", *METRICS] + (["epochs to baseline AP"] if reach is not None else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, row in stats.items():
        settings = {**VARIANTS[variant], **(own or {}).get(variant, {})}
        switches = " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items())
        cells = [f"{variant} ({switches})"]
        for m in METRICS:
            diff = None if base is None or variant == "baseline" else row[m][0] - base[m][0]
            cells.append(_cell(*row[m], seeds, diff))
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


def parse_variant_overrides(args: dict[str, Any], variants: list[str]) -> dict[str, dict[str, Any]]:
    """Take the `VARIANT:key=value` entries out of `args`: {variant: {key: value}} for every requested variant."""
    from umop_yolo.cfg import check_keys

    own: dict[str, dict[str, Any]] = {v: {} for v in variants}
    for token in [k for k in args if ":" in k]:
        variant, key = token.split(":", 1)
        if variant not in own:
            raise ConfigError(f"{token}={args[token]!r}: '{variant}' is not one of the variants "
                              f"({', '.join(variants)})")
        if key in SWITCHES or key in PER_RUN_KEYS or key in {"project", "name"}:
            raise ConfigError(f"{token}: {key}= is set by umop ablate, not per variant")
        check_keys({key: None}, f"'{token}'")
        own[variant][key] = args.pop(token)
    return own


def check_settings(out: Path, common: dict[str, Any], own: dict[str, dict[str, Any]]) -> None:
    """Record the shared and per-variant settings in `out`; refuse a later call whose settings differ from them
    (shared keys, and the own settings of variants both calls run). New variants and seeds may be added."""
    path = out / "settings.yaml"
    wanted = yaml.safe_load(yaml.safe_dump({"shared": common, "variants": own}))  # as YAML keeps them
    saved = yaml.safe_load(path.read_text()) if path.is_file() else {"shared": wanted["shared"], "variants": {}}
    pairs = [(k, saved["shared"].get(k), wanted["shared"].get(k))
             for k in sorted((set(saved["shared"]) | set(wanted["shared"])) - FREE_KEYS)]
    pairs += [(f"{v}:{k}", saved["variants"][v].get(k), o.get(k)) for v, o in wanted["variants"].items()
              if v in saved["variants"] for k in sorted(set(saved["variants"][v]) | set(o))]
    for key, there, now in pairs:
        if there != now:
            raise ConfigError(f"{out} holds an ablation with other settings ({key}: {there!r} there, {now!r} now); "
                              "pass another name= or the same settings")
    out.mkdir(parents=True, exist_ok=True)
    saved["variants"].update(wanted["variants"])
    path.write_text(yaml.safe_dump(saved, sort_keys=True))


def train_run(run: Run, settings: dict[str, Any], epochs: int) -> None:
    """Train one run with the variant's `settings` to `epochs` (resuming from its last.pt when an earlier call was
    interrupted)."""
    from umop_yolo.engine.trainer import UmopTrainer

    last = run.dir / "weights" / "last.pt"
    if last.is_file():
        overrides = {"resume": str(last), **{k: settings[k] for k in FREE_KEYS & set(settings)}}
    else:
        shutil.rmtree(run.dir, ignore_errors=True)  # a run that never saved a checkpoint starts over
        overrides = {**settings, "seed": run.seed}
    # save_dir: Ultralytics would put a relative project under its own runs_dir, and a resume anywhere it likes
    UmopTrainer(overrides={**overrides, "save_dir": str(run.dir)}).train()
    if not run.finished(epochs):
        raise RuntimeError(f"{run.dir}: training ended before {epochs} epochs (see its results.csv)")


def run_ablation(args: dict[str, Any]) -> Path:
    """Train (or reuse) every variant x seed, then write the table, CSV and curves; returns the output directory."""
    args = dict(args)
    variants = parse_variants(args.pop("variants", ",".join(VARIANTS)))
    seeds = parse_seeds(args.pop("seeds", 3))
    own = parse_variant_overrides(args, variants)
    for key in PER_RUN_KEYS:
        if key in args:
            raise ConfigError(f"{key}= is set per run by umop ablate (seeds= picks the seeds); leave it out")
    out = (Path(args.pop("project", "runs/ablate")) / str(args.pop("name", "ablation"))).resolve()
    common = {"val": True, **{k: v for k, v in args.items() if k not in SWITCHES}}
    if not common["val"]:
        raise ConfigError("val=false: the ablation needs every epoch's COCO AP")
    from ultralytics.utils import DEFAULT_CFG_DICT

    epochs = int(common.get("epochs", DEFAULT_CFG_DICT["epochs"]))
    check_settings(out, common, own)
    runs = [Run(v, s, out / f"{v}-seed{s}") for v in variants for s in seeds]
    for i, run in enumerate(runs, 1):
        state = "done, reusing" if run.finished(epochs) else "training"
        print(f"umop ablate: [{i}/{len(runs)}] {run.dir.name}: {state}", flush=True)
        if not run.finished(epochs):
            train_run(run, {**common, **VARIANTS[run.variant], **own[run.variant]}, epochs)
    write_report(out, runs, common, own, epochs)
    print(f"umop ablate: results in {out}", flush=True)
    return out


def write_report(out: Path, runs: list[Run], common: dict[str, Any], own: dict[str, dict[str, Any]],
                 epochs: int) -> None:
    """ablation.md, ablation.csv and ap_curves.png from the runs' results.csv files (first `epochs` rows)."""
    variants = list(dict.fromkeys(r.variant for r in runs))
    seeds = len(runs) // len(variants)
    finals = {v: [r.final() for r in runs if r.variant == v] for v in variants}
    curves = {v: [r.curve()[:epochs] for r in runs if r.variant == v] for v in variants}
    stats = summarize(finals)
    reach = None
    if "baseline" in stats and stats["baseline"]["AP"][0] > 0:  # an untrained baseline (AP 0) is reached by anything
        target = stats["baseline"]["AP"][0]
        reach = {v: epochs_to_reach(mean_curve(curves[v])[0], target - 1e-12) for v in variants}
    data, model = Path(str(common.get("data", "?"))).name, Path(str(common.get("model", "?"))).name
    title = f"{model} on {data}: COCO AP per epoch"
    plot_curves(curves, out / "ap_curves.png", title)
    with open(out / "ablation.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "seed", *METRICS, "run"])
        for r in runs:
            writer.writerow([r.variant, r.seed, *(f"{r.final()[m]:.6f}" for m in METRICS), r.dir.name])
    shared = ", ".join(f"{k}={v}" for k, v in sorted(common.items()) if k not in FREE_KEYS)
    per_variant = "; ".join(f"{v}: " + ", ".join(f"{k}={x}" for k, x in o.items()) for v, o in own.items() if o)
    per_run = ["| run | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 1)]
    per_run += [f"| {r.dir.name} | " + " | ".join(f"{100 * v:.2f}" if v >= 0 else "n/a" for v in r.final().values())
                + " |" for r in runs]
    lines = [
        f"# UMOP ablation: {model} on {data}",
        "",
        f"{len(variants)} variants x {seeds} seed(s) ({', '.join(str(r.seed) for r in runs[:seeds])}), "
        f"{epochs} epochs. COCO AP (pycocotools) in %, after the last epoch: mean ± sample std over seeds, "
        "difference to the baseline's mean in brackets (n/a: no ground truth of that size).",
        "",
        table_markdown(stats, seeds, reach, own),
        "",
        "Epochs to baseline AP: the first epoch at which the variant's seed-mean AP reaches the baseline's final "
        f"seed-mean AP ({100 * stats['baseline']['AP'][0]:.2f})." if reach is not None else "",
        "",
        "![COCO AP per epoch](ap_curves.png)",
        "",
        "## Runs",
        "",
        *per_run,
        "",
        f"Shared settings: {shared}" + (f". Variants' own settings (replacing the shared ones): {per_variant}"
                                        if per_variant else ""),
        "",
    ]
    (out / "ablation.md").write_text("\n".join(lines))
