"""Feature pyramid network (Lin et al. 2017): C3-C5 -> P3-P5, plus P6/P7 by stride-2 3x3 convs."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from umop_yolo.errors import UserInputError

EXTRA_SOURCES = ("on_input", "on_output")



def extra_level_convs(first_channels: int, out_channels: int, count: int) -> nn.ModuleList:
    """The stride-2 3x3 convs that add the coarser levels (P6, P7): the first takes `first_channels`, each next one the
    previous extra level."""
    return nn.ModuleList(
        nn.Conv2d(first_channels if i == 0 else out_channels, out_channels, 3, stride=2, padding=1)
        for i in range(count)
    )


def xavier_init_convs(module: nn.Module) -> None:
    """MMDetection's neck init: xavier-uniform weights and zero biases for every conv."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

class FPN(nn.Module):
    """MMDetection's FPN with `start_level=1` (inputs C3, C4, C5).

    Args:
        in_channels: channels of C3, C4, C5.
        out_channels: channels of every output level (256).
        num_outs: number of outputs; levels past P5 come from stride-2 3x3 convs.
        add_extra_convs: P6 from C5 ('on_input', RetinaNet) or from the P5 output ('on_output', ATSS).
        relu_before_extra_convs: ReLU before each extra conv. MMDetection's RetinaNet/ATSS configs leave it off
            (P7 = conv(P6)); Detectron/torchvision apply it (P7 = conv(relu(P6))).
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int = 256,
        num_outs: int = 5,
        add_extra_convs: str = "on_input",
        relu_before_extra_convs: bool = False,
    ) -> None:
        super().__init__()
        if add_extra_convs not in EXTRA_SOURCES:
            raise UserInputError(f"add_extra_convs={add_extra_convs!r} must be one of {EXTRA_SOURCES}")
        if num_outs < len(in_channels):
            raise UserInputError(f"num_outs={num_outs} < {len(in_channels)} inputs")
        self.add_extra_convs, self.relu_before_extra_convs = add_extra_convs, relu_before_extra_convs
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        first = in_channels[-1] if add_extra_convs == "on_input" else out_channels
        self.extra_convs = extra_level_convs(first, out_channels, num_outs - len(in_channels))
        xavier_init_convs(self)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: nearest upsampling to the finer map's size
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        x = feats[-1] if self.add_extra_convs == "on_input" else outs[-1]
        for i, conv in enumerate(self.extra_convs):
            if i > 0 and self.relu_before_extra_convs:
                x = F.relu(x)
            x = conv(x)
            outs.append(x)
        return outs
