"""`build_model`: the detection model a model YAML describes, a YOLO architecture or a RetinaNet/ATSS baseline."""

from __future__ import annotations

from typing import Any

from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from umop_yolo.cfg import resolve_model
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.errors import UserInputError


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


def build_model(cfg: str | dict, nc: int | None = None, ch: int = 3, verbose: bool = True) -> DetectionModel:
    """Build the detection model a model YAML (path or dict) describes: a YOLO architecture, or with a top-level
    `detector: retinanet | atss` key the paper's ResNet + FPN baselines."""
    if not isinstance(cfg, dict):
        cfg = resolve_model(cfg)  # bare names of cfg/models/ (Ultralytics only knows its own YAMLs)
    spec = cfg if isinstance(cfg, dict) else yaml_model_load(cfg)
    if "detector" in spec:
        model = DenseDetectionModel(cfg, nc=nc, ch=ch, verbose=verbose)
        model.yaml["backbone"] = DenseBackboneSpec(model.yaml.get("backbone") or {})
        return model
    return UmopDetectionModel(cfg, nc=nc, ch=ch, verbose=verbose)
