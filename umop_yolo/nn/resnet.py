"""ResNet / ResNeXt backbones for RetinaNet and ATSS, set up as MMDetection does (`style='pytorch'`).

* built by torchvision's constructors with `weights=None`; ImageNet weights come only from a local file or the torch
  hub cache (never downloaded): `pretrained` is a path, or `imagenet` (torchvision's IMAGENET1K_V1, which is what
  MMDetection's `torchvision://resnet50` means) or any torchvision weights name such as `IMAGENET1K_V2`; see
  `umop_yolo.nn.backbone_weights`. A name not in the hub cache leaves random init here (a model built to inspect or
  export); `check_pretrained` is the strict check a training runs first;
* `frozen_stages`: the stem and stages 1..frozen_stages are frozen (their tensors become buffers, so no trainer can
  unfreeze them, and their BatchNorms stay in eval mode); -1 freezes nothing;
* `norm_eval`: every BatchNorm keeps its ImageNet statistics (eval mode), its affine weights still train;
* `dcn_stages`: 3x3 convs of these stages (2, 3, 4 = C3, C4, C5) become modulated deformable convs (DCNv2);
* `base_channels`: width of the stem and of stage 1 (MMDetection's `base_channels`, 64); each later stage doubles it.
  Below 64 the model is a small one for tests (no ImageNet weights have that shape);
* input: Ultralytics' RGB images in [0, 1]; the ImageNet mean/std normalisation happens here.

`weights_file` records the file the ImageNet weights came from (None: random init), for the caller to report.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from umop_yolo.errors import UserInputError
from umop_yolo.nn import backbone_weights
from umop_yolo.nn.dcn import ModulatedDeformConv2d

# (depth, groups, base_width) -> (torchvision constructor, its weights enum)
ARCHS = {
    (18, 1, 64): ("resnet18", "ResNet18_Weights"),
    (50, 1, 64): ("resnet50", "ResNet50_Weights"),
    (101, 1, 64): ("resnet101", "ResNet101_Weights"),
    (101, 64, 4): ("resnext101_64x4d", "ResNeXt101_64X4D_Weights"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ("layer1", "layer2", "layer3", "layer4")


def resnet_arch(depth: int = 50, groups: int = 1, base_width: int = 64) -> tuple[str, str]:
    """The torchvision constructor and weights enum of a ResNet/ResNeXt, or one line naming the supported ones."""
    key = (depth, groups, base_width if groups > 1 else 64)
    if key not in ARCHS:
        raise UserInputError(f"unsupported backbone depth={depth} groups={groups} base_width={base_width}; "
                             f"choose one of {sorted(ARCHS)} (depth, groups, base_width)")
    return ARCHS[key]


def check_pretrained(settings: dict[str, Any]) -> None:
    """Raise one line unless a `ResNet(**settings)` finds its `pretrained` weights and they fit it: a torchvision name
    must be in the torch hub cache (the constructor would start from random init). Nothing is built in memory (the
    model for the shapes lives on the meta device)."""
    arch, weights_enum = resnet_arch(**{k: settings[k] for k in ("depth", "groups", "base_width") if k in settings})
    pretrained = settings.get("pretrained")
    file = backbone_weights.weights_file(pretrained, weights_enum)
    if file is None:
        if pretrained:
            raise UserInputError(backbone_weights.missing_imagenet(str(pretrained), arch, weights_enum))
        return
    with torch.device("meta"):
        model = ResNet(**{**settings, "pretrained": None})
    backbone_weights.fitting_state_dict(file, model, arch, [a for a, _ in ARCHS.values()])


def freeze_(module: nn.Module) -> None:
    """Turn every parameter of `module` into a buffer of the same name (state-dict keys are unchanged)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                del m._parameters[name]
                m.register_buffer(name, p.detach())


