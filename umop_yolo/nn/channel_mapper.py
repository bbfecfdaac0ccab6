"""MMDetection's ChannelMapper neck: feature maps of different widths onto the one width a shared head needs."""

from __future__ import annotations

from torch import Tensor, nn

from umop_yolo.errors import UserInputError
from umop_yolo.nn.fpn import extra_level_convs, xavier_init_convs


class ChannelMapper(nn.Module):
    """Every input level to `out_channels` by a 1x1 conv; `num_outs - len(in_channels)` extra levels (P6, P7) by
    stride-2 3x3 convs, the first on the last input (as FPN's 'on_input'), each next one on the previous extra level.

    It sits on a neck that already mixes the levels (the PAN of a YOLO model), so unlike FPN it has no top-down path.
    Convs have biases and no norm or activation, as FPN's lateral and extra convs (xavier-uniform init).
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256, num_outs: int = 5) -> None:
        super().__init__()
        if num_outs < len(in_channels):
            raise UserInputError(f"neck num_outs={num_outs} < {len(in_channels)} backbone outputs")
        self.convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.extra_convs = extra_level_convs(in_channels[-1], out_channels, num_outs - len(in_channels))
        xavier_init_convs(self)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        outs = [conv(x) for conv, x in zip(self.convs, feats)]
        x = feats[-1]
        for conv in self.extra_convs:
            x = conv(x)
            outs.append(x)
        return outs
