"""CPU speed of our RetinaNet R-50 / ATSS R-50 against torchvision's RetinaNet R-50 / FCOS R-50 (random init).

One training step (forward, loss, backward, SGD step) and one inference pass (forward, decoding, NMS) on the same
random batch, models built in this process, medians of `--repeats` timings taken in turns (ours, theirs, ours, ...).
Times are CPU seconds of this process (`time.process_time`) with `--threads` intra-op threads (default 1): on a
shared machine wall-clock time mostly measures the other jobs.
torchvision is timed twice: as its builders make it with `weights=None, weights_backbone=None` (every layer and every
BatchNorm trains), and "matched": frozen stem + stage 1 and frozen BatchNorm, which is how torchvision (and we, and
MMDetection) train from ImageNet weights. Ratios are ours / theirs: below 1.0 means ours is faster.

    python bench/speed_vs_torchvision.py [--size 512] [--batch 2] [--repeats 5] [--threads 1] [--only ATSS]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch
from torchvision.models import resnet50
from torchvision.models.detection import FCOS, RetinaNet, fcos_resnet50_fpn, retinanet_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.nms import non_max_suppression

from umop_yolo.cfg import MODELS_DIR
from umop_yolo.engine import runtime
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.dense_schema import load_model_yaml

runtime.register()  # a script is an entry point: the UMOP keys in Ultralytics' defaults, offline

NC = 80


def ours(name: str, umop: bool) -> DenseDetectionModel:
    cfg = load_model_yaml(MODELS_DIR / name)
    cfg["backbone"]["pretrained"] = None
    model = DenseDetectionModel(cfg, nc=NC, verbose=False)
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": umop})
    return model


def torchvision_matched(kind: type, size: int) -> torch.nn.Module:
    """torchvision's detector with the backbone set up as when it trains from ImageNet weights."""
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    return kind(backbone, num_classes=NC, min_size=size, max_size=size)


def random_batch(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Images in [0, 1] and 3-12 boxes (xyxy pixels) with labels per image."""
    g = torch.Generator().manual_seed(seed)
    images, boxes, labels = torch.rand(n, 3, size, size, generator=g), [], []
    for _ in range(n):
        k = int(torch.randint(3, 13, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * size * 0.7
        wh = 16 + torch.rand(k, 2, generator=g) * size * 0.3
        boxes.append(torch.cat([xy, (xy + wh).clamp(max=size)], 1))
        labels.append(torch.randint(0, NC, (k,), generator=g))
    return images, boxes, labels


def ultralytics_batch(images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> dict:
    size = images.shape[-1]
    xyxy = torch.cat(boxes) / size
    return {"img": images, "batch_idx": torch.cat([torch.full((len(b),), float(i)) for i, b in enumerate(boxes)]),
            "cls": torch.cat(labels).float()[:, None],
            "bboxes": torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)}


def train_step(model: torch.nn.Module, step: Callable[[], torch.Tensor]) -> Callable[[], None]:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)

    def run() -> None:
        model.train()
        opt.zero_grad()
        step().backward()
        opt.step()

    return run


def timed(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def compare(pairs: dict[str, tuple[Callable, Callable]], repeats: int, only: str) -> dict[str, tuple[float, float]]:
    """Median seconds of each (ours, theirs) pair whose name contains `only`, measured alternately after one warm-up
    run each."""
    out = {}
    for name, (a, b) in pairs.items():
        if only not in name:
            continue
        a(), b()  # warm-up: allocator, oneDNN kernels, anchor caches
        ta, tb = [], []
        for _ in range(repeats):
            ta.append(timed(a))
            tb.append(timed(b))
        out[name] = (statistics.median(ta), statistics.median(tb))
        (ta, tb) = out[name]
        print(f"{name:58s} ours {ta:7.3f} s  theirs {tb:7.3f} s  ratio {ta / tb:5.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="square input size (a multiple of 128)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", default="", help="run only the comparisons whose name contains this text")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}; batch {args.batch} x 3 x "
          f"{args.size} x {args.size}; median CPU seconds of {args.repeats}")
    images, boxes, labels = random_batch(args.batch, args.size)
    batch = ultralytics_batch(images, boxes, labels)
    tv_images, tv_targets = list(images), [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]

    def ours_train(model):
        return train_step(model, lambda: model.loss(batch)[0])

    def tv_train(model):
        return train_step(model, lambda: sum(model(tv_images, tv_targets).values()))

    def ours_infer(model, iou):
        @torch.no_grad()
        def run():
            model.eval()
            non_max_suppression(model(images)[0], 0.05, iou, multi_label=True, max_det=100)
        return run

    def tv_infer(model):
        @torch.no_grad()
        def run():
            model.eval()
            model(tv_images)
        return run

    models = {
        "retina": ours("retinanet_r50_fpn.yaml", umop=False),
        "retina_umop": ours("retinanet_r50_fpn.yaml", umop=True),
        "atss": ours("atss_r50_fpn.yaml", umop=False),
        "atss_umop": ours("atss_r50_fpn.yaml", umop=True),
        "tv_retina": retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NC,
                                            min_size=args.size, max_size=args.size),
        "tv_retina_matched": torchvision_matched(RetinaNet, args.size),
        "tv_fcos": fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NC,
                                     min_size=args.size, max_size=args.size),
        "tv_fcos_matched": torchvision_matched(FCOS, args.size),
    }
    compare({
        "train step: RetinaNet vs torchvision RetinaNet (matched)":
            (ours_train(models["retina"]), tv_train(models["tv_retina_matched"])),
        "train step: RetinaNet vs torchvision RetinaNet (as built)":
            (ours_train(models["retina"]), tv_train(models["tv_retina"])),
        "train step: RetinaNet + UMOP vs RetinaNet":
            (ours_train(models["retina_umop"]), ours_train(models["retina"])),
        "inference:  RetinaNet vs torchvision RetinaNet":
            (ours_infer(models["retina"], 0.5), tv_infer(models["tv_retina_matched"])),
        "train step: ATSS vs torchvision FCOS (matched)":
            (ours_train(models["atss"]), tv_train(models["tv_fcos_matched"])),
        "train step: ATSS vs torchvision FCOS (as built)":
            (ours_train(models["atss"]), tv_train(models["tv_fcos"])),
        "train step: ATSS + UMOP vs ATSS":
            (ours_train(models["atss_umop"]), ours_train(models["atss"])),
        "inference:  ATSS vs torchvision FCOS":
            (ours_infer(models["atss"], 0.6), tv_infer(models["tv_fcos_matched"])),
    }, args.repeats, args.only)

if __name__ == "__main__":
    main()
