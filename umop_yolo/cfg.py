"""Experiment files and the `key=value` grammar: `cfg=` experiment YAML < command-line overrides, strictly checked."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from umop_yolo.errors import InputNotFoundError, UserInputError
from umop_yolo.settings import UMOP_DEFAULTS, check_umop_args, scaled_lr_steps

PACKAGE_DIR = Path(__file__).resolve().parent
# The folder holding cfg/ and data/: the repo root in a checkout or an editable install; umop_yolo/assets in a wheel
# install, where pyproject.toml maps the repo's two folders (the one copy of each YAML).
REPO_ROOT = PACKAGE_DIR / "assets" if (PACKAGE_DIR / "assets" / "cfg").is_dir() else PACKAGE_DIR.parent
CFG_DIR = REPO_ROOT / "cfg"
MODELS_DIR = CFG_DIR / "models"
DATA_DIR = REPO_ROOT / "data"  # dataset YAMLs, found by bare name (data=shapes)
DEFAULT_EXPERIMENT = "yolov8n_umop.yaml"


class ConfigError(UserInputError):
    """A bad setting or key of an experiment, or a malformed YAML; the message is one line naming it."""


def find_file(name: str | Path, folder: Path, what: str) -> Path:
    """`name` as given, else looked up in `folder` (with or without `.yaml`)."""
    for candidate in (Path(name), folder / name, folder / f"{name}.yaml"):
        if candidate.is_file():
            return candidate.resolve()
    raise InputNotFoundError(f"{what} '{name}' not found (looked in the current directory and {folder})")


def resolve_model(model: str) -> str:
    """A model YAML from cfg/models by bare name, an Ultralytics YAML name (e.g. yolov8n.yaml), or an existing .pt
    (ours) or .pth (MMDetection's)."""
    if str(model).endswith((".pt", ".pth")):
        if not Path(model).is_file():
            raise InputNotFoundError(f"model '{model}' not found: weights are never downloaded, pass an existing file")
        return str(Path(model).resolve())
    if model and Path(model).is_dir():
        best = Path(model) / "weights" / "best.pt"
        hint = f", e.g. model={best}" if best.is_file() else ""
        raise InputNotFoundError(f"model '{model}' is a folder: pass a .pt checkpoint or a model YAML{hint}")
    try:
        return str(find_file(model, MODELS_DIR, "model"))
    except InputNotFoundError:
        return str(model)  # Ultralytics resolves its own architecture YAMLs (yolov8n.yaml, yolo11s.yaml ...)


def load_yaml(path: Path, what: str = "YAML") -> dict:
    """Read a YAML mapping; errors are one line naming the file (and the line of a syntax error)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} '{path}': malformed YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError as e:  # a binary file, or text in another encoding
        raise ConfigError(f"{what} '{path}': not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}); is it a "
                          "YAML file?") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}': expected a mapping of keys, got {type(data).__name__}")
    return data


def check_keys(args: dict, source: str) -> None:
    """Reject keys Ultralytics and UMOP do not know, naming the closest valid key."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    valid = {**DEFAULT_CFG_DICT, **UMOP_DEFAULTS}
    for key in args:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (closest valid key: '{close[0]}')" if close else ""
            raise ConfigError(f"unknown key '{key}' in {source}{hint}")


def _integer(value: Any, low: int) -> bool:
    """An integer >= `low` (an integral float such as 1e2 counts, as in Ultralytics' own checks)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and float(value).is_integer() and value >= low


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sizes(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) and 0 < len(value) <= 2 else [value]


# Values Ultralytics does not check and then changes without a word (imgsz=0 runs at 32, batch=-3 becomes AutoBatch,
# close_mosaic=-1 never closes mosaic) or that fail deep inside a mode. key -> (valid(value, training), valid values).
# Ultralytics' keys only: UMOP's own are checked by `settings.check_umop_args`.
VALUE_RULES: dict[str, tuple[Callable[[Any, bool], bool], str]] = {
    "imgsz": (lambda v, _: all(_integer(x, 1) for x in _sizes(v)), "a positive integer (or [h, w])"),
    "batch": (lambda v, training: _integer(v, 1) or (training and _number(v) and (v == -1 or 0 < v < 1)),
              "an integer >= 1 (train also takes -1 for AutoBatch, or a fraction in (0, 1) of GPU memory)"),
    "workers": (lambda v, _: _integer(v, 0), "an integer >= 0"),
    "close_mosaic": (lambda v, _: _integer(v, 0), "an integer >= 0 (0: mosaic to the end)"),
    "warmup_epochs": (lambda v, _: _number(v) and v >= 0, "a number >= 0"),
    "time": (lambda v, _: v is None or (_number(v) and v > 0), "a number of hours > 0"),
    **{gain: (lambda v, _: _number(v) and v >= 0, "a loss gain >= 0") for gain in ("box", "cls", "dfl")},
}


def check_device(device: Any) -> None:
    """`device` names CUDA indices this machine has (as Ultralytics' `select_device` parses it), cpu, mps or auto."""
    if device is None or not isinstance(device, (str, int, list, tuple)) or isinstance(device, bool):
        return  # None: auto; a torch.device is Ultralytics' to check
    text = str(device).lower()
    for noise in ("cuda:", "(", ")", "[", "]", "'", " "):
        text = text.replace(noise, "")
    if text in {"", "cpu", "mps", "mps:0", "cuda"} or text.startswith(("npu", "xpu", "tpu", "intel", "vulkan")):
        return
    import torch

    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").replace(" ", "").split(",")[:count]  # physical ids, too
    for index in text.split(","):
        if index == "-1" or (index.isdigit() and (int(index) < count or index in visible)):
            continue
        if index.isdigit():
            raise UserInputError(f"device={text}: torch sees {count} CUDA device(s) here (torch.cuda.device_count()), "
                                 "use device=cpu or an index below that count")
        raise UserInputError(f"device={text!r} must be cpu, mps, or CUDA indices such as 0 or 0,1 (-1: an idle GPU)")


def check_values(args: dict[str, Any], training: bool) -> None:
    """Refuse bad values in one line before a mode starts: Ultralytics' own type and range checks (`check_cfg`, run
    again when the mode starts), then `VALUE_RULES`, UMOP's keys (`check_umop_args`) and the device. `training`:
    train-only values are valid."""
    from ultralytics.cfg import check_cfg

    try:
        check_cfg(dict(args))
    except (TypeError, ValueError) as e:  # check_cfg's refusals start with the 'key=value' given; others are bugs
        if not any(str(e).startswith(f"'{key}=") for key in args):
            raise
        raise UserInputError(str(e)) from None
    for key, (valid, what) in VALUE_RULES.items():
        if key in args and not valid(args[key], training):
            raise UserInputError(f"{key}={args[key]!r} must be {what}")
    check_umop_args(args)
    check_device(args.get("device"))


def experiment_args(cfg: str | None, overrides: dict[str, Any], source: str = "the command line") -> dict[str, Any]:
    """Merge an experiment YAML (`cfg=`, looked up in cfg/) under the overrides (given in `source`); resolve the model
    path."""
    args: dict[str, Any] = {}
    if cfg is not None:
        path = find_file(cfg, CFG_DIR, "experiment cfg")
        args = load_yaml(path, "experiment cfg")
        check_keys(args, str(path))
    check_keys(overrides, source)
    if cfg is not None and "epochs" in overrides and "lr_steps" in args and "lr_steps" not in overrides:
        args["lr_steps"] = scaled_lr_steps(args["lr_steps"], args.get("epochs"), overrides["epochs"], path.name)
    args.update(overrides)
    if "model" in args:
        args["model"] = resolve_model(args["model"])
    return args


def experiment_name(mode: str, overrides: dict[str, Any]) -> str | None:
    """The experiment a mode reads: `cfg=`, else DEFAULT_EXPERIMENT for train, analyze and ablate, except when
    resuming (a resumed run takes its settings from the checkpoint)."""
    default = DEFAULT_EXPERIMENT if mode in {"train", "analyze", "ablate"} and not overrides.get("resume") else None
    return overrides.get("cfg", default)


def mode_args(mode: str, overrides: dict[str, Any], source: str = "the command line") -> dict[str, Any]:
    """The arguments a mode runs with, for `umop MODE` and `UmopYOLO` alike: its experiment (`experiment_name`) under
    the overrides, values checked, and runs in `<runs_dir>/detect` (`runs_dir()`) unless `project=` is given."""
    overrides = dict(overrides)
    cfg = experiment_name(mode, overrides)
    overrides.pop("cfg", None)
    args = experiment_args(cfg, overrides, source)
    check_values(args, training=mode in {"train", "ablate"})
    if mode in {"train", "val", "predict", "analyze"} and not overrides.get("resume"):
        args.setdefault("project", str(runs_dir() / "detect"))
    return args


def runs_dir() -> Path:
    """Ultralytics' `runs_dir` setting (`yolo settings runs_dir=...`; `runs` by default), where `yolo` puts its runs;
    a relative one is taken from the current directory."""
    from ultralytics.utils import SETTINGS

    return Path(SETTINGS["runs_dir"]).resolve()
