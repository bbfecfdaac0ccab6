"""RetinaNet and ATSS (ResNet + FPN, P3-P7) as Ultralytics detection models, trained with the PFL core.

Model YAML schema (see cfg/models/retinanet_r50_fpn.yaml, atss_r50_fpn.yaml; every key below is optional except
`detector`, and defaults are MMDetection's for that detector):

    detector: retinanet | atss
    nc: 80
    backbone: {depth, groups, base_width, frozen_stages, norm_eval, dcn_stages, pretrained}  # umop_yolo.nn.ResNet
    neck: {out_channels, num_outs, add_extra_convs, relu_before_extra_convs}                 # umop_yolo.nn.FPN
    head:
      feat_channels, stacked_convs, prior_prob, gn_groups (ATSS)
      anchors: {octave_base_scale, scales_per_octave, ratios}
      box_coder: {means, stds}
      assigner: {pos_iou_thr, neg_iou_thr, min_pos_iou} (RetinaNet) | {topk} (ATSS)
      loss: {box_weight} (+ centerness_weight, ATSS)
      test: {nms_pre, score_thr}

The modules are built here, not by `ultralytics.nn.tasks.parse_model` (which cannot wire multi-input necks/heads), and
satisfy the Detect contract: training forward returns a dict of flattened per-anchor predictions plus "feats"; eval
returns (y, raw) with y = (B, 4 + nc, N) xywh pixel boxes and class scores (ATSS: x centerness) of the top `nms_pre`
anchors per level, scores below `score_thr` zeroed; export returns y alone.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn
from ultralytics.nn.modules.head import Detect
from ultralytics.utils import DEFAULT_CFG, LOGGER, YAML
from ultralytics.utils.torch_utils import intersect_dicts

from umop_yolo.engine.loss import pfl_from_args
from umop_yolo.engine.model import UmopDetectionModel
from umop_yolo.errors import UserInputError
from umop_yolo.nn import (
    FPN,
    AnchorGenerator,
    ATSSAssigner,
    ATSSHead,
    ATSSLoss,
    DeltaXYWHBoxCoder,
    MaxIoUAssigner,
    ResNet,
    RetinaHead,
    RetinaNetLoss,
)
from umop_yolo.pfl import ProgressiveFocalLoss

_COMMON_HEAD = {"feat_channels": 256, "stacked_convs": 4, "prior_prob": 0.01,
                "test": {"nms_pre": 1000, "score_thr": 0.05}}
DEFAULTS: dict[str, dict[str, Any]] = {  # MMDetection's settings of each detector
    "retinanet": {
        "neck": {"add_extra_convs": "on_input"},
        "head": {**_COMMON_HEAD, "anchors": {"octave_base_scale": 4, "scales_per_octave": 3, "ratios": [0.5, 1.0, 2.0]},
                 "box_coder": {"means": [0.0] * 4, "stds": [1.0] * 4},
                 "assigner": {"pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0.0},
                 "loss": {"box_weight": 1.0}},
    },
    "atss": {
        "neck": {"add_extra_convs": "on_output"},
        "head": {**_COMMON_HEAD, "gn_groups": 32,
                 "anchors": {"octave_base_scale": 8, "scales_per_octave": 1, "ratios": [1.0]},
                 "box_coder": {"means": [0.0] * 4, "stds": [0.1, 0.1, 0.2, 0.2]},
                 "assigner": {"topk": 9},
                 "loss": {"box_weight": 2.0, "centerness_weight": 1.0}},
    },
}
BACKBONE = {"depth": 50, "groups": 1, "base_width": 64, "frozen_stages": 1, "norm_eval": True, "dcn_stages": [],
            "pretrained": "imagenet"}
NECK = {"out_channels": 256, "num_outs": 5, "relu_before_extra_convs": False}
TOP_KEYS = {"detector", "nc", "backbone", "neck", "head", "channels", "scale", "yaml_file"}  # + Ultralytics' own


def merged(defaults: dict, given: dict | None, where: str) -> dict:
    """`given` over `defaults`, recursively; unknown keys are an error naming their place in the YAML."""
    out = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            raise UserInputError(f"model YAML: unknown key '{where}.{key}' (valid: {', '.join(defaults)})")
        out[key] = merged(defaults[key], value, f"{where}.{key}") if isinstance(defaults[key], dict) else value
    return out


def dense_config(cfg: dict) -> dict:
    """The full model config of a dense-detector YAML dict, defaults filled in and keys checked."""
    detector = cfg.get("detector")
    if detector not in DEFAULTS:
        raise UserInputError(f"model YAML: detector={detector!r} must be one of {', '.join(DEFAULTS)}")
    unknown = set(cfg) - TOP_KEYS
    if unknown:
        raise UserInputError(f"model YAML: unknown top-level key(s) {sorted(unknown)} for detector '{detector}'")
    d = DEFAULTS[detector]
    return {**cfg, "backbone": merged(BACKBONE, cfg.get("backbone"), "backbone"),
            "neck": merged({**NECK, **d["neck"]}, cfg.get("neck"), "neck"),
            "head": merged(d["head"], cfg.get("head"), "head")}


def load_model_yaml(cfg: str | Path | dict) -> dict:
    """A model YAML as a dict: a dict as given, a path, or a bare name in cfg/models."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    from umop_yolo.cfg import MODELS_DIR, find_file

    path = find_file(cfg, MODELS_DIR, "model")
    return {**YAML.load(path), "yaml_file": str(path)}


