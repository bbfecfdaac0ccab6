"""Modulated deformable convolution (DCNv2, Zhu et al. 2019) on top of `torchvision.ops.deform_conv2d`."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """A 3x3 (or k x k) convolution whose sampling offsets and modulation masks are predicted from its input.

    `weight` (and `bias`) have the shapes of the `nn.Conv2d` it replaces, so ImageNet weights of that conv load into it
    unchanged. The offset/mask conv starts at zero: offsets 0 and masks 0.5 everywhere, as in MMCV's DCNv2.
    """

    def __init__(self, conv: nn.Conv2d, deform_groups: int = 1) -> None:
        super().__init__()
        k = conv.kernel_size
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.conv_offset = nn.Conv2d(
            conv.in_channels, deform_groups * 3 * k[0] * k[1], k, conv.stride, conv.padding, conv.dilation, bias=True
        )
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        dy_dx_m = self.conv_offset(x)
        n = dy_dx_m.shape[1] // 3
        offset, mask = dy_dx_m[:, : 2 * n], dy_dx_m[:, 2 * n :].sigmoid()
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)
