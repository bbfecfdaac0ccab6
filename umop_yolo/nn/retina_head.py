"""RetinaNet head (Lin et al. 2017): two towers of 4 conv3x3-ReLU shared across levels, no normalisation."""

from __future__ import annotations

import math

from torch import Tensor, nn

from umop_yolo.errors import UserInputError


def prior_bias(prior_prob: float) -> float:
    """Classifier bias so that every anchor starts at probability `prior_prob` (0.01: focal loss's init)."""
    return -math.log((1 - prior_prob) / prior_prob)


def conv_tower(in_channels: int, channels: int, n: int, gn_groups: int = 0) -> nn.Sequential:
    """n x (conv3x3 -> [GroupNorm] -> ReLU); convs have a bias only without a norm."""
    if gn_groups and channels % gn_groups:
        raise UserInputError(f"head gn_groups={gn_groups} must divide feat_channels={channels}")
    layers = []
    for i in range(n):
        layers.append(nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=not gn_groups))
        if gn_groups:
            layers.append(nn.GroupNorm(gn_groups, channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def normal_init_(module: nn.Module, std: float = 0.01) -> None:
    """Conv weights ~ N(0, std), biases 0 (MMDetection's normal_init for dense heads)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class RetinaHead(nn.Module):
    """Per level: class logits (B, A*nc, H, W) and box deltas (B, A*4, H, W), A anchors per location."""

    def __init__(self, nc: int, num_anchors: int = 9, in_channels: int = 256, feat_channels: int = 256,
                 stacked_convs: int = 4, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.cls_convs = conv_tower(in_channels, feat_channels, stacked_convs)
        self.reg_convs = conv_tower(in_channels, feat_channels, stacked_convs)
        self.retina_cls = nn.Conv2d(feat_channels, num_anchors * nc, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat_channels, num_anchors * 4, 3, padding=1)
        normal_init_(self)
        nn.init.constant_(self.retina_cls.bias, prior_bias(prior_prob))

    def forward(self, feats: list[Tensor]) -> dict[str, list[Tensor]]:
        return {
            "cls_logits": [self.retina_cls(self.cls_convs(x)) for x in feats],
            "bbox_deltas": [self.retina_reg(self.reg_convs(x)) for x in feats],
        }
