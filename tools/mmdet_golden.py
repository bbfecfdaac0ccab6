"""Golden fixtures for the MMDetection import: small ATSS and RetinaNet models built and run by MMDetection 3.3.

Runs only where mmdet 3.3, mmengine and mmcv-lite are installed (mmcv-lite has no compiled ops: the few names of
`mmcv.ops` that mmdet imports are stubbed below, NMS by torchvision's, which suppresses at IoU > threshold as mmcv's
does). Writes, under tests/fixtures/:

* `mmdet3_{atss,retinanet}_r18.pth`: MMDetection 3.x checkpoints as mmengine's Runner saves them (`meta` with the
  config text and `dataset_meta`, `state_dict`, `message_hub` holding mmengine objects, `optimizer`);
* `mmdet2_atss_r18.pth`: the ATSS weights as an MMDetection 2.x checkpoint (`meta` with `CLASSES` and a 2.x config);
* `mmdet_{atss,retinanet}_outputs.pt`: the input images, MMDetection's raw head outputs and its final detections
  under the test settings (nms_pre 1000, score_thr 0.05, NMS IoU 0.6, 100 per image), and again with nms_pre 50.

Models: ResNet-18 at base_channels 4, FPN 16 channels P3-P7, heads with 2 stacked convs of 16 channels, 5 classes
(the built-in shapes data's), random weights from a fixed seed, scaled so that hundreds of (anchor, class) scores per
image pass the score threshold (`calibrate_`).

Reference environment (as the fixtures were made, 2026-12-07; torch, numpy, opencv and pycocotools from the project's
environment, shared through a .pth file in the venv's site-packages):

    python -m venv /tmp/mmdet-venv
    /tmp/mmdet-venv/bin/pip install --no-deps mmengine==0.10.7 mmdet==3.3.0 mmcv-lite==2.1.0
    /tmp/mmdet-venv/bin/pip install addict yapf termcolor terminaltables rich six tqdm shapely scipy
    /tmp/mmdet-venv/bin/python tools/mmdet_golden.py   # rewrites tests/fixtures/mmdet*, byte for byte the same
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch
import torchvision

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
CLASSES = ("circle", "square", "triangle", "cross", "star")  # the built-in shapes data's classes
SIZES = [(96, 128), (128, 96), (64, 64)]  # (H, W): already resized and divisible by 32, so nothing is padded
TEST_CFG = {"nms_pre": 1000, "min_bbox_size": 0, "score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.6},
            "max_per_img": 100}


def stub_mmcv_ops() -> None:
    """`mmcv.ops` without compiled code: torchvision's NMS; any other name is a placeholder these models never use."""

    def nms(boxes, scores, iou_threshold, offset=0, score_threshold=0, max_num=-1):
        keep = torchvision.ops.nms(boxes.float(), scores.float(), float(iou_threshold))
        return torch.cat([boxes[keep], scores[keep, None]], 1), keep

    def batched_nms(boxes, scores, idxs, nms_cfg, class_agnostic=False):  # mmcv's: class offsets, then one NMS
        cfg = dict(nms_cfg)
        cfg.pop("type", None)
        cfg.pop("split_thr", None)
        if not cfg.pop("class_agnostic", class_agnostic):
            boxes_for_nms = boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]
        else:
            boxes_for_nms = boxes
        dets, keep = nms(boxes_for_nms, scores, **cfg)
        return torch.cat([boxes[keep], dets[:, -1:]], -1), keep

    def placeholder(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: (_ for _ in ()).throw(NotImplementedError(name))})

    for name in ("", ".nms", ".modulated_deform_conv", ".roi_align", ".carafe", ".merge_cells",
                 ".multi_scale_deform_attn"):
        module = types.ModuleType(f"mmcv.ops{name}")
        module.nms, module.batched_nms = nms, batched_nms
        module.__getattr__ = placeholder
        sys.modules[module.__name__] = module


