"""ResNet (frozen stages, norm_eval, local ImageNet weights, BN folding), DCNv2 and FPN."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from umop_yolo.errors import UserInputError
from umop_yolo.nn import FPN, ResNet
from umop_yolo.nn.dcn import ModulatedDeformConv2d


def test_frozen_stages_are_buffers_and_batchnorms_keep_their_statistics():
    net = ResNet(depth=18, frozen_stages=1, norm_eval=True, pretrained=None)
    names = [n for n, _ in net.named_parameters()]
    assert names and not any(n.startswith(("conv1", "bn1", "layer1")) for n in names)
    assert "layer1.0.conv1.weight" in dict(net.named_buffers())  # same key as torchvision's: checkpoints load
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    net.train()
    net(torch.rand(2, 3, 64, 64)).pop().sum().backward()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in stats.items())
    assert net.layer2[0].bn1.weight.grad is not None  # affine weights of stages 2-4 still train


@pytest.mark.parametrize("depth", [18, 50])
def test_base_channels_narrows_every_stage_as_mmdetection(depth):
    net = ResNet(depth=depth, base_channels=8, frozen_stages=1, pretrained=None)
    expansion = 1 if depth == 18 else 4
    assert net.conv1.out_channels == 8 and net.out_channels == [16 * expansion, 32 * expansion, 64 * expansion]
    assert [c.shape[1] for c in net(torch.rand(1, 3, 64, 96))] == net.out_channels
    assert "layer1.0.conv1.weight" in dict(net.named_buffers())  # stage 1 still frozen
    with pytest.raises(UserInputError, match="base_channels"):
        ResNet(depth=18, base_channels=0, pretrained=None)


def test_unfrozen_backbone_updates_batchnorm_statistics():
    net = ResNet(depth=18, frozen_stages=-1, norm_eval=False, pretrained=None).train()
    before = net.bn1.running_mean.clone()
    net(torch.rand(2, 3, 64, 64))
    assert not torch.equal(before, net.bn1.running_mean)


def test_imagenet_weights_from_a_file_or_the_hub_cache_never_downloaded(tmp_path, monkeypatch):
    reference = torchvision.models.resnet18(weights=None)
    file = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), file)
    net = ResNet(depth=18, pretrained=str(file))
    assert net.weights_file == str(file)
    torch.testing.assert_close(net.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert ResNet(depth=18, pretrained="imagenet").weights_file is None  # not cached: random init, no download
    cached = tmp_path / "hub" / "checkpoints" / Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    assert ResNet(depth=18, pretrained="imagenet").weights_file == str(cached)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ResNet(depth=18, pretrained=str(tmp_path / "missing.pth"))


def test_fuse_folds_batchnorm_without_changing_outputs():
    net = ResNet(depth=18, frozen_stages=1, pretrained=None)
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics
            m.running_mean.uniform_(-1, 1, generator=g)
            m.running_var.uniform_(0.5, 2, generator=g)
    x = torch.rand(1, 3, 64, 64)
    expected = net.eval()(x)
    net.fuse()
    assert net.fused
    for a, b in zip(net(x), expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_dcn_starts_as_half_the_plain_conv_and_only_fits_bottlenecks():
    conv = nn.Conv2d(8, 4, 3, padding=1, bias=False)
    x = torch.rand(1, 8, 9, 9)
    torch.testing.assert_close(ModulatedDeformConv2d(conv)(x), 0.5 * conv(x))  # offsets 0, masks sigmoid(0)
    net = ResNet(depth=50, dcn_stages=[2, 3, 4], pretrained=None)
    assert isinstance(net.layer2[0].conv2, ModulatedDeformConv2d) and isinstance(net.layer1[0].conv2, nn.Conv2d)
    with pytest.raises(ValueError, match="Bottleneck"):
        ResNet(depth=18, dcn_stages=[3], pretrained=None)


@pytest.mark.parametrize("extra, first_in", [("on_input", 512), ("on_output", 32)])
def test_fpn_levels_and_extra_conv_source(extra, first_in):
    fpn = FPN([128, 256, 512], out_channels=32, num_outs=5, add_extra_convs=extra)
    assert fpn.extra_convs[0].in_channels == first_in
    feats = [torch.rand(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([128, 256, 512])]
    assert [tuple(p.shape[1:]) for p in fpn(feats)] == [(32, 32, 32), (32, 16, 16), (32, 8, 8), (32, 4, 4), (32, 2, 2)]