def narrow_(net: torchvision.models.ResNet, base_channels: int) -> None:
    """Rebuild a torchvision ResNet's stem and stages at `base_channels` (stage i: base_channels * 2^i planes), with
    torchvision's initialisation."""
    if not isinstance(base_channels, int) or base_channels < 1:
        raise UserInputError(f"backbone base_channels={base_channels!r} must be a positive integer")
    block = type(net.layer1[0])
    net.inplanes = base_channels
    net.conv1 = nn.Conv2d(3, base_channels, 7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(base_channels)
    for i, stage in enumerate(STAGES):
        stride = 1 if i == 0 else 2
        setattr(net, stage, net._make_layer(block, base_channels * 2**i, len(getattr(net, stage)), stride=stride))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """ResNet-18/50/101 or ResNeXt-101-64x4d returning the C3, C4, C5 feature maps (strides 8, 16, 32).

    Module names match torchvision's (`conv1`, `bn1`, `layer1`...), so torchvision checkpoints load as they are.
    """

    def __init__(
        self,
        depth: int = 50,
        groups: int = 1,
        base_width: int = 64,
        frozen_stages: int = 1,
        norm_eval: bool = True,
        dcn_stages: tuple[int, ...] | list[int] = (),
        pretrained: str | None = "imagenet",
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        arch, weights_enum = resnet_arch(depth, groups, base_width)
        net = getattr(torchvision.models, arch)(weights=None)
        if base_channels != 64:
            narrow_(net, base_channels)
        for name in ("conv1", "bn1", "relu", "maxpool", *STAGES):
            setattr(self, name, getattr(net, name))
        block = self.layer1[0]
        self.out_channels = [getattr(self, s)[-1].bn2.num_features if isinstance(block, BasicBlock)
                             else getattr(self, s)[-1].bn3.num_features for s in STAGES[1:]]
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for stage in dcn_stages:
            self._add_dcn(stage)
        self.arch = arch
        self.weights_file = self._load_pretrained(pretrained, arch, weights_enum)
        for m in self._frozen_modules():
            freeze_(m)

    def _add_dcn(self, stage: int) -> None:
        if stage not in (2, 3, 4):
            raise UserInputError(f"dcn_stages takes 2, 3, 4 (C3-C5), got {stage}")
        for block in getattr(self, STAGES[stage - 1]):
            if not isinstance(block, Bottleneck):
                raise UserInputError("DCN needs Bottleneck blocks (ResNet-50 and deeper)")
            block.conv2 = ModulatedDeformConv2d(block.conv2)

    def _load_pretrained(self, pretrained: str | None, arch: str, weights_enum: str) -> str | None:
        file = backbone_weights.weights_file(pretrained, weights_enum)
        if file is None:
            return None
        state = backbone_weights.fitting_state_dict(file, self, arch, [a for a, _ in ARCHS.values()])
        self.load_state_dict(state, strict=False)
        return str(file)

    def _frozen_modules(self) -> list[nn.Module]:
        stem = [self.conv1, self.bn1] if self.frozen_stages >= 0 else []
        return stem + [getattr(self, STAGES[i]) for i in range(max(self.frozen_stages, 0))]

    def train(self, mode: bool = True) -> ResNet:
        """Frozen stages, and every BatchNorm when `norm_eval`, stay in eval mode (MMDetection's ResNet.train)."""
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eval()
        return self

    @property
    def fused(self) -> bool:
        return not any(isinstance(m, nn.BatchNorm2d) for m in self.modules())

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold every BatchNorm into the conv before it, for inference (BN statistics are frozen anyway)."""
        for owner, conv_name, bn_name in self._conv_bn_pairs():
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            weight = conv.weight * scale.view(-1, 1, 1, 1)
            for name, value in (("weight", weight), ("bias", bias)):  # frozen tensors stay buffers
                if name in conv._buffers:
                    conv._buffers[name] = value
                else:
                    setattr(conv, name, nn.Parameter(value, requires_grad=False))
            setattr(owner, bn_name, nn.Identity())

    def _conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        pairs = [(self, "conv1", "bn1")]
        for stage in STAGES:
            for block in getattr(self, stage):
                pairs += [(block, f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(block, f"bn{i}")]
                if block.downsample is not None:
                    pairs.append((block.downsample, "0", "1"))
        return [p for p in pairs if isinstance(getattr(p[0], p[2]), nn.BatchNorm2d)]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]
