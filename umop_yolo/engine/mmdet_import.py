"""MMDetection RetinaNet/ATSS checkpoints (.pth, 2.x and 3.x) as our dense models, for every mode.

* `model=file.pth`: the architecture comes from the config text the checkpoint keeps in `meta` (`mmdet_config`);
* `model=<model YAML> pretrained=file.pth` (Python: `UmopYOLO('<model YAML>').load('file.pth')`): the YAML's
  architecture, for checkpoints without a config (or one with no counterpart here) or to override it;
* the class names come from `meta` (`dataset_meta['classes']` in 3.x, `CLASSES` in 2.x), the class count from the
  classification conv, the NMS settings for val/predict (`iou`, `max_det`, `nms_pre`) from the config's `test_cfg`.

The file is read as data (`mmdet_read`); its tensors are renamed (`nn.mmdet_keys`) and must fill the model exactly,
or loading stops in one line naming the first tensor that does not fit.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ultralytics.utils import DEFAULT_CFG_DICT

from umop_yolo.engine.build import build_model, model_spec
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.dense_schema import DenseConfig
from umop_yolo.engine.mmdet_config import ConfigTextError, model_yaml, parse_config
from umop_yolo.engine.mmdet_read import class_names, config_text, read_checkpoint, state_dict_of
from umop_yolo.engine.model_yaml_check import check_model_dict
from umop_yolo.engine.run.safe_pickle import CheckpointError
from umop_yolo.errors import UserInputError
from umop_yolo.nn.backbone_weights import misfit
from umop_yolo.nn.mmdet_keys import HEAD_CLASSIFIERS, detector_of, strip_wrappers, to_dense_keys

SUFFIX = ".pth"


def is_mmdet_file(name: Any) -> bool:
    """Whether `model=`/`pretrained=` names an MMDetection checkpoint (a .pth file; our own are .pt)."""
    return isinstance(name, (str, Path)) and str(name).lower().endswith(SUFFIX)


def _test_settings(text: str | None, path: Path) -> dict:
    """The config's NMS settings when it has one that reads as one of our architectures, else none."""
    try:
        return model_yaml(parse_config(text, str(path)))[1] if text else {}
    except ConfigTextError:  # the model YAML given instead describes the architecture
        return {}


def _architecture(ckpt: dict, path: Path, architecture: str | dict | None) -> tuple[dict, dict]:
    """The model YAML dict and the test settings: from `architecture` if given, else from the checkpoint's config."""
    if architecture is not None:
        yaml = copy.deepcopy(model_spec(architecture if isinstance(architecture, dict) else str(architecture)))
        if "detector" not in yaml:
            name = architecture if isinstance(architecture, (str, Path)) else yaml.get("yaml_file", "the model")
            raise UserInputError(f"model '{Path(name).name}' is not a RetinaNet/ATSS model YAML, which an MMDetection "
                                 f"checkpoint ('{path.name}') needs")
        yaml = {**yaml, "backbone": {**(yaml.get("backbone") or {}), "pretrained": None}}
        return yaml, _test_settings(config_text(ckpt), path)
    text = config_text(ckpt)
    if text is None:
        raise UserInputError(f"checkpoint '{path}' keeps no MMDetection config in its meta: give the architecture "
                             f"as a model YAML, model=atss_r50_fpn.yaml pretrained={path.name}")
    return model_yaml(parse_config(text, str(path)))


def _class_count(state: dict, config: DenseConfig, detector: str) -> int:
    anchors = config.head["anchors"]
    per_location = len(anchors["ratios"]) * anchors["scales_per_octave"]
    return state[f"bbox_head.{HEAD_CLASSIFIERS[detector]}.weight"].shape[0] // per_location


def mmdet_model(file: str | Path, architecture: str | dict | None = None,
                verbose: bool = False) -> tuple[DenseDetectionModel, dict]:
    """The dense model an MMDetection checkpoint holds, with all its weights, and an Ultralytics-style checkpoint dict
    around it (`model`, `train_args` holding the config's NMS settings)."""
    path = Path(file)
    ckpt = read_checkpoint(path)
    state = strip_wrappers(state_dict_of(ckpt, path))
    detector = detector_of(state)
    if detector is None:
        raise CheckpointError(f"checkpoint '{path}' holds no MMDetection ATSS or RetinaNet head (bbox_head.atss_cls / "
                              f"bbox_head.retina_cls); for ResNet backbone weights use backbone_weights={file}")
    yaml, test = _architecture(ckpt, path, architecture)
    if yaml["detector"] != detector:
        raise UserInputError(f"checkpoint '{path}' holds a {detector} head but the architecture is a "
                             f"{yaml['detector']}")
    config = check_model_dict(yaml, "model YAML")
    nc = _class_count(state, config, detector)
    model = build_model(config.with_nc(nc), nc=nc, verbose=verbose, backbone_weights=False)
    ours = to_dense_keys(state)
    if problem := misfit(ours, model.state_dict()):
        theirs = dict(zip(ours, state))
        first = next((k for k in ours if k in problem), None)
        where = f" (MMDetection key {theirs[first]})" if first and theirs[first] != first else ""
        raise CheckpointError(f"checkpoint '{path}' does not fit its {detector} architecture: {problem}{where}")
    model.load_state_dict(ours, strict=False)  # what misfit lets a file lack: BatchNorm counters
    names = class_names(ckpt)
    model.names = dict(enumerate(names if names and len(names) == nc else map(str, range(nc))))
    train_args = {**test, "model": str(path), "task": "detect"}
    model.args = {**DEFAULT_CFG_DICT, **train_args}
    model.pt_path, model.task = str(path), "detect"
    return model.eval(), {"model": model, "train_args": train_args}


def mmdet_start(model: Any, pretrained: Any) -> DenseDetectionModel | None:
    """The model an MMDetection checkpoint gives a training (`model=file.pth`, or `model=<YAML> pretrained=file.pth`),
    or None when neither names one."""
    if is_mmdet_file(model):
        return mmdet_model(model)[0]
    if is_mmdet_file(pretrained) and not str(model).endswith(".pt"):  # a .pt brings its own model (Ultralytics)
        return mmdet_model(pretrained, architecture=str(model) if model else None)[0]
    return None
