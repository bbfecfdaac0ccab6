"""`build_model`: the detection model a model YAML describes, a YOLO architecture or a RetinaNet/ATSS baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from umop_yolo.cfg import resolve_model
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.dense_schema import DenseConfig, backbone_kind
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.model_yaml_check import check_model_dict
from umop_yolo.errors import UserInputError
from umop_yolo.nn.resnet import check_pretrained


class DenseBackboneSpec(dict):
    """The `backbone:` section of a RetinaNet/ATSS model YAML, as a dense model keeps it.

    Ultralytics' own trainer (`yolo train model=atss.pt`) rebuilds a checkpoint's model with its `DetectionModel`,
    which reads `yaml["backbone"][0]` as a YOLO layer row: that lookup stops with one line instead of `KeyError: 0`.
    Pickled as a call with a plain dict, which the checkpoint allowlist permits.
    """

    def __missing__(self, key: Any) -> Any:
        if isinstance(key, int):
            raise UserInputError("this is a umop_yolo RetinaNet/ATSS model, which Ultralytics' YOLO trainer cannot "
                                 "build: train it with `umop train model=...` (yolo val/predict/export work)")
        raise KeyError(key)

    def __reduce__(self) -> tuple:
        return type(self), (dict(self),)


def model_spec(cfg: str | dict) -> dict:
    """The model YAML (path, bare name of cfg/models/, one of Ultralytics' YAMLs, or a dict) as a dict."""
    return cfg if isinstance(cfg, dict) else yaml_model_load(resolve_model(cfg))


def has_resnet(spec: dict) -> bool:
    """Whether the model is a RetinaNet/ATSS on a ResNet backbone, the one kind with ImageNet backbone weights."""
    return "detector" in spec and backbone_kind(spec) == "resnet"


def build_model(cfg: str | dict | DenseConfig, nc: int | None = None, ch: int = 3, verbose: bool = True,
                backbone_weights: str | bool | None = None) -> DetectionModel:
    """Build the detection model a model YAML (path or dict) describes: a YOLO architecture, or with a top-level
    `detector: retinanet | atss` key the paper's ResNet + FPN baselines (or a RetinaNet/ATSS config already checked).

    The YAML is read and checked as data once (`check_model_dict`), and a RetinaNet/ATSS model is built from the typed
    config that check gives. `backbone_weights` replaces a ResNet backbone's `pretrained` (false: random init; None:
    the YAML's). Once built, the model's YAML says `pretrained: null` and its backbone keeps only the file's name: the
    weights are in the model, so a model rebuilt from a checkpoint's YAML never reads ImageNet weights again, and no
    path of this machine travels in a checkpoint.
    """
    if isinstance(cfg, DenseConfig):
        config = cfg
    else:
        if not isinstance(cfg, dict):
            cfg = resolve_model(cfg)  # bare names of cfg/models/ (Ultralytics only knows its own YAMLs)
        config = check_model_dict(model_spec(cfg), "model YAML" if isinstance(cfg, dict) else f"model '{cfg}'")
        if config is None:  # checked as data before any layer
            return UmopDetectionModel(cfg, nc=nc, ch=ch, verbose=verbose)
    resnet = config.backbone_kind == "resnet"
    if backbone_weights is not None and resnet:
        config = config.with_pretrained(backbone_weights)
    model = DenseDetectionModel(config, nc=nc, ch=ch, verbose=verbose)
    backbone = model.yaml.get("backbone") or {}
    if resnet:
        backbone = {**backbone, "pretrained": None}
        model.model[0].weights_file = model.model[0].weights_file and Path(model.model[0].weights_file).name
    model.yaml["backbone"] = DenseBackboneSpec(backbone)
    return model


def check_weights_args(model: Any, backbone_weights: str | bool | None, pretrained: Any) -> None:
    """Before a training run starts: the weights it will read exist and fit the model, or one line.

    `pretrained: imagenet` (or another torchvision name) must be in the torch hub cache: a training never starts from
    random init for want of a file. A checkpoint (`model=*.pt`, or Ultralytics' `pretrained=*.pt`, which takes only
    that: anything else would fail after the run directory exists) brings its own weights, and no ImageNet file is
    read; `backbone_weights` applies to a ResNet backbone built from a model YAML alone.
    """
    if isinstance(pretrained, (str, Path)) and not str(pretrained).endswith((".pt", ".pth")):
        raise UserInputError(f"pretrained={pretrained} takes a whole-model checkpoint (Ultralytics' key): ours (.pt) "
                             "or an MMDetection RetinaNet/ATSS (.pth); for ResNet backbone weights (torchvision or "
                             f"mmcv) use backbone_weights={pretrained}")
    if not model:
        return
    if str(model).endswith((".pt", ".pth")):
        elsewhere = f"model={model} is a checkpoint with its own weights"
    elif isinstance(pretrained, (str, Path)):
        elsewhere = f"pretrained={pretrained} brings all weights"
    elif not has_resnet(spec := model_spec(model)):
        elsewhere = f"model={model} has no ResNet backbone"
    else:
        backbone = check_model_dict(spec, f"model '{model}'").backbone
        return check_pretrained({**backbone, **({} if backbone_weights is None else {"pretrained": backbone_weights})})
    if backbone_weights is not None:
        raise UserInputError(f"backbone_weights={backbone_weights} applies to the ResNet backbone of a RetinaNet/ATSS "
                             f"model YAML; {elsewhere}")
