"""ATSS head (Zhang et al. 2020): RetinaNet-like towers with GroupNorm, a per-level learnable scale on the box deltas
and a centerness branch on the regression tower."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from umop_yolo.nn.retina_head import conv_tower, normal_init_, prior_bias


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class ATSSHead(nn.Module):
    """Per level: class logits (B, A*nc, H, W), box deltas (B, A*4, H, W), centerness logits (B, A, H, W)."""

    def __init__(self, nc: int, num_levels: int = 5, num_anchors: int = 1, in_channels: int = 256,
                 feat_channels: int = 256, stacked_convs: int = 4, gn_groups: int = 32,
                 prior_prob: float = 0.01) -> None:
        super().__init__()
        self.cls_convs = conv_tower(in_channels, feat_channels, stacked_convs, gn_groups)
        self.reg_convs = conv_tower(in_channels, feat_channels, stacked_convs, gn_groups)
        self.atss_cls = nn.Conv2d(feat_channels, num_anchors * nc, 3, padding=1)
        self.atss_reg = nn.Conv2d(feat_channels, num_anchors * 4, 3, padding=1)
        self.atss_centerness = nn.Conv2d(feat_channels, num_anchors, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        normal_init_(self)
        nn.init.constant_(self.atss_cls.bias, prior_bias(prior_prob))

    def forward(self, feats: list[Tensor]) -> dict[str, list[Tensor]]:
        cls, reg, ctr = [], [], []
        for x, scale in zip(feats, self.scales):
            reg_feat = self.reg_convs(x)
            cls.append(self.atss_cls(self.cls_convs(x)))
            reg.append(scale(self.atss_reg(reg_feat)))
            ctr.append(self.atss_centerness(reg_feat))
        return {"cls_logits": cls, "bbox_deltas": reg, "centerness": ctr}
