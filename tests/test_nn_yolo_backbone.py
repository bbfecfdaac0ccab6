"""YOLOBackbone (the layers of an Ultralytics YAML before its Detect) and the ChannelMapper neck."""

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from umop_yolo.errors import UserInputError
from umop_yolo.nn import ChannelMapper
from umop_yolo.nn.yolo_backbone import YOLOBackbone


@pytest.mark.parametrize("name", ["yolov8n.yaml", "yolo11n.yaml"])
def test_outputs_are_what_the_stock_detect_layer_receives(name):
    torch.manual_seed(0)
    stock = DetectionModel(name, nc=5, verbose=False).eval()
    torch.manual_seed(0)
    backbone = YOLOBackbone(yaml_model_load(name)).eval()
    assert backbone.out_channels == [64, 128, 256] and backbone.strides == [8, 16, 32]
    stock_state = stock.state_dict()
    for k, v in backbone.state_dict().items():  # same layers, same init (BatchNorm eps/momentum included)
        assert torch.equal(v, stock_state[k]), k
    received = []
    stock.model[-1].register_forward_pre_hook(lambda m, args: received.extend(args[0]))
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        stock(x)
        feats = backbone(x)
    assert len(feats) == len(received) == 3
    for got, want in zip(feats, received):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_fuse_folds_every_batchnorm_and_keeps_the_outputs():
    backbone = YOLOBackbone(yaml_model_load("yolov8n.yaml")).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = backbone(x)
        assert not backbone.fused
        backbone.fuse()
        after = backbone(x)
    assert backbone.fused and not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_channel_mapper_maps_widths_and_adds_p6_p7_from_the_last_input():
    neck = ChannelMapper([64, 128, 256], out_channels=32, num_outs=5)
    feats = [torch.rand(2, c, 40 // 2**i, 40 // 2**i) for i, c in enumerate([64, 128, 256])]
    outs = neck(feats)
    assert [o.shape[1:] for o in outs] == [(32, 40, 40), (32, 20, 20), (32, 10, 10), (32, 5, 5), (32, 3, 3)]
    torch.testing.assert_close(outs[3], neck.extra_convs[0](feats[-1]))  # P6 = conv(P5 input), P7 = conv(P6)
    torch.testing.assert_close(outs[4], neck.extra_convs[1](outs[3]))
    assert len(ChannelMapper([64, 128, 256], 32, num_outs=3).extra_convs) == 0
    with pytest.raises(UserInputError, match="num_outs=2"):
        ChannelMapper([64, 128, 256], 32, num_outs=2)
