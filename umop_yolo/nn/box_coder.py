"""Delta-xywh box coding (R-CNN style), as MMDetection's DeltaXYWHBBoxCoder with target means and stds."""

from __future__ import annotations

import math

import torch
from torch import Tensor

MAX_RATIO = abs(math.log(16 / 1000))  # largest |dw|, |dh| decoded: a box grows or shrinks at most ~62x


class DeltaXYWHBoxCoder:
    """encode(anchors, boxes) -> deltas; decode(anchors, deltas) -> boxes. Boxes xyxy, any matching leading shape.

    deltas = ((gx - ax) / aw, (gy - ay) / ah, log(gw / aw), log(gh / ah)), then (d - means) / stds.
    """

    def __init__(self, means: tuple[float, ...] | list[float] = (0.0, 0.0, 0.0, 0.0),
                 stds: tuple[float, ...] | list[float] = (1.0, 1.0, 1.0, 1.0)) -> None:
        self.means, self.stds = torch.tensor(means, dtype=torch.float32), torch.tensor(stds, dtype=torch.float32)

    def encode(self, anchors: Tensor, boxes: Tensor, eps: float = 1e-6) -> Tensor:
        axy, awh = (anchors[..., :2] + anchors[..., 2:]) / 2, (anchors[..., 2:] - anchors[..., :2]).clamp_min(eps)
        gxy, gwh = (boxes[..., :2] + boxes[..., 2:]) / 2, (boxes[..., 2:] - boxes[..., :2]).clamp_min(eps)
        deltas = torch.cat([(gxy - axy) / awh, (gwh / awh).log()], -1)
        return (deltas - self.means.to(deltas)) / self.stds.to(deltas)

    def decode(self, anchors: Tensor, deltas: Tensor) -> Tensor:
        deltas = deltas.float() * self.stds.to(deltas.device) + self.means.to(deltas.device)
        axy, awh = (anchors[..., :2] + anchors[..., 2:]) / 2, anchors[..., 2:] - anchors[..., :2]
        xy = axy + deltas[..., :2] * awh
        wh = awh * deltas[..., 2:].clamp(-MAX_RATIO, MAX_RATIO).exp()
        return torch.cat([xy - wh / 2, xy + wh / 2], -1)