def model_cfg(detector: str) -> dict:
    """The MMDetection 3.x config of the small model (MMDetection's atss/retinanet_r50_fpn, narrowed)."""
    atss = detector == "atss"
    backbone = {"type": "ResNet", "depth": 18, "base_channels": 4, "num_stages": 4, "out_indices": (0, 1, 2, 3),
                "frozen_stages": 1, "norm_cfg": {"type": "BN", "requires_grad": True}, "norm_eval": True,
                "style": "pytorch", "init_cfg": None}
    neck = {"type": "FPN", "in_channels": [4, 8, 16, 32], "out_channels": 16, "start_level": 1,
            "add_extra_convs": "on_output" if atss else "on_input", "num_outs": 5}
    anchors = ({"type": "AnchorGenerator", "ratios": [1.0], "octave_base_scale": 8, "scales_per_octave": 1,
                "strides": [8, 16, 32, 64, 128]} if atss else
               {"type": "AnchorGenerator", "octave_base_scale": 4, "scales_per_octave": 3, "ratios": [0.5, 1.0, 2.0],
                "strides": [8, 16, 32, 64, 128]})
    stds = [0.1, 0.1, 0.2, 0.2] if atss else [1.0, 1.0, 1.0, 1.0]
    head = {"type": "ATSSHead" if atss else "RetinaHead", "num_classes": len(CLASSES), "in_channels": 16,
            "stacked_convs": 2, "feat_channels": 16, "anchor_generator": anchors,
            "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": stds},
            "loss_cls": {"type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0}}
    if atss:
        head.update(norm_cfg={"type": "GN", "num_groups": 4, "requires_grad": True},
                    loss_bbox={"type": "GIoULoss", "loss_weight": 2.0},
                    loss_centerness={"type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0})
    else:
        head.update(loss_bbox={"type": "L1Loss", "loss_weight": 1.0})
    preprocessor = {"type": "DetDataPreprocessor", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                    "bgr_to_rgb": True, "pad_size_divisor": 32}
    return {"type": "ATSS" if atss else "RetinaNet", "data_preprocessor": preprocessor, "backbone": backbone,
            "neck": neck, "bbox_head": head, "train_cfg": None, "test_cfg": TEST_CFG}


def images(seed: int = 0) -> list[np.ndarray]:
    """RGB uint8 images: a colour gradient with a few filled rectangles, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in SIZES:
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (h + w)], -1).astype(np.uint8)
        for _ in range(4):
            x0, y0 = rng.integers(0, w - 16), rng.integers(0, h - 16)
            x1, y1 = x0 + rng.integers(8, w - x0), y0 + rng.integers(8, h - y0)
            img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
        out.append(img)
    return out


def randomise_(model: torch.nn.Module, seed: int) -> None:
    """Random weights: convs ~ N(0, 1 / fan_in), norms' affine and BatchNorm statistics varied, Scales near 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if t.dim() == 4:
                t.copy_(torch.randn(t.shape, generator=gen) * (1.6 / t[0].numel()) ** 0.5)
            elif name.endswith("running_var") or (name.endswith("weight") and t.dim() == 1):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith(".scale"):
                t.copy_(0.8 + 0.4 * torch.rand(t.shape, generator=gen))
            else:  # biases, running means
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))


def calibrate_(model, inputs: torch.Tensor) -> None:
    """Scale the class and box convs so their outputs have std 1.5 and 1 on `inputs` (random towers without norm
    blow up: saturated scores would tie), and start the class logits at -2: a few hundred scores above 0.05."""
    head = model.bbox_head
    prefix = "atss" if hasattr(head, "atss_cls") else "retina"
    with torch.no_grad():
        cls_scores, bbox_preds = head(model.extract_feat(inputs))[:2]
        for conv, outs, std in ((f"{prefix}_cls", cls_scores, 1.5), (f"{prefix}_reg", bbox_preds, 1.0)):
            conv = getattr(head, conv)
            conv.weight.mul_(std / torch.cat([o.flatten() for o in outs]).std())
            conv.bias.zero_()
        getattr(head, f"{prefix}_cls").bias.fill_(-2.0)


def run(model, imgs: list[np.ndarray]) -> dict:
    """MMDetection's own inference path (data preprocessor, backbone, neck, head, predict_by_feat) per image: the raw
    head outputs, and the detections under the test settings and again with nms_pre 50 (so the cap decides)."""
    from mmdet.structures import DetDataSample

    out = {"raw": [], **{f"{k}{s}": [] for k in ("boxes", "scores", "labels") for s in ("", "_nms_pre50")}}
    for img in imgs:
        h, w = img.shape[:2]
        sample = DetDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w), "scale_factor": (1.0, 1.0),
                                         "pad_shape": (h, w), "batch_input_shape": (h, w)})
        bgr = torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1)  # as LoadImageFromFile reads a file
        data = model.data_preprocessor({"inputs": [bgr], "data_samples": [sample]}, False)
        with torch.no_grad():
            raw = model.bbox_head(model.extract_feat(data["inputs"]))
            for suffix, nms_pre in (("", TEST_CFG["nms_pre"]), ("_nms_pre50", 50)):
                model.bbox_head.test_cfg.nms_pre = nms_pre
                det = model.predict(data["inputs"], data["data_samples"], rescale=False)[0].pred_instances
                for key in ("boxes", "scores", "labels"):
                    out[key + suffix].append(getattr(det, "bboxes" if key == "boxes" else key).clone())
        out["raw"].append({name: [x[0].clone() for x in maps] for name, maps in zip(("cls_logits", "bbox_deltas",
                                                                                     "centerness"), raw)})
    return out


