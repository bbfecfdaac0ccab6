"""The model YAML of a dense detector (RetinaNet, ATSS): defaults, key checks, file lookup.

    detector: retinanet | atss                                  # umop_yolo.nn.DETECTORS
    nc: 80
    backbone: {depth, groups, base_width, base_channels, frozen_stages, norm_eval, dcn_stages, pretrained}
          # umop_yolo.nn.ResNet
          or {yolo: yolov8n.yaml}   # the layers before the Detect of an Ultralytics model YAML (nn.YOLOBackbone)
    neck: {out_channels, num_outs, add_extra_convs, relu_before_extra_convs}   # umop_yolo.nn.FPN (ResNet)
       or {out_channels, num_outs}                                             # umop_yolo.nn.ChannelMapper (YOLO)
    head:
      feat_channels, stacked_convs, prior_prob, gn_groups (ATSS)
      anchors: {octave_base_scale, scales_per_octave, ratios}
      box_coder: {means, stds}
      assigner: {pos_iou_thr, neg_iou_thr, min_pos_iou} (RetinaNet) | {topk} (ATSS)
      loss: {box_weight} (+ centerness_weight, ATSS)
      test: {nms_pre, score_thr}

Every key but `detector` is optional; defaults are MMDetection's for that detector (see cfg/models/*.yaml).
`merged_config` fills them in and rejects unknown keys; `model_yaml_check` then checks the values as data and turns
the result into the typed `DenseConfig` the model is built from and keeps.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ultralytics.nn.tasks import yaml_model_load
from ultralytics.utils import YAML

from umop_yolo.cfg import MODELS_DIR, find_file, resolve_model
from umop_yolo.errors import UserInputError
from umop_yolo.nn.detectors import DETECTORS, DetectorSpec

BACKBONES: dict[str, dict[str, Any]] = {
    "resnet": {"depth": 50, "groups": 1, "base_width": 64, "frozen_stages": 1, "norm_eval": True, "dcn_stages": [],
               "pretrained": "imagenet", "base_channels": 64},
    "yolo": {"yolo": "yolov8n.yaml"},
}
NECKS: dict[str, dict[str, Any]] = {  # per backbone kind; FPN's add_extra_convs comes from the detector
    "resnet": {"out_channels": 256, "num_outs": 5, "relu_before_extra_convs": False},
    "yolo": {"out_channels": 256, "num_outs": 5},
}
TOP_KEYS = {"detector", "nc", "backbone", "neck", "head", "channels", "scale", "yaml_file"}  # + Ultralytics' own


def merged(defaults: dict, given: dict | None, where: str) -> dict:
    """`given` over `defaults`, recursively; unknown keys are an error naming their place in the YAML."""
    out = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            raise UserInputError(f"model YAML: unknown key '{where}.{key}' (valid: {', '.join(defaults)})")
        out[key] = merged(defaults[key], value, f"{where}.{key}") if isinstance(defaults[key], dict) else value
    return out


def backbone_kind(cfg: dict) -> str:
    """'yolo' for a backbone taken from an Ultralytics model YAML (`backbone: {yolo: ...}`), else 'resnet'."""
    return "yolo" if "yolo" in (cfg.get("backbone") or {}) else "resnet"


def merged_config(cfg: dict) -> dict:
    """The full model config of a dense-detector YAML dict as a dict, defaults filled in and keys checked."""
    detector = cfg.get("detector")
    if detector not in DETECTORS:
        raise UserInputError(f"model YAML: detector={detector!r} must be one of {', '.join(DETECTORS)}")
    unknown = set(cfg) - TOP_KEYS
    if unknown:
        raise UserInputError(f"model YAML: unknown top-level key(s) {sorted(unknown)} for detector '{detector}'")
    spec, kind = DETECTORS[detector], backbone_kind(cfg)
    neck = {**NECKS[kind], **({"add_extra_convs": spec.extra_convs} if kind == "resnet" else {})}
    return {**cfg, "backbone": merged(BACKBONES[kind], cfg.get("backbone"), "backbone"),
            "neck": merged(neck, cfg.get("neck"), "neck"),
            "head": merged(spec.defaults, cfg.get("head"), "head")}


@dataclass(frozen=True)
class DenseTest:
    """`head.test`: the eval decoding's per-level cap and score threshold (MMDetection's `test_cfg`).

    `nms_pre` is the cap of a forward that is given none: export and Ultralytics' own val/predict. umop's val and
    predict pass the `nms_pre` setting instead (`DenseDetectionModel.predict`)."""

    nms_pre: int
    score_thr: float


@dataclass(frozen=True)
class DenseConfig:
    """A dense-detector model YAML, defaults filled in, checked as data (`model_yaml_check.check_model_dict` makes it).

    `backbone`, `neck` and `head` are the YAML's sections (`head` without `test`), `yaml` the YAML as given (what the
    model keeps and checkpoints save; not compared)."""

    detector: str
    nc: int
    backbone: dict[str, Any]
    neck: dict[str, Any]
    head: dict[str, Any]
    test: DenseTest
    yaml: dict[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_merged(cls, merged: dict, yaml: dict) -> DenseConfig:
        """The typed form of `merged_config(yaml)`, once its values are checked."""
        head = {k: v for k, v in merged["head"].items() if k != "test"}
        return cls(merged["detector"], merged.get("nc", 80), merged["backbone"], merged["neck"], head,
                   DenseTest(**merged["head"]["test"]), copy.deepcopy(yaml))

    @property
    def spec(self) -> DetectorSpec:
        return DETECTORS[self.detector]

    @property
    def backbone_kind(self) -> str:
        return backbone_kind(self.yaml)

    def with_nc(self, nc: int) -> DenseConfig:
        """This config for `nc` classes (the YAML's `nc` too)."""
        return dataclasses.replace(self, nc=nc, yaml={**self.yaml, "nc": nc})

    def with_pretrained(self, pretrained: str | bool | None) -> DenseConfig:
        """This config with the ResNet backbone's `pretrained` (ImageNet weights) replaced, in the YAML too."""
        backbone = {**self.backbone, "pretrained": pretrained}
        yaml = {**self.yaml, "backbone": {**(self.yaml.get("backbone") or {}), "pretrained": pretrained}}
        return dataclasses.replace(self, backbone=backbone, yaml=yaml)


def load_model_yaml(cfg: str | Path | dict) -> dict:
    """A model YAML as a dict: a dict as given, a path, or a bare name in cfg/models."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    path = find_file(cfg, MODELS_DIR, "model")
    return {**YAML.load(path), "yaml_file": str(path)}


def yolo_model_dict(name: Any) -> dict:
    """The Ultralytics model dict `backbone.yolo` names (a file, a name in cfg/models, or one of Ultralytics' own such
    as yolov8n.yaml; the scale letter picks the width), checked to end in a detection layer with a list of inputs."""
    if not isinstance(name, (str, Path)) or not str(name).endswith((".yaml", ".yml")):
        raise UserInputError(f"model YAML: backbone.yolo={name!r} must name an Ultralytics model YAML (yolov8n.yaml)")
    try:
        spec = yaml_model_load(resolve_model(str(name)))
    except FileNotFoundError:
        raise UserInputError(f"model YAML: backbone.yolo '{name}' not found (cfg/models, Ultralytics' YAMLs)") from None
    head = spec.get("head")
    last = head[-1] if isinstance(head, list) and head else None
    if "detector" in spec or not (isinstance(last, list) and last and isinstance(last[0], list)):
        raise UserInputError(f"model YAML: backbone.yolo '{name}' is not a YOLO detection YAML (its last layer "
                             "must be a Detect with a list of inputs)")
    return spec
