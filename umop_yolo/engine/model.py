"""The YOLO detection model whose criterion is the UMOP loss."""

from __future__ import annotations

from functools import partial
from typing import Any

from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.loss import E2ELoss

from umop_yolo.engine.args_adapter import settings_from_args
from umop_yolo.engine.loss import LevelSplitDetectionLoss, PFLDetectionLoss
from umop_yolo.engine.needs_umop import reduce_needing_umop
from umop_yolo.engine.tta import predict_augment


class UmopDetectionModel(DetectionModel):
    """An Ultralytics YOLO `DetectionModel` trained with per-level PFL when `args.umop` is true.

    The criterion lives on the model (not the trainer) because the EMA copy used for validation and Ultralytics'
    resume path both rebuild it with `init_criterion()`. With `umop=false` it is the stock loss, bit for bit, in a
    subclass that also records per-level statistics for the level diagnostics.
    """

    def init_criterion(self) -> Any:
        settings = settings_from_args(self.args)
        loss_fn = partial(PFLDetectionLoss, pfl=settings.pfl) if settings.umop else LevelSplitDetectionLoss
        if getattr(self.model[-1], "one2one_cv2", None) is not None:  # end-to-end heads (YOLO26, YOLOv10)
            return E2ELoss(self, loss_fn=loss_fn)
        return loss_fn(self)

    def __reduce_ex__(self, protocol: Any) -> tuple:
        """Pickled so that, where umop_yolo is not installed, loading says in one line that it is needed instead of
        Ultralytics trying to pip-install it (`engine.needs_umop`). A YOLO head is saved as Ultralytics' own class
        instead (`engine.saving.saved_as_ultralytics`)."""
        return reduce_needing_umop(super().__reduce_ex__(protocol))

    def _predict_augment(self, x: Any) -> Any:
        """`augment=true`: multi-scale + flip test-time augmentation for any head, merged later by NMS."""
        return predict_augment(self, x)
