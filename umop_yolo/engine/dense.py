"""RetinaNet and ATSS as Ultralytics detection models, trained with the PFL core.

Backbone + neck: a ResNet/ResNeXt with FPN (P3-P7, the paper's setting), or the layers before the Detect of any
Ultralytics YOLO model YAML with a ChannelMapper (its P3-P5, plus P6/P7 when `neck.num_outs` is 5). The head is the
detector's entry in `umop_yolo.nn.DETECTORS`; the YAML schema is in `dense_schema`.

The modules are built here, not by `ultralytics.nn.tasks.parse_model` (which cannot wire multi-input necks/heads), and
satisfy the Detect contract: training forward returns a dict of flattened per-anchor predictions plus "feats"; eval
returns (y, raw) with y = (B, 4 + nc, N) xywh pixel boxes, clipped to the input, and class scores: per level the
`nms_pre` best (anchor, class) scores above `score_thr` (ATSS: then x centerness), the others zeroed (MMDetection 3.x's
selection, `nn.postprocess`); export returns y alone.

The per-level cap is an argument of the forward (`predict(x, nms_pre=...)`): umop's val and predict pass the `nms_pre`
setting, the one number for both caps. A forward given none (export, whose traced graph keeps it, Ultralytics' own
val/predict, a plain `model(x)`) uses the model YAML's `head.test.nms_pre` (MMDetection's 1000 unless it says
otherwise). Nothing changes the head after it is built.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from ultralytics.nn.modules.head import Detect
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import intersect_dicts

from umop_yolo.engine.args_adapter import settings_from_args
from umop_yolo.engine.dense_criterion import DenseCriterion
from umop_yolo.engine.dense_schema import DenseConfig, yolo_model_dict
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.engine.model_yaml_check import check_model_dict, dense_model_config
from umop_yolo.engine.tta import predict_augment
from umop_yolo.engine.ultralytics_internals import skip_parent_init
from umop_yolo.errors import UserInputError
from umop_yolo.nn import FPN, AnchorGenerator, ChannelMapper, DeltaXYWHBoxCoder, ResNet
from umop_yolo.nn.postprocess import anchor_scores, decode_top_anchors, flat_levels
from umop_yolo.nn.yolo_backbone import YOLOBackbone
from umop_yolo.pfl import ProgressiveFocalLoss

RESNET_STRIDES = [8, 16, 32]  # C3-C5


class DenseHead(Detect):
    """Ultralytics' Detect contract around a RetinaNet/ATSS head: anchors, decoding, per-level pre-NMS top-k.

    `nms_pre` and `score_thr` are the model YAML's `head.test` settings, set once here: `nms_pre` is the per-level cap
    of a forward given none (export among them)."""

    def __init__(self, head: nn.Module, anchor_generator: AnchorGenerator, coder: DeltaXYWHBoxCoder,
                 nc: int, nms_pre: int = 1000, score_thr: float = 0.05) -> None:
        skip_parent_init(self)  # Detect.__init__ would build YOLO branches
        self.head, self.anchor_generator, self.coder = head, anchor_generator, coder
        self.nc, self.nl, self.reg_max, self.no = nc, len(anchor_generator.strides), 1, nc + 4
        self.stride = torch.tensor(anchor_generator.strides, dtype=torch.float32)
        self.nms_pre, self.score_thr = nms_pre, score_thr
        self.cv2 = self.cv3 = None  # no YOLO branches (read by Ultralytics' is_fused)
        self.anchors = torch.empty(0, 4)

    @property
    def end2end(self) -> bool:
        return False

    @end2end.setter
    def end2end(self, value: bool) -> None:
        if value:
            LOGGER.warning("RetinaNet/ATSS have no NMS-free branch; their outputs go through NMS.")

    def anchors_for(self, feats: list[Tensor]) -> tuple[Tensor, list[int]]:
        """(A, 4) anchors for these feature maps (cached per shape) and the number of anchors per level."""
        sizes = [tuple(f.shape[-2:]) for f in feats]
        if self.dynamic or self.shape != sizes or self.anchors.device != feats[0].device:
            self.anchors, self.shape = self.anchor_generator(sizes, feats[0].device), sizes
        return self.anchors, self.anchor_generator.level_sizes(sizes)

    def forward(self, feats: list[Tensor], nms_pre: int | None = None
                ) -> dict[str, Any] | Tensor | tuple[Tensor, dict[str, Any]]:
        """Training: the per-anchor predictions; eval: (y, raw), decoded at `nms_pre` per level (None: the head's
        own); export: y."""
        preds: dict[str, Any] = flat_levels(self.head(feats), self.anchor_generator.num_anchors)
        preds["feats"] = feats
        if self.training:
            return preds
        y = self._inference(preds, self.nms_pre if nms_pre is None else nms_pre)
        return y if self.export else (y, preds)

    def _inference(self, preds: dict[str, Any], nms_pre: int) -> Tensor:
        """(B, 4 + nc, N): per level the `nms_pre` best (anchor, class) scores, decoded and clipped to the input."""
        anchors, sizes = self.anchors_for(preds["feats"])
        probs, centerness = anchor_scores(preds)
        image_hw = torch._shape_as_tensor(preds["feats"][0])[-2:] * int(self.stride[0])  # traced: any input size
        box, scores = decode_top_anchors(probs, preds["bbox_deltas"], anchors, sizes, self.coder, nms_pre,
                                         self.score_thr, centerness, image_hw)
        if not self.xyxy:
            box = torch.cat([(box[..., :2] + box[..., 2:]) / 2, box[..., 2:] - box[..., :2]], -1)
        return torch.cat([box, scores], -1).transpose(1, 2)


class DenseDetectionModel(UmopDetectionModel):
    """RetinaNet or ATSS as an Ultralytics DetectionModel.

    `self.model` = Sequential(backbone, neck, DenseHead), so Ultralytics' forward, trainer, EMA, validator,
    predictor, checkpointing and export treat it like a YOLO model. `load()` transfers weights by name and shape;
    `fuse()` folds the backbone's BatchNorms into its convs. `config` is the typed model YAML it was built from.
    """

    _config: DenseConfig | None = None  # unpickled from a checkpoint: derived again on first use (`config`)

    def __init__(self, cfg: DenseConfig | str | Path | dict = "atss_r50_fpn.yaml", ch: int = 3,
                 nc: int | None = None, verbose: bool = True) -> None:
        """`cfg`: a checked config (`model_yaml_check.check_model_dict`), or a model YAML to check first."""
        skip_parent_init(self)  # DetectionModel.__init__ would run parse_model
        config = cfg if isinstance(cfg, DenseConfig) else dense_model_config(cfg)
        if nc and nc != config.yaml.get("nc"):
            if "nc" in config.yaml:
                LOGGER.info(f"Overriding model.yaml nc={config.yaml['nc']} with nc={nc}")
            config = config.with_nc(nc)
        self._config, self.yaml = config, {**copy.deepcopy(config.yaml), "channels": ch}
        nc = config.nc
        backbone, neck, strides = build_features(config, ch)
        self.model = nn.Sequential(backbone, neck, build_head(config, nc, strides))
        for i, m in enumerate(self.model):
            m.i, m.f, m.type, m.np = i, -1, type(m).__name__, sum(p.numel() for p in m.parameters())
        self.save: list[int] = []
        self.stride = self.model[-1].stride
        self.names = {i: f"{i}" for i in range(nc)}
        self.inplace = True
        if verbose:
            self.info()
            LOGGER.info("")

    def init_criterion(self) -> DenseCriterion:
        """Focal loss (umop=false) or UMOP's PFL/LRP (umop=true) as the classification term, from `self.args`
        (`ModelSettings.classification`), on the single-label path (MaxIoU and ATSS targets: one class per anchor)."""
        settings = settings_from_args(getattr(self, "args", None))
        pfl = ProgressiveFocalLoss(settings.classification, single_label=True)
        head, config = self.model[-1], self.config
        loss = config.spec.loss(pfl, config.spec.assigner(**config.head["assigner"]), head.coder, head.nc,
                                **config.head["loss"])
        return DenseCriterion(head, loss)

    @property
    def config(self) -> DenseConfig:
        """The typed model config: the one it was built from, or for a model unpickled from a checkpoint (whose pickle
        leaves it out) the config of its YAML, checked as data once, on first use."""
        if self._config is None:
            self._config = check_model_dict(self.yaml, "model YAML")
        return self._config

    def __getstate__(self) -> dict[str, Any]:
        """The pickled state, without the typed config: a checkpoint holds plain data and layers only."""
        return {k: v for k, v in super().__getstate__().items() if k != "_config"}

    def predict(self, x: Tensor, profile: bool = False, augment: bool = False, embed: list[int] | None = None,
                nms_pre: int | None = None) -> Any:
        """Ultralytics' inference forward (`model(x, ...)` calls it), with `nms_pre`, the per-level cap of the head's
        eval decoding (None: the model YAML's `head.test.nms_pre`)."""
        if augment:
            return predict_augment(self, x, nms_pre=nms_pre)
        if profile or embed:  # Ultralytics' layer loop: per-layer times or pooled features
            return super().predict(x, profile, False, embed)
        backbone, neck, head = self.model
        return head(neck(backbone(x)), nms_pre)

    def load(self, weights: dict | nn.Module, verbose: bool = True) -> None:
        """Copy every tensor whose name and shape match; with another class count the classification conv keeps its
        fresh initialisation, and one line says so."""
        model = (weights.get("ema") or weights["model"]) if isinstance(weights, dict) else weights
        state = intersect_dicts(model.float().state_dict(), self.state_dict())
        self.load_state_dict(state, strict=False)
        layers = getattr(model, "model", None)
        theirs = getattr(layers[-1], "nc", None) if isinstance(layers, nn.Sequential) else None
        if theirs is not None and theirs != self.model[-1].nc:
            fresh = sorted({k.rpartition(".")[0] for k in self.state_dict() if k not in state})
            LOGGER.info(f"Classification layers re-initialised for {self.model[-1].nc} classes (the weights have "
                        f"{theirs}): {', '.join(fresh)}")
        if verbose:
            LOGGER.info(f"Transferred {len(state)}/{len(self.state_dict())} items from pretrained weights")

    def is_fused(self) -> bool:
        return self.model[0].fused

    def fuse(self, verbose: bool = True, imgsz: int = 640) -> DenseDetectionModel:
        """Fold the backbone's BatchNorms into its convs (inference only)."""
        if not self.is_fused():
            self.model[0].fuse()
            if verbose:
                self.info(imgsz=imgsz)
        return self


def report_backbone_weights(backbone: ResNet, pretrained: str | None) -> None:
    """One log line: where the ImageNet weights came from, or that the backbone starts from scratch."""
    if backbone.weights_file:
        LOGGER.info(f"{backbone.arch}: ImageNet weights from {backbone.weights_file}")
    elif pretrained:
        LOGGER.warning(f"{backbone.arch}: no ImageNet weights '{pretrained}' in the torch hub cache "
                       f"({torch.hub.get_dir()}/checkpoints): random init for this model; a training stops without "
                       "them (backbone_weights=<file.pth>, or false); nothing is downloaded")


def build_features(config: DenseConfig, ch: int) -> tuple[nn.Module, nn.Module, list[int]]:
    """Backbone, neck and the neck's output strides of a config."""
    if config.backbone_kind == "yolo":
        backbone = YOLOBackbone(yolo_model_dict(config.backbone["yolo"]), ch)
        neck, strides = ChannelMapper(backbone.out_channels, **config.neck), backbone.strides
    else:
        if ch != 3:
            raise UserInputError(f"a ResNet backbone takes RGB input (ch=3), got ch={ch}")
        backbone = ResNet(**config.backbone)
        report_backbone_weights(backbone, config.backbone["pretrained"])
        neck, strides = FPN(backbone.out_channels, **config.neck), RESNET_STRIDES
    extra = config.neck["num_outs"] - len(strides)  # P6, P7 ...: stride-2 convs
    return backbone, neck, [*strides, *(strides[-1] * 2 ** (i + 1) for i in range(extra))]


def build_head(config: DenseConfig, nc: int, strides: list[int]) -> DenseHead:
    """The DenseHead of a config for a neck with these output strides: the detector's towers from the registry."""
    spec, head = config.spec, config.head
    anchors = AnchorGenerator(strides, **head["anchors"])
    settings = {**head, "num_levels": len(strides)}
    tower = spec.head(nc=nc, num_anchors=anchors.num_anchors, in_channels=config.neck["out_channels"],
                      **{k: settings[k] for k in spec.head_keys})
    return DenseHead(tower, anchors, DeltaXYWHBoxCoder(**head["box_coder"]), nc, config.test.nms_pre,
                     config.test.score_thr)


def decoding_at(model: Any, nms_pre: int) -> Any:
    """`model` for a caller that runs `model(x, augment=...)` and passes nothing else (Ultralytics' validator): a
    RetinaNet/ATSS model becomes a view of it (the same modules, parameters and criterion; the model itself is left as
    it is) whose forward decodes at `nms_pre` per level; any other model is returned as it is."""
    if not isinstance(model, DenseDetectionModel):
        return model
    view = object.__new__(type(model))
    view.__dict__.update(model.__dict__)
    view.forward = functools.partial(view.forward, nms_pre=nms_pre)
    return view
