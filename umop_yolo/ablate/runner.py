"""Running an ablation: the variants, parsing `seeds=` / `variants=` / `VARIANT:key=value`, one training per
(variant, seed) pair, reuse of finished runs and resume of interrupted ones."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from umop_yolo.ablate.report import run_name, write_report
from umop_yolo.cfg import ConfigError, runs_dir
from umop_yolo.engine.run.run_lock import clear_run_dir
from umop_yolo.eval.coco_eval import METRICS
from umop_yolo.eval.metrics import COCO_KEYS

VARIANTS: dict[str, dict[str, bool]] = {
    "baseline": {"umop": False},
    "pfl": {"umop": True, "lrp": False},
    "pfl+lrp": {"umop": True, "lrp": True},
}
COLUMN = dict(zip(METRICS, COCO_KEYS))  # the validator's results.csv columns
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
        """The metric after every epoch (nan where the field is empty: no ground truth of that size)."""
        return [row.get(COLUMN[metric], math.nan) for row in self.rows()]

    def final(self) -> dict[str, float]:
        """The six COCO numbers of the last epoch (nan for an empty field)."""
        last = self.rows()[-1]
        return {m: last.get(COLUMN[m], math.nan) for m in METRICS}


def switches(variant: str) -> dict[str, bool]:
    """The UMOP switches of a variant: `pfl+lrp`, or a labelled copy such as `pfl+lrp@vfl` (its own settings then
    come from `pfl+lrp@vfl:key=value`), which lets one ablation compare several designs against one baseline."""
    return VARIANTS[variant.split("@", 1)[0]]


def parse_variants(value: Any) -> list[str]:
    """`baseline,pfl,pfl+lrp,pfl+lrp@label` (a string or a sequence) -> variant names, in the given order."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    known = [re.fullmatch(rf"({'|'.join(map(re.escape, VARIANTS))})(@[\w+.-]+)?", v) for v in names]
    if not all(known) or not names or len(set(names)) != len(names):
        raise ConfigError(f"variants={value!r}: need distinct names from {', '.join(VARIANTS)}, or NAME@LABEL copies")
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
        clear_run_dir(run.dir)  # a run that never saved a checkpoint starts over
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
    out = (Path(args.pop("project", runs_dir() / "ablate")) / str(args.pop("name", "ablation"))).resolve()
    common = {"val": True, **{k: v for k, v in args.items() if k not in SWITCHES}}
    if not common["val"]:
        raise ConfigError("val=false: the ablation needs every epoch's COCO AP")
    from ultralytics.utils import DEFAULT_CFG_DICT

    epochs = int(common.get("epochs", DEFAULT_CFG_DICT["epochs"]))
    check_settings(out, common, own)
    runs = [Run(v, s, out / run_name(v, s)) for v in variants for s in seeds]
    for i, run in enumerate(runs, 1):
        state = "done, reusing" if run.finished(epochs) else "training"
        print(f"umop ablate: [{i}/{len(runs)}] {run.dir.name}: {state}", flush=True)
        if not run.finished(epochs):
            train_run(run, {**common, **switches(run.variant), **own[run.variant]}, epochs)
    report(out, runs, common, own, epochs)
    print(f"umop ablate: results in {out}", flush=True)
    return out


def report(out: Path, runs: list[Run], common: dict[str, Any], own: dict[str, dict[str, Any]], epochs: int) -> None:
    """ablation.md, ablation.csv and ap_curves.png from the runs' results.csv files (first `epochs` rows)."""
    variants = list(dict.fromkeys(r.variant for r in runs))
    finals = {v: {r.seed: r.final() for r in runs if r.variant == v} for v in variants}
    curves = {v: [r.curve()[:epochs] for r in runs if r.variant == v] for v in variants}
    data, model = Path(str(common.get("data", "?"))).name, Path(str(common.get("model", "?"))).name
    shared = ", ".join(f"{k}={v}" for k, v in sorted(common.items()) if k not in FREE_KEYS)
    per_variant = "; ".join(f"{v}: " + ", ".join(f"{k}={x}" for k, x in o.items()) for v, o in own.items() if o)
    footer = [f"{epochs} epochs. Shared settings: {shared}"
              + (f". Variants' own settings (replacing the shared ones): {per_variant}" if per_variant else "")]
    write_report(out, finals, curves, f"{model} on {data}", own, {v: switches(v) for v in variants}, footer)
