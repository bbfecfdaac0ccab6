"""`UmopYOLO`: the `YOLO`-like Model API (train/val/predict/export) on our model builder, trainer and validator."""

from __future__ import annotations

from typing import Any

from ultralytics.engine.model import Model

from umop_yolo.engine.build import build_model
from umop_yolo.engine.checkpoint import checkpoint_loading
from umop_yolo.engine.predictor import CocoDetectionPredictor
from umop_yolo.engine.trainer import UmopTrainer
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.errors import UserInputError


class UmopYOLO(Model):
    """`YOLO`-like Model API (train/val/predict/export) that builds and runs our model, trainer and validator.

    A `.pt` is loaded with the restricted unpickler (`umop_yolo.engine.checkpoint`) unless `trust_checkpoint=True`,
    which later `train()`/`val()`/... calls inherit.
    """

    def __init__(
        self, model: str = "yolov8n.yaml", task: str = "detect", verbose: bool = False, trust_checkpoint: bool = False
    ) -> None:
        if not isinstance(trust_checkpoint, bool):
            raise UserInputError(f"trust_checkpoint={trust_checkpoint!r} must be true or false")
        with checkpoint_loading(trust_checkpoint):
            super().__init__(model=model, task=task, verbose=verbose)
        self.trust_checkpoint = trust_checkpoint
        if trust_checkpoint:
            self.overrides["trust_checkpoint"] = True

    def load(self, weights: Any = "yolo26n.pt") -> UmopYOLO:
        """Transfer weights from a checkpoint (restricted loading unless trusted), as `Model.load`."""
        with checkpoint_loading(self.trust_checkpoint):
            return super().load(weights)

    @property
    def task_map(self) -> dict[str, dict[str, Any]]:
        return {
            "detect": {
                "model": build_model,
                "trainer": UmopTrainer,
                "validator": CocoDetectionValidator,
                "predictor": CocoDetectionPredictor,
            }
        }
