"""An MMDetection config (the text its checkpoints keep in `meta`) as our model YAML, read as data only.

The text is Python source (`model = dict(...)`); it is parsed, never run: only literals, lists, tuples, dicts and
`dict(key=value)` calls are read, and an assignment holding anything else is skipped (the `model` one stops with one
line). `model_yaml` turns `model` into the dense-model YAML of `dense_schema` (ResNet/ResNeXt [+ DCNv2] + FPN +
ATSSHead/RetinaHead), or stops with one line naming the first setting that has no counterpart here.
"""

from __future__ import annotations

import ast
from typing import Any

from umop_yolo.errors import UserInputError

HEADS = {"ATSSHead": "atss", "RetinaHead": "retinanet"}
DETECTORS = {"ATSS": "atss", "RetinaNet": "retinanet"}
STRIDES = [8, 16, 32, 64, 128, 256]


class ConfigTextError(UserInputError):
    """An MMDetection config that cannot be read as data or has no counterpart here."""


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression, `dict(k=v, ...)` included; ValueError for anything else."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(k.arg is None for k in node.keywords):
            raise ValueError("dict(**...)")
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_literal(e) for e in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values) if k is not None}
    return ast.literal_eval(node)  # constants, signed numbers


def parse_config(text: str, where: str) -> dict[str, Any]:
    """Top-level `name = <literal>` assignments of a config text; `model` must be plain data."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise ConfigTextError(f"{where}: the MMDetection config is not readable (line {e.lineno}: {e.msg})") from None
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                out[name] = _literal(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                if name == "model":
                    raise ConfigTextError(f"{where}: the MMDetection config's model (line {node.lineno}) is not plain "
                                          "data; give the architecture as a model YAML") from None
    return out


def _check(ok: bool, key: str, value: Any, want: str) -> None:
    if not ok:
        raise ConfigTextError(f"MMDetection config: model.{key}={value!r} has no counterpart here ({want})")


def _backbone(cfg: dict) -> tuple[dict, list[int]]:
    kind = cfg.get("type", "ResNet")
    _check(kind in ("ResNet", "ResNeXt"), "backbone.type", kind, "ResNet or ResNeXt")
    _check(cfg.get("style", "pytorch") == "pytorch", "backbone.style", cfg.get("style"), "pytorch")
    _check(cfg.get("num_stages", 4) == 4, "backbone.num_stages", cfg.get("num_stages"), "4")
    for key in ("deep_stem", "avg_down"):  # ResNetV1c/d stems and shortcuts
        _check(not cfg.get(key), f"backbone.{key}", cfg.get(key), "the plain ResNet stem and shortcuts")
    dcn, stages = cfg.get("dcn"), list(cfg.get("stage_with_dcn") or [False] * 4)
    if dcn:
        _check(dcn.get("type") == "DCNv2", "backbone.dcn.type", dcn.get("type"), "DCNv2 (modulated)")
    out = {"depth": cfg.get("depth", 50), "groups": cfg.get("groups", 1) if kind == "ResNeXt" else 1,
           "base_width": cfg.get("base_width", 4) if kind == "ResNeXt" else 64,
           "base_channels": cfg.get("base_channels", 64), "frozen_stages": cfg.get("frozen_stages", -1),
           "norm_eval": cfg.get("norm_eval", True),
           "dcn_stages": [i + 1 for i, on in enumerate(stages) if on and dcn], "pretrained": None}
    return out, list(cfg.get("out_indices", (0, 1, 2, 3)))


def _neck(cfg: dict, out_indices: list[int]) -> dict:
    _check(cfg.get("type") == "FPN", "neck.type", cfg.get("type"), "FPN")
    start, end = cfg.get("start_level", 0), cfg.get("end_level", -1)
    used = out_indices[start:] if end == -1 else out_indices[start:end + 1]
    _check(used == [1, 2, 3], "neck.start_level", start, "FPN inputs C3-C5")
    _check(not cfg.get("norm_cfg"), "neck.norm_cfg", cfg.get("norm_cfg"), "no norm in the FPN")
    extra = cfg.get("add_extra_convs", False)
    if extra is True:  # MMDetection 2.x: True with extra_convs_on_inputs (default True) saying where from
        extra = "on_input" if cfg.get("extra_convs_on_inputs", True) else "on_output"
    _check(extra in ("on_input", "on_output") or cfg.get("num_outs", 5) == 3, "neck.add_extra_convs", extra,
           "on_input or on_output")
    return {"out_channels": cfg.get("out_channels", 256), "num_outs": cfg.get("num_outs", 5),
            "add_extra_convs": extra or "on_input",
            "relu_before_extra_convs": cfg.get("relu_before_extra_convs", False)}


def _head(cfg: dict, detector: str, num_outs: int, test_cfg: dict) -> dict:
    anchors, coder = cfg.get("anchor_generator", {}), cfg.get("bbox_coder", {})
    _check(list(anchors.get("strides", STRIDES[:num_outs])) == STRIDES[:num_outs], "bbox_head.anchor_generator.strides",
           anchors.get("strides"), f"{STRIDES[:num_outs]}")
    _check(anchors.get("center_offset", 0.0) == 0.0, "bbox_head.anchor_generator.center_offset",
           anchors.get("center_offset"), "0")
    _check(coder.get("type", "DeltaXYWHBBoxCoder") == "DeltaXYWHBBoxCoder", "bbox_head.bbox_coder.type",
           coder.get("type"), "DeltaXYWHBBoxCoder")
    _check(cfg.get("pred_kernel_size", 3) == 3, "bbox_head.pred_kernel_size", cfg.get("pred_kernel_size"), "3")
    head = {"feat_channels": cfg.get("feat_channels", 256), "stacked_convs": cfg.get("stacked_convs", 4),
            "anchors": {k: anchors[k] for k in ("octave_base_scale", "scales_per_octave", "ratios") if k in anchors},
            "box_coder": {"means": list(coder.get("target_means", [0.0] * 4)),
                          "stds": list(coder.get("target_stds", [1.0] * 4))},
            "test": {"nms_pre": test_cfg.get("nms_pre", 1000), "score_thr": test_cfg.get("score_thr", 0.05)}}
    norm = cfg.get("norm_cfg", {"type": "GN", "num_groups": 32} if detector == "atss" else None)
    if detector == "atss":
        _check(bool(norm) and norm.get("type") == "GN", "bbox_head.norm_cfg", norm, "GroupNorm")
        head["gn_groups"] = norm.get("num_groups", 32)
    else:
        _check(not norm, "bbox_head.norm_cfg", norm, "no norm in RetinaHead")
    return head


def model_yaml(config: dict[str, Any]) -> tuple[dict, dict]:
    """Our model YAML for a parsed MMDetection config, and the NMS settings of its test_cfg as `iou`, `max_det` and
    `nms_pre` (for val/predict)."""
    model = config.get("model")
    if not isinstance(model, dict):
        raise ConfigTextError("MMDetection config has no `model = dict(...)`: give the architecture as a model YAML")
    head_cfg, test_cfg = model.get("bbox_head") or {}, model.get("test_cfg") or config.get("test_cfg") or {}
    detector = HEADS.get(head_cfg.get("type")) or DETECTORS.get(model.get("type"))
    _check(detector is not None, "type", model.get("type"), "ATSS or RetinaNet with ATSSHead or RetinaHead")
    backbone, out_indices = _backbone(model.get("backbone") or {})
    neck = _neck(model.get("neck") or {}, out_indices)
    _check(head_cfg.get("in_channels", 256) == neck["out_channels"], "bbox_head.in_channels",
           head_cfg.get("in_channels"), f"the FPN's {neck['out_channels']} channels")
    yaml = {"detector": detector, "nc": head_cfg.get("num_classes", 80), "backbone": backbone, "neck": neck,
            "head": _head(head_cfg, detector, neck["num_outs"], test_cfg)}
    nms = test_cfg.get("nms") or {}
    test = {"iou": nms.get("iou_threshold", nms.get("iou_thr")), "max_det": test_cfg.get("max_per_img"),
            "nms_pre": test_cfg.get("nms_pre")}
    return yaml, {k: v for k, v in test.items() if v is not None}
