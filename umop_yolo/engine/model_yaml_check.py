"""Model YAMLs checked as data before any model is built from them: the user's file and a checkpoint's stored copy.

Ultralytics' `parse_model` calls whatever a row's module names in `ultralytics.nn.tasks` (any class or function there,
a whole `DetectionModel` with its own config included) with the row's arguments, turns a string argument into any of
its own locals or any Python literal (a dict too), and eval()s the `activation`. So a model YAML runs code unless it is
checked. `check_model_dict` accepts only:

* YOLO YAMLs: rows `[from, repeats, module, args]` whose module is one of `LAYERS` (the layers of Ultralytics' YOLO
  detection YAMLs, v3 to YOLO26, and a few torch.nn layers), whose `from` are earlier layers, whose args are numbers,
  booleans, None, `STRING_ARGS` and lists of them (never a dict); the top-level keys `parse_model` reads with values of
  their type, any other key plain data;
* RetinaNet/ATSS YAMLs (`detector:`): the keys of `dense_schema`, every value plain data, a `backbone.yolo` naming a
  local YAML file (no URL) that passes the YOLO check when it is on this machine (building the model reads it again);
* everywhere: an `activation` is `nn.Name(numbers)` with Name in `ACTIVATIONS`; numbers are finite and within
  `MAX_NUMBER` (nc and arguments), `MAX_REPEATS`, `MAX_MULTIPLE` (depth and width multiples).

Anything else raises one line naming the file and the row (`backbone row 0`) or key. A RetinaNet/ATSS YAML that
passes comes back as the typed `DenseConfig` its model is built from: a dense model is only built from a checked YAML.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

from umop_yolo.cfg import ConfigError
from umop_yolo.engine.dense_schema import DenseConfig, backbone_kind, load_model_yaml, merged_config, yolo_model_dict
from umop_yolo.errors import UserInputError
from umop_yolo.nn.detectors import DETECTORS

LAYERS = frozenset({
    "Conv", "GhostConv", "DWConv", "ConvTranspose", "DWConvTranspose2d", "Focus", "Concat",  # convolutions, merge
    "Bottleneck", "BottleneckCSP", "GhostBottleneck", "C1", "C2", "C2f", "C3", "C3x", "C3k2", "C3Ghost", "RepC3",
    "C2PSA", "C2fPSA", "PSA", "C2fCIB", "SCDown", "A2C2f", "RepNCSPELAN4", "ELAN1", "ADown", "AConv",
    "SPP", "SPPF", "SPPELAN", "CBLinear", "CBFuse", "HGStem", "HGBlock", "ResNetLayer",
    "Detect", "v10Detect",  # detection heads
    "nn.Upsample", "nn.MaxPool2d", "nn.AvgPool2d", "nn.ZeroPad2d", "nn.Identity", "nn.ConvTranspose2d",
    "nn.BatchNorm2d",
})
STRING_ARGS = frozenset({"nc", "None", "True", "False", "nearest", "linear", "bilinear", "bicubic", "trilinear"})
ACTIVATIONS = frozenset({"SiLU", "ReLU", "ReLU6", "LeakyReLU", "GELU", "Hardswish", "Mish", "ELU", "SELU", "CELU",
                         "Sigmoid", "Tanh", "Identity", "PReLU"})
MAX_NUMBER = 10_000  # classes, channels, kernel sizes ... in arguments
MAX_REPEATS = 100
MAX_MULTIPLE = 4.0
MAX_ROWS = 1000
MAX_LIST = 16  # entries of an argument list
MAX_INPUT_CHANNELS = 16


def _number(value: Any, low: float = -MAX_NUMBER, high: float = MAX_NUMBER) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


def _integer(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _plain(value: Any, depth: int = 2) -> bool:
    """A number within bounds, bool, None, string, or a short list of them (lists nested `depth` deep at most)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, list):
        return depth > 0 and len(value) <= MAX_LIST and all(_plain(v, depth - 1) for v in value)
    return _number(value)


