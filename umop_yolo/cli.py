"""`umop [detect] MODE key=value ...`: the `yolo` command-line grammar, running our trainer, models and validator.

The modes, their examples and the guide that `umop help` prints are in `umop_yolo.help`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from umop_yolo import __version__, offline
from umop_yolo.cfg import ConfigError, mode_args
from umop_yolo.errors import UserInputError
from umop_yolo.help import USAGE, checks, guide, settings_in_force

TASKS = ("detect", "segment", "classify", "pose", "obb")  # Ultralytics' task words: `umop detect train` as `yolo`
HELP = {"help", "-h", "--help"}


def parse_args(argv: list[str]) -> dict[str, Any]:
    """`key=value` tokens (Ultralytics' parsing: numbers, booleans, lists, `device=0,1`) -> dict."""
    from ultralytics.cfg import merge_equals_args, parse_key_value_pair
    from ultralytics.utils import LOGGER

    out = {}
    for token in merge_equals_args(argv):
        if token.startswith("--"):  # accepted with a warning, as `yolo` does
            LOGGER.warning(f"argument '{token}' does not need leading dashes '--', taken as '{token[2:]}'")
            token = token[2:]
        if "=" not in token:
            raise ConfigError(f"expected key=value, got '{token}'")
        key, value = parse_key_value_pair(token)
        out[key] = value
    return out


def train(args: dict[str, Any]) -> Any:
    from umop_yolo.engine.trainer import UmopTrainer

    trainer = UmopTrainer(overrides=args)
    trainer.train()
    return trainer


def _model_api(args: dict[str, Any]) -> Any:
    from umop_yolo.engine.api import UmopYOLO

    if "model" not in args:
        raise ConfigError("model= is required (a trained .pt, e.g. model=runs/detect/train/weights/best.pt)")
    model = UmopYOLO(args.pop("model"), trust_checkpoint=args.get("trust_checkpoint", False))
    if str(args.get("pretrained", "")).endswith(".pth"):  # model=<model YAML> pretrained=<MMDetection checkpoint>
        model.load(args.pop("pretrained"))
    return model


def val(args: dict[str, Any]) -> Any:
    return _model_api(args).val(**args)  # data: default the checkpoint's, bare names looked up in data/


def predict(args: dict[str, Any]) -> Any:
    from umop_yolo.data.images import readable_source

    with TemporaryDirectory() as tmp:  # holds the list of readable images when some in `source` are not
        if "source" in args:
            args["source"] = readable_source(args["source"], Path(tmp) / "source.txt")
        model = _model_api(args)
        args.setdefault("save", True)
        return model.predict(**args)


def export(args: dict[str, Any]) -> Any:
    return _model_api(args).export(**args)


def analyze(args: dict[str, Any]) -> Any:
    from umop_yolo.diagnostics.analyze import run_analysis

    return run_analysis(args, args.pop("batches", 10))


def plots(args: dict[str, Any]) -> Any:
    from umop_yolo.engine.levels.level_plots import plot_run

    if set(args) != {"run"}:
        raise ConfigError("plots takes only run= (a training run directory, e.g. run=runs/detect/train)")
    for path in plot_run(args["run"]):
        print(path)


def convert(args: dict[str, Any]) -> Any:
    from umop_yolo.data.convert import convert_main

    path = convert_main(args)
    print(path)
    return path


def check(args: dict[str, Any]) -> Any:
    from umop_yolo.data.check import check_main

    return check_main(args)


def ablate(args: dict[str, Any]) -> Any:
    from umop_yolo.ablate import run_ablation

    return run_ablation(args)


MODES: dict[str, Callable[[dict[str, Any]], Any]] = {"train": train, "val": val, "predict": predict, "export": export,
                                                     "analyze": analyze, "plots": plots, "ablate": ablate}
OWN_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {"convert": convert, "check": check}
MODE_KEYS = {"analyze": ("batches",), "plots": ("run",), "ablate": ("seeds", "variants")}  # not Ultralytics/UMOP keys


INFO: dict[str, Callable[[], str]] = {"version": lambda: __version__, "checks": checks, "help": guide}


def run(mode: str, argv: list[str]) -> Any:
    """Run one mode with `key=value` arguments; `cfg=` names an experiment YAML (bare names are looked up in cfg/)."""
    if mode in INFO:
        if argv:
            raise ConfigError(f"{mode} takes no arguments, got '{argv[0]}'")
        return print(INFO[mode]())
    if mode not in {*MODES, *OWN_KEYS, "cfg"}:
        raise ConfigError(f"unknown mode '{mode}'; {USAGE}")
    overrides = parse_args(argv)
    if mode in OWN_KEYS:  # dataset conversion and checks take their own keys, none of Ultralytics'
        return OWN_KEYS[mode](overrides)
    if mode == "cfg":
        return print(settings_in_force(overrides))
    from umop_yolo.engine.runtime import register

    register()  # the UMOP keys in Ultralytics' defaults, which the modes check their arguments against
    own = {k: overrides.pop(k) for k in list(overrides)
           if k in MODE_KEYS.get(mode, ()) or (mode == "ablate" and ":" in k)}  # ablate's VARIANT:key=value
    return MODES[mode]({**mode_args(mode, overrides), **own})


def main(argv: list[str] | None = None) -> int:
    """Console entry point (`umop`, train.py, val.py); sets the offline environment first. Errors in the user's
    input (`UserInputError`) print one line and exit with status 2; any other exception is a bug and raises with its
    traceback."""
    argv = sys.argv[1:] if argv is None else argv
    offline.configure()  # before anything imports Ultralytics, which reads these once
    try:
        if argv and argv[0] in TASKS:
            if argv[0] != "detect":
                raise ConfigError(f"task '{argv[0]}' is not supported: umop trains and runs detectors (task detect)")
            argv = argv[1:]
        if not argv or HELP & set(argv):
            print(guide())
            return 0
        run(argv[0], argv[1:])
    except UserInputError as e:
        print(f"umop: error: {e}", file=sys.stderr)
        return 2
    return 0
