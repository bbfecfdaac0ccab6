"""Multi-scale + flip test-time augmentation for any detection head whose inference output is (B, 4+nc, N).

Ultralytics' `DetectionModel._predict_augment` drops "tails" assuming 3 levels with one anchor per cell; RetinaNet and
ATSS heads have 5 levels and up to 9 anchors per cell, so here every pass is kept whole and NMS does the merging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PAD_VALUE = 0.447  # ImageNet mean, as Ultralytics pads scaled TTA inputs


def _resize(x: torch.Tensor, scale: float, stride: int) -> tuple[torch.Tensor, float, float]:
    """Resize `x` by `scale`, pad right/bottom to a multiple of `stride`; return it and the true x/y scale factors."""
    if scale == 1.0:
        return x, 1.0, 1.0
    h, w = x.shape[-2:]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    ph, pw = math.ceil(nh / stride) * stride, math.ceil(nw / stride) * stride
    return F.pad(x, [0, pw - nw, 0, ph - nh], value=PAD_VALUE), nw / w, nh / h


def _boxes_to_input(y: torch.Tensor, sx: float, sy: float, flip: int | None, size: tuple[int, int]) -> torch.Tensor:
    """Map xywh pixel boxes of a resized (and flipped) pass back to the un-augmented input; scores are untouched."""
    h, w = size
    xc, yc, bw, bh, scores = y[:, :1] / sx, y[:, 1:2] / sy, y[:, 2:3] / sx, y[:, 3:4] / sy, y[:, 4:]
    if flip == 3:  # left-right
        xc = w - xc
    elif flip == 2:  # up-down
        yc = h - yc
    return torch.cat((xc, yc, bw, bh, scores), 1)


def predict_augment(
    model: nn.Module,
    x: torch.Tensor,
    scales: Sequence[float] = (1.0, 0.83, 0.67),
    flips: Sequence[int | None] = (None, 3),
    stride: int | None = None,
    **predict_args: Any,
) -> torch.Tensor:
    """Run `model.predict` (one plain forward, given `predict_args`) on every scale x flip of `x` and merge the passes
    for NMS.

    `flips` entries are tensor dims to flip (3 = left-right, 2 = up-down, None = none). Scaled inputs are padded to
    a multiple of `stride` (default: the model's largest stride). Each pass must return `y` or `(y, raw)` with
    `y = (B, 4+nc, N)` holding xywh pixel boxes and class scores; boxes are mapped back to `x`'s pixels and the
    passes concatenated along N, in scale-major order. Returns `y` only (NMS accepts it with or without `raw`).
    """
    stride = stride or int(torch.as_tensor(getattr(model, "stride", 32)).max())
    size = tuple(x.shape[-2:])
    outputs = []
    for scale in scales:
        for flip in flips:
            xi, sx, sy = _resize(x.flip(flip) if flip is not None else x, scale, stride)
            y = model.predict(xi, **predict_args)
            y = y[0] if isinstance(y, (tuple, list)) else y
            outputs.append(_boxes_to_input(y, sx, sy, flip, size))
    return torch.cat(outputs, -1)