def activation_ok(spec: Any) -> bool:
    """Whether `spec` is `nn.Name(numbers)` or `torch.nn.Name(...)` with Name in ACTIVATIONS: safe to eval()."""
    try:
        call = ast.parse(str(spec).strip(), mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    if not isinstance(call, ast.Call) or len(call.args) + len(call.keywords) > 2:
        return False
    literals = [*call.args, *(k.value for k in call.keywords)]
    if any(k.arg is None for k in call.keywords) or not all(isinstance(n, ast.Constant) for n in literals):
        return False
    if not all(isinstance(n.value, bool) or _number(n.value) for n in literals):
        return False
    module, _, name = ast.unparse(call.func).rpartition(".")
    return module in {"nn", "torch.nn"} and name in ACTIVATIONS


def _activations(value: Any, where: str) -> None:
    """Every `activation` key at any depth must pass `activation_ok`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "activation" and item is not None and not activation_ok(item):
                raise UserInputError(f"{where}activation {' '.join(str(item).split())[:80]!r} is not one of "
                                     f"nn.{{{', '.join(sorted(ACTIVATIONS))}}}(numbers)")
            _activations(item, f"{where}{key}.")
    elif isinstance(value, list):
        for item in value:
            _activations(item, where)


def _arg(value: Any) -> bool:
    """A row argument `parse_model` passes on as data: no dict, no other local of parse_model, no code."""
    if isinstance(value, str):
        return value in STRING_ARGS
    return _plain(value)


def _check_row(row: Any, i: int) -> str | None:
    """The problem of layer `i`'s row, or None."""
    if not (isinstance(row, list) and len(row) == 4):
        return "is not a [from, repeats, module, args] row"
    f, n, module, args = row
    sources = f if isinstance(f, list) and f else [f]
    if not all(_integer(x, -max(i, 1), i - 1) for x in sources):
        return f"from={f!r} must name earlier layers (-1: the previous one)"
    if not _integer(n, 1, MAX_REPEATS):
        return f"repeats={n!r} must be an integer from 1 to {MAX_REPEATS}"
    if not isinstance(module, str) or module not in LAYERS:
        return (f"unknown module {module!r}: a model YAML row names one of Ultralytics' YOLO detection layers (Conv, "
                "C2f, C3k2, SPPF, Concat, Detect ...) or nn.Upsample, nn.MaxPool2d, nn.ZeroPad2d, nn.Identity")
    if not isinstance(args, list) or len(args) > MAX_LIST:
        return f"args must be a list of at most {MAX_LIST} values"
    for value in args:
        if not _arg(value):
            shown = " ".join(str(value).split())[:80]
            return (f"argument {shown!r} is not a number within +-{MAX_NUMBER}, boolean, null, list of them or one "
                    f"of {', '.join(sorted(STRING_ARGS))}")
    return None


def _check_yolo_keys(spec: dict) -> str | None:
    """The problem of a top-level key of a YOLO YAML, or None."""
    nc, scales = spec.get("nc"), spec.get("scales")
    multiples = [spec.get(k, 1.0) for k in ("depth_multiple", "width_multiple")]
    if nc is not None and not _integer(nc, 1, MAX_NUMBER):
        return f"nc={nc!r} must be an integer from 1 to {MAX_NUMBER}"
    if not all(_number(m, 1e-3, MAX_MULTIPLE) for m in multiples):
        return f"depth_multiple/width_multiple {multiples} must be numbers in (0, {MAX_MULTIPLE}]"
    if scales is not None and not (isinstance(scales, dict) and all(
            isinstance(k, str) and isinstance(v, list) and len(v) == 3 and _number(v[0], 1e-3, MAX_MULTIPLE)
            and _number(v[1], 1e-3, MAX_MULTIPLE) and _integer(v[2], 1, MAX_NUMBER) for k, v in scales.items())):
        return f"scales must map names to [depth, width, max_channels] (multiples up to {MAX_MULTIPLE})"
    if not _integer(spec.get("reg_max", 16), 1, 64) or not _integer(spec.get("channels", 3), 1, MAX_INPUT_CHANNELS):
        return "reg_max must be an integer from 1 to 64, channels from 1 to 16"
    if not isinstance(spec.get("end2end", False), (bool, type(None))) or not isinstance(spec.get("scale", ""), str):
        return "end2end must be true or false, scale a name"
    if scales and spec.get("scale") and spec["scale"] not in scales:
        return f"scale {spec['scale']!r} is not one of scales {list(scales)}"
    odd = [k for k, v in spec.items() if k not in {"backbone", "head", "scales", "activation"} and not _plain(v)]
    return f"key {odd[0]!r} must be plain data (numbers, strings, lists of them)" if odd else None


def _check_yolo(spec: dict, source: str) -> None:
    sections = [spec.get("backbone"), spec.get("head")]
    if not all(isinstance(s, list) for s in sections) or not 0 < len(sections[0]) + len(sections[1]) <= MAX_ROWS:
        raise UserInputError(f"{source}: needs 'backbone' and 'head' lists of [from, repeats, module, args] rows")
    if problem := _check_yolo_keys(spec):
        raise UserInputError(f"{source}: {problem}")
    i = 0
    for section, rows in zip(("backbone", "head"), sections):
        for j, row in enumerate(rows):
            if problem := _check_row(row, i):
                raise UserInputError(f"{source}: {section} row {j} (layer {i}): {problem}")
            i += 1
    _activations(spec, f"{source}: ")


def _check_dense(spec: dict, source: str) -> DenseConfig:
    config = merged_config(spec)  # unknown keys, an unknown detector
    head = DETECTORS[config["detector"]].defaults  # sections (dicts): backbone, neck, head and the head's own
    sections = {"backbone", "neck", "head", *(f"head.{k}" for k, v in head.items() if isinstance(v, dict))}

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict) and where in sections:
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif not _plain(value):
            raise UserInputError(f"{source}: {where} must be plain data (numbers, strings, lists of them)")

    for key in ("backbone", "neck", "head"):
        walk(config[key], key)
    if not _integer(config.get("nc", 80), 1, MAX_NUMBER):
        raise UserInputError(f"{source}: nc={config.get('nc')!r} must be an integer from 1 to {MAX_NUMBER}")
    _activations(spec, f"{source}: ")
    if backbone_kind(config) == "yolo":
        name = config["backbone"]["yolo"]
        if not isinstance(name, str) or "://" in name:
            raise UserInputError(f"{source}: backbone.yolo={name!r} must name a local YAML file (nothing is fetched)")
        try:
            yolo = yolo_model_dict(name)
        except UserInputError:  # not on this machine, or no YOLO YAML: building the model stops on it in one line
            yolo = None
        if yolo is not None:
            _check_yolo(yolo, f"{source}: backbone.yolo '{name}'")
    return DenseConfig.from_merged(config, spec)


