"""Experiment files and the `key=value` grammar: `cfg=` experiment YAML < command-line overrides, strictly checked."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from umop_yolo.errors import InputNotFoundError, UserInputError

REPO_ROOT = Path(__file__).resolve().parents[1]
CFG_DIR = REPO_ROOT / "cfg"
MODELS_DIR = CFG_DIR / "models"
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
    """A model YAML from cfg/models by bare name, an Ultralytics YAML name (e.g. yolov8n.yaml), or an existing .pt."""
    if str(model).endswith(".pt"):
        if not Path(model).is_file():
            raise InputNotFoundError(f"model '{model}' not found: weights are never downloaded, pass an existing file")
        return str(Path(model).resolve())
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
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}': expected a mapping of keys, got {type(data).__name__}")
    return data


def check_keys(args: dict, source: str) -> None:
    """Reject keys Ultralytics and UMOP do not know, naming the closest valid key."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    import umop_yolo.engine  # noqa: F401  (registers the UMOP keys)

    for key in args:
        if key not in DEFAULT_CFG_DICT:
            close = difflib.get_close_matches(key, DEFAULT_CFG_DICT, n=1)
            hint = f" (closest valid key: '{close[0]}')" if close else ""
            raise ConfigError(f"unknown key '{key}' in {source}{hint}")


def check_values(args: dict[str, Any]) -> None:
    """Ultralytics' own type and range checks of its keys (`check_cfg`, run again when a mode starts), as one line."""
    from ultralytics.cfg import check_cfg

    try:
        check_cfg(dict(args))
    except (TypeError, ValueError) as e:  # check_cfg validates only: every error it raises is about a value given
        raise UserInputError(str(e)) from None


def experiment_args(cfg: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge an experiment YAML (`cfg=`, looked up in cfg/) under the overrides; resolve the model path."""
    args: dict[str, Any] = {}
    if cfg is not None:
        path = find_file(cfg, CFG_DIR, "experiment cfg")
        args = load_yaml(path, "experiment cfg")
        check_keys(args, str(path))
    check_keys(overrides, "the command line")
    args.update(overrides)
    check_values(args)
    if "model" in args:
        args["model"] = resolve_model(args["model"])
    return args
