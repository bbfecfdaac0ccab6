"""Plain-PyTorch building blocks of the RetinaNet and ATSS baselines (MMDetection vocabulary): backbone, FPN, anchors,
box coder, assigners, heads, losses, decoding and the detector registry. `umop_yolo.engine.dense` assembles them into
Ultralytics models; `umop_yolo.nn.yolo_backbone` (not imported here: it needs Ultralytics) takes a YOLO's layers as the
backbone."""

from umop_yolo.nn.anchors import AnchorGenerator
from umop_yolo.nn.assigners import Assignment, ATSSAssigner, MaxIoUAssigner
from umop_yolo.nn.atss_head import ATSSHead
from umop_yolo.nn.box_coder import DeltaXYWHBoxCoder
from umop_yolo.nn.channel_mapper import ChannelMapper
from umop_yolo.nn.fpn import FPN
from umop_yolo.nn.losses import ATSSLoss, RetinaNetLoss
from umop_yolo.nn.resnet import ResNet
from umop_yolo.nn.retina_head import RetinaHead

__all__ = ["AnchorGenerator", "Assignment", "ATSSAssigner", "ATSSHead", "ChannelMapper", "DeltaXYWHBoxCoder", "FPN",
           "ATSSLoss", "MaxIoUAssigner", "ResNet", "RetinaHead", "RetinaNetLoss"]