def flat(x: Tensor, num_anchors: int) -> Tensor:
    """(B, A*K, H, W) -> (B, H*W*A, K): locations row-major, anchors minor (the AnchorGenerator's order)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1] // num_anchors)


class DenseHead(Detect):
    """Ultralytics' Detect contract around a RetinaNet/ATSS head: anchors, decoding, per-level pre-NMS top-k."""

    def __init__(self, head: RetinaHead | ATSSHead, anchor_generator: AnchorGenerator, coder: DeltaXYWHBoxCoder,
                 nc: int, nms_pre: int = 1000, score_thr: float = 0.05) -> None:
        nn.Module.__init__(self)  # Detect.__init__ would build YOLO branches
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

    def forward(self, feats: list[Tensor]) -> dict[str, Any] | Tensor | tuple[Tensor, dict[str, Any]]:
        a = self.anchor_generator.num_anchors
        preds: dict[str, Any] = {k: torch.cat([flat(x, a) for x in v], 1) for k, v in self.head(feats).items()}
        preds["feats"] = feats
        if self.training:
            return preds
        y = self._inference(preds)
        return y if self.export else (y, preds)

    def _inference(self, preds: dict[str, Any]) -> Tensor:
        """(B, 4 + nc, N): the top `nms_pre` anchors of every level by best class score, decoded."""
        anchors, sizes = self.anchors_for(preds["feats"])
        scores = preds["cls_logits"].sigmoid()
        if "centerness" in preds:
            scores = scores * preds["centerness"].sigmoid()
        out = []
        for s, d, a in zip(scores.split(sizes, 1), preds["bbox_deltas"].split(sizes, 1), anchors.split(sizes)):
            idx = s.amax(-1).topk(min(self.nms_pre, s.shape[1]), dim=1).indices  # (B, k)
            s = s.gather(1, idx[..., None].expand(-1, -1, s.shape[-1]))
            box = self.coder.decode(a[idx], d.gather(1, idx[..., None].expand(-1, -1, 4))).to(s.dtype)
            if not self.xyxy:
                box = torch.cat([(box[..., :2] + box[..., 2:]) / 2, box[..., 2:] - box[..., :2]], -1)
            out.append(torch.cat([box, s.masked_fill(s < self.score_thr, 0.0)], -1))
        return torch.cat(out, 1).transpose(1, 2)


