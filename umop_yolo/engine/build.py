"""`build_model`: the detection model a model YAML describes, a YOLO architecture or a RetinaNet/ATSS baseline."""

from __future__ import annotations

from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from umop_yolo.cfg import resolve_model
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.model import UmopDetectionModel


def build_model(cfg: str | dict, nc: int | None = None, ch: int = 3, verbose: bool = True) -> DetectionModel:
    """Build the detection model a model YAML (path or dict) describes: a YOLO architecture, or with a top-level
    `detector: retinanet | atss` key the paper's ResNet + FPN baselines."""
    if not isinstance(cfg, dict):
        cfg = resolve_model(cfg)  # bare names of cfg/models/ (Ultralytics only knows its own YAMLs)
    spec = cfg if isinstance(cfg, dict) else yaml_model_load(cfg)
    if "detector" in spec:
        return DenseDetectionModel(cfg, nc=nc, ch=ch, verbose=verbose)
    return UmopDetectionModel(cfg, nc=nc, ch=ch, verbose=verbose)