def check_model_dict(spec: Any, source: str, error: type[UserInputError] = ConfigError) -> DenseConfig | None:
    """Raise `error` (one line starting with `source`, naming the row or key) unless `spec` is a model YAML of
    allowed layers and plain data; see the module docstring. Returns the typed config of a RetinaNet/ATSS YAML, None
    for a YOLO one."""
    try:
        if not isinstance(spec, dict):
            raise UserInputError(f"{source}: expected a mapping of keys, got {type(spec).__name__}")
        if "detector" in spec:
            return _check_dense(spec, source)
        _check_yolo(spec, source)
        return None
    except UserInputError as e:  # dense_schema's own lines start "model YAML: "
        message = str(e) if str(e).startswith(source) else f"{source}: {str(e).removeprefix('model YAML: ')}"
        raise error(message) from None


def dense_model_config(cfg: str | Path | dict) -> DenseConfig:
    """The checked, typed config of a RetinaNet/ATSS model YAML given as a dict, a path or a bare name in cfg/models."""
    spec = load_model_yaml(cfg)
    config = check_model_dict(spec, "model YAML" if isinstance(cfg, dict) else f"model '{cfg}'")
    if config is None:
        raise ConfigError(f"model '{spec.get('yaml_file', cfg)}' has no `detector:` key: it is not a RetinaNet/ATSS "
                          "model YAML")
    return config
