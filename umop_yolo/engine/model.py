"""Detection models whose criterion is the UMOP loss, and the Model API that uses our trainer/validator."""

from __future__ import annotations

from typing import Any

from ultralytics.engine.model import Model
from ultralytics.nn.tasks import DetectionModel, yaml_model_load
from ultralytics.utils.loss import E2ELoss

from umop_yolo.cfg import resolve_model
from umop_yolo.engine.checkpoint import checkpoint_loading
from umop_yolo.engine.loss import LevelSplitDetectionLoss, PFLDetectionLoss
from umop_yolo.engine.predictor import CocoDetectionPredictor
from umop_yolo.engine.tta import predict_augment
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.errors import UserInputError


class UmopDetectionModel(DetectionModel):
    """An Ultralytics YOLO `DetectionModel` trained with per-level PFL when `args.umop` is true.

    The criterion lives on the model (not the trainer) because the EMA copy used for validation and Ultralytics'
    resume path both rebuild it with `init_criterion()`. With `umop=false` it is the stock loss, bit for bit, in a
    subclass that also records per-level statistics for the level diagnostics.
    """

    def init_criterion(self) -> Any:
        loss_fn = PFLDetectionLoss if getattr(self.args, "umop", True) else LevelSplitDetectionLoss
        if getattr(self.model[-1], "one2one_cv2", None) is not None:  # end-to-end heads (YOLO26, YOLOv10)
            return E2ELoss(self, loss_fn=loss_fn)
        return loss_fn(self)

    def _predict_augment(self, x: Any) -> Any:
        """`augment=true`: multi-scale + flip test-time augmentation for any head, merged later by NMS."""
        return predict_augment(self, x)


def build_model(cfg: str | dict, nc: int | None = None, ch: int = 3, verbose: bool = True) -> DetectionModel:
    """Build the detection model a model YAML (path or dict) describes: a YOLO architecture, or with a top-level
    `detector: retinanet | atss` key the paper's ResNet + FPN baselines."""
    if not isinstance(cfg, dict):
        cfg = resolve_model(cfg)  # bare names of cfg/models/ (Ultralytics only knows its own YAMLs)
    spec = cfg if isinstance(cfg, dict) else yaml_model_load(cfg)
    if "detector" in spec:
        from umop_yolo.engine.dense import DenseDetectionModel  # imports this module: keep it lazy

        return DenseDetectionModel(cfg, nc=nc, ch=ch, verbose=verbose)
    return UmopDetectionModel(cfg, nc=nc, ch=ch, verbose=verbose)


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

    def load(self, weights: Any = "yolo26n.pt") -> "UmopYOLO":
        """Transfer weights from a checkpoint (restricted loading unless trusted), as `Model.load`."""
        with checkpoint_loading(self.trust_checkpoint):
            return super().load(weights)

    @property
    def task_map(self) -> dict[str, dict[str, Any]]:
        from umop_yolo.engine.trainer import UmopTrainer

        return {
            "detect": {
                "model": build_model,
                "trainer": UmopTrainer,
                "validator": CocoDetectionValidator,
                "predictor": CocoDetectionPredictor,
            }
        }
