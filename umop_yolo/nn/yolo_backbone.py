"""The backbone and neck of an Ultralytics YOLO model YAML (every layer before its Detect) as a feature extractor."""

from __future__ import annotations

import copy

import torch
from torch import Tensor
from ultralytics.nn.tasks import BaseModel, parse_model
from ultralytics.utils.torch_utils import initialize_weights

PROBE = 256  # side of the blank image that measures output strides and widths at build, as Ultralytics' stride probe


class YOLOBackbone(BaseModel):
    """Layers 0 .. n-2 of an Ultralytics detection model dict, built by Ultralytics' `parse_model`; forward returns
    the inputs of its last (Detect) layer: P3, P4, P5 for YOLOv8 / YOLO11.

    `out_channels` and `strides` are measured at build. BatchNorms get Ultralytics' eps and momentum
    (`initialize_weights`), so these layers train from scratch exactly as in the stock YOLO; `fuse()` and
    `is_fused()` are Ultralytics' own.
    """

    def __init__(self, spec: dict, ch: int = 3) -> None:
        super().__init__()
        *rows, detect = spec["head"]
        self.model, save = parse_model({**copy.deepcopy(spec), "head": rows}, ch=ch, verbose=False)
        n = len(self.model)
        self.out_indices = [j if j >= 0 else n + j for j in detect[0]]  # the Detect layer has index n
        self.save = sorted({*save, *self.out_indices})
        initialize_weights(self)
        training = self.training
        with torch.no_grad():
            feats = self.eval()(torch.zeros(1, ch, PROBE, PROBE))
        self.train(training)
        self.out_channels = [f.shape[1] for f in feats]
        self.strides = [PROBE // f.shape[-2] for f in feats]

    def forward(self, x: Tensor) -> list[Tensor]:
        y: list[Tensor | None] = []
        for m in self.model:
            if m.f != -1:  # inputs from earlier layers, as Ultralytics' `_predict_once`
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return [y[i] for i in self.out_indices]

    @property
    def fused(self) -> bool:
        return self.is_fused()

    def fuse(self) -> YOLOBackbone:
        """Fold every BatchNorm into its conv (inference only), quietly."""
        return super().fuse(verbose=False)