class DenseCriterion:
    """Ultralytics criterion for DenseDetectionModel: (preds, batch) -> (loss * batch size, detached loss items).

    A plain object (not an nn.Module), rebuilt by `init_criterion()`. `last_stats` holds the latest per-level
    statistics for the trainer's level record (positives, samples, loss, gamma_l and alpha_l; the focal baseline's stay
    at gamma and w / gamma, the flat reference line of the Fig. 3 plot).
    """

    def __init__(self, head: DenseHead, loss: RetinaNetLoss | ATSSLoss) -> None:
        self.head, self.loss = head, loss
        self.last_stats: dict[str, Tensor] = {}

    def __call__(self, preds: dict[str, Any] | tuple, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        preds = preds[1] if isinstance(preds, tuple) else preds
        anchors, sizes = self.head.anchors_for(preds["feats"])
        boxes, labels, mask = padded_targets(batch)
        terms, stats = self.loss(preds, anchors, sizes, boxes, labels, mask)
        self.last_stats = stats
        total = sum(terms.values())
        return total * batch["img"].shape[0], {k: v.detach() for k, v in terms.items()}


def padded_targets(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Ultralytics' flat labels -> (B, M, 4) xyxy pixel boxes, (B, M) classes, (B, M) mask of real boxes.

    One host sync (the largest box count, as in Ultralytics' own loss); M >= 1.
    """
    img = batch["img"]
    n_img, (h, w), device = img.shape[0], img.shape[2:], img.device
    idx, order = batch["batch_idx"].view(-1).long().sort(stable=True)
    counts = torch.bincount(idx, minlength=n_img)
    m = max(int(counts.max()) if idx.numel() else 0, 1)
    slot = torch.arange(idx.numel(), device=device) - (counts.cumsum(0) - counts)[idx]
    xywh = batch["bboxes"].view(-1, 4)[order].float() * torch.tensor([w, h, w, h], device=device)
    boxes = torch.zeros(n_img, m, 4, device=device)
    labels = torch.zeros(n_img, m, dtype=torch.long, device=device)
    mask = torch.zeros(n_img, m, dtype=torch.bool, device=device)
    boxes[idx, slot] = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    labels[idx, slot] = batch["cls"].view(-1)[order].long()
    mask[idx, slot] = True
    return boxes, labels, mask


class DenseDetectionModel(UmopDetectionModel):
    """RetinaNet or ATSS with a ResNet/ResNeXt + FPN (P3-P7), as an Ultralytics DetectionModel.

    `self.model` = Sequential(backbone, neck, DenseHead), so Ultralytics' forward, trainer, EMA, validator,
    predictor, checkpointing and export treat it like a YOLO model. `load()` transfers weights by name and shape;
    `fuse()` folds the backbone's frozen BatchNorms into its convs.
    """

    def __init__(self, cfg: str | Path | dict = "atss_r50_fpn.yaml", ch: int = 3, nc: int | None = None,
                 verbose: bool = True) -> None:
        nn.Module.__init__(self)  # DetectionModel.__init__ would run parse_model
        if ch != 3:
            raise UserInputError(f"RetinaNet/ATSS take RGB input (ch=3), got ch={ch}")
        self.yaml = load_model_yaml(cfg)
        self.yaml["channels"] = ch
        if nc and nc != self.yaml.get("nc"):
            if "nc" in self.yaml:
                LOGGER.info(f"Overriding model.yaml nc={self.yaml['nc']} with nc={nc}")
            self.yaml["nc"] = nc
        config = dense_config(self.yaml)
        nc = config.get("nc", 80)
        backbone = ResNet(**config["backbone"])
        report_backbone_weights(backbone, config["backbone"]["pretrained"])
        neck = FPN(backbone.out_channels, **config["neck"])
        self.model = nn.Sequential(backbone, neck, build_head(config, nc))
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
        """Focal loss (umop=false) or UMOP's PFL/LRP (umop=true) as the classification term, from `self.args`."""
        args = getattr(self, "args", DEFAULT_CFG)
        args = SimpleNamespace(**args) if isinstance(args, dict) else args
        if args.umop:
            pfl = pfl_from_args(args)
        else:
            pfl = ProgressiveFocalLoss(gamma=args.pfl_gamma, delta=0.0, w=args.pfl_w, single_label=True)
        head, config = self.model[-1], dense_config(self.yaml)["head"]
        coder, nc = head.coder, head.nc
        if self.yaml["detector"] == "retinanet":
            loss = RetinaNetLoss(pfl, MaxIoUAssigner(**config["assigner"]), coder, nc, **config["loss"])
        else:
            loss = ATSSLoss(pfl, ATSSAssigner(**config["assigner"]), coder, nc, **config["loss"])
        return DenseCriterion(head, loss)

    def load(self, weights: dict | nn.Module, verbose: bool = True) -> None:
        """Copy every tensor whose name and shape match (a different nc keeps the new classifier)."""
        model = (weights.get("ema") or weights["model"]) if isinstance(weights, dict) else weights
        state = intersect_dicts(model.float().state_dict(), self.state_dict())
        self.load_state_dict(state, strict=False)
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
                       f"({torch.hub.get_dir()}/checkpoints), so training starts from scratch; nothing is downloaded "
                       "(backbone pretrained=<file.pth> takes a local copy)")


def build_head(config: dict, nc: int) -> DenseHead:
    """The DenseHead of a full config (see `dense_config`)."""
    neck, head = config["neck"], config["head"]
    strides = [8 * 2**i for i in range(neck["num_outs"])]
    anchors = AnchorGenerator(strides, **head["anchors"])
    common = dict(nc=nc, num_anchors=anchors.num_anchors, in_channels=neck["out_channels"],
                  feat_channels=head["feat_channels"], stacked_convs=head["stacked_convs"],
                  prior_prob=head["prior_prob"])
    if config["detector"] == "retinanet":
        tower = RetinaHead(**common)
    else:
        tower = ATSSHead(**common, num_levels=len(strides), gn_groups=head["gn_groups"])
    return DenseHead(tower, anchors, DeltaXYWHBoxCoder(**head["box_coder"]), nc, **head["test"])