def message_hub_state() -> dict:
    """What mmengine's Runner saves as `message_hub`: HistoryBuffer objects and runtime info."""
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("mmdet_golden")
    for i in range(3):
        hub.update_scalar("train/loss", 1.0 / (i + 1))
        hub.update_scalar("train/lr", 0.01)
    hub.update_info("epoch", 12)
    hub.update_info("iter", 36)
    return hub.state_dict()


def to_2x_config(cfg: dict) -> dict:
    """The same model in MMDetection 2.x's config layout: no data_preprocessor; img_norm_cfg; pretrained key."""
    model = {k: v for k, v in cfg.items() if k != "data_preprocessor"}
    model["pretrained"] = None
    return {"model": model, "img_norm_cfg": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                                             "to_rgb": True}}


def main() -> None:
    stub_mmcv_ops()
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config, ConfigDict

    register_all_modules()
    OUT.mkdir(parents=True, exist_ok=True)
    imgs = images()
    for seed, detector in enumerate(("atss", "retinanet")):
        cfg = model_cfg(detector)
        torch.manual_seed(seed)
        model = MODELS.build(ConfigDict(cfg)).eval()
        randomise_(model, seed)
        calibrate_(model, model.data_preprocessor({"inputs": [torch.from_numpy(imgs[0]).permute(2, 0, 1)]})["inputs"])
        state = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        config_text = Config({"model": cfg, "default_scope": "mmdet"}).pretty_text
        dataset_meta = {"classes": CLASSES, "palette": [(220, 20, 60)] * len(CLASSES)}
        torch.save({"meta": {"cfg": config_text, "dataset_meta": dataset_meta,
                             "epoch": 12, "iter": 36, "mmengine_version": "0.10.7", "seed": seed,
                             "experiment_name": f"{detector}_golden", "time": "20261207_120000"},
                    "state_dict": state, "message_hub": message_hub_state(),
                    "optimizer": optimizer.state_dict(), "param_schedulers": []},
                   OUT / f"mmdet3_{detector}_r18.pth")
        if detector == "atss":
            torch.save({"meta": {"mmdet_version": "2.14.0", "CLASSES": CLASSES, "epoch": 12, "iter": 36,
                                 "config": Config(to_2x_config(cfg)).pretty_text},
                        "state_dict": state, "optimizer": optimizer.state_dict()}, OUT / "mmdet2_atss_r18.pth")
        out = run(model, imgs)
        torch.save({"images": [torch.from_numpy(i) for i in imgs], **out, "test_cfg": cfg["test_cfg"],
                    "mmdet": __import__("mmdet").__version__}, OUT / f"mmdet_{detector}_outputs.pt")
        print(detector, "detections per image:", [len(s) for s in out["scores"]])


if __name__ == "__main__":
    main()
