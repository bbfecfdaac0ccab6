"""Drawn scenes with exact boxes, a stub detector that finds them, and the validation / prediction / training calls
the eval tests share.

Images are PNGs of red (class 0) and green (class 1) rectangles whose long side equals IMGSZ, so nothing is resampled
and the stub's boxes are exact.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from umop_yolo.engine.predictor import CocoDetectionPredictor
from umop_yolo.engine.trainer import UmopTrainer
from umop_yolo.engine.validator import CocoDetectionValidator

IMGSZ = 160
COLORS = {0: (0, 0, 255), 1: (0, 255, 0)}  # BGR: class 0 red, class 1 green
# (height, width) and boxes (class, x1, y1, x2, y2) with exclusive ends; small (< 32^2 px), medium and large boxes
SCENES = [
    ((120, 160), [(0, 4, 4, 108, 104), (1, 112, 8, 152, 44), (0, 120, 60, 132, 74), (1, 140, 100, 150, 110)]),
    ((160, 120), [(1, 4, 4, 104, 108), (0, 8, 112, 48, 150), (1, 60, 120, 74, 132)]),
    ((160, 160), [(0, 50, 50, 150, 150), (0, 4, 4, 44, 40), (1, 10, 60, 22, 72), (1, 60, 4, 100, 40)]),
    ((96, 160), [(1, 4, 2, 114, 92), (0, 120, 10, 134, 22), (0, 118, 40, 156, 80)]),
]


def draw_scene(path: Path, i: int) -> None:
    """Write SCENES[i] as a PNG image at `path` (folders created)."""
    (h, w), boxes = SCENES[i]
    image = np.zeros((h, w, 3), np.uint8)
    for c, x1, y1, x2, y2 in boxes:
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), COLORS[c], thickness=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def write_scenes(root: Path, large: bool = True) -> Path:
    """Write the SCENES as PNG images with YOLO labels under `root`; return the data YAML (train = val).

    `large=False` leaves the large boxes (over 96^2 px) out of the labels: no ground truth in COCO's large range.
    """
    (root / "labels" / "val").mkdir(parents=True, exist_ok=True)
    for i, ((h, w), boxes) in enumerate(SCENES):
        draw_scene(root / "images" / "val" / f"scene{i}.png", i)
        lines = [f"{c} {(x1 + x2) / 2 / w:.8f} {(y1 + y2) / 2 / h:.8f} {(x2 - x1) / w:.8f} {(y2 - y1) / h:.8f}"
                 for c, x1, y1, x2, y2 in boxes if large or (x2 - x1) * (y2 - y1) <= 96**2]
        (root / "labels" / "val" / f"scene{i}.txt").write_text("\n".join(lines) + "\n")
    data = root / "scenes.yaml"
    data.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n  0: red\n  1: green\n")
    return data


class ColorBoxDetector(nn.Module):
    """Stub head-contract model: eval forward returns (y, {}) with y = (B, 4+2, N) xywh pixel boxes + class scores.

    With `noise` > 0, boxes are jittered by that fraction of their size, scores are random and two random false
    positives per image are added (seeded), which gives COCO numbers strictly between 0 and 1.
    """

    def __init__(self, noise: float = 0.0, empty: bool = False) -> None:
        super().__init__()
        self.names = {0: "red", 1: "green"}
        self.register_buffer("stride", torch.tensor([32.0]))
        self.noise, self.empty = noise, empty
        self.generator = torch.Generator().manual_seed(0)

    def _find(self, image: torch.Tensor) -> list[list[float]]:
        r, g, b = (image[i] for i in range(3))
        rows = []
        for c, mask in enumerate(((r > 0.7) & (g < 0.3) & (b < 0.3), (g > 0.7) & (r < 0.3) & (b < 0.3))):
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask.cpu().numpy().astype(np.uint8), connectivity=4)
            for left, top, w, h, _ in stats[1:].tolist():
                rows.append([left + w / 2, top + h / 2, w, h, float(c == 0), float(c == 1)])
        return rows

    def _perturb(self, rows: list[list[float]], size: tuple[int, int]) -> list[list[float]]:
        t = torch.tensor(rows)
        t[:, :4] += torch.randn(len(t), 4, generator=self.generator) * self.noise * t[:, 2:4].repeat(1, 2)
        t[:, 4:] *= torch.rand(len(t), 1, generator=self.generator) * 0.7 + 0.3
        fp = torch.rand(2, 6, generator=self.generator) * torch.tensor([size[1], size[0], 40, 40, 0.5, 0.5])
        return torch.cat((t, fp)).tolist()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, dict]:
        found = [[] if self.empty else self._find(im) for im in x]
        if self.noise:
            found = [self._perturb(rows, x.shape[-2:]) for rows in found]
        y = torch.zeros(len(x), 32, 6)  # 32 anchors (NMS reads a last dim of 6 as an end-to-end output)
        for i, rows in enumerate(found):
            if rows:
                y[i, : len(rows)] = torch.tensor(rows)
        return y.permute(0, 2, 1).to(x.device), {}


def validate(data: Path, save_dir: Path, model: nn.Module, **overrides) -> tuple[CocoDetectionValidator, dict]:
    """Standalone validation of `model` at IMGSZ on CPU."""
    args = {"data": str(data), "imgsz": IMGSZ, "batch": 2, "device": "cpu", "workers": 0, "plots": False, **overrides}
    validator = CocoDetectionValidator(save_dir=save_dir, args=args)
    return validator, validator(model=model)


def standalone_cocoeval(gt_json: Path, predictions: Path, img_ids: list[int] | None = None) -> np.ndarray:
    """pycocotools run on its own over the files the validator left on disk: COCOeval.stats[0:6]."""
    gt = COCO(str(gt_json))
    evaluator = COCOeval(gt, gt.loadRes(str(predictions)), "bbox")
    if img_ids is not None:
        evaluator.params.imgIds = img_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats[:6]


def predict(source: Path, save_dir: Path, model: nn.Module, **overrides) -> list:
    """CocoDetectionPredictor on `source` at IMGSZ on CPU, saving images, YOLO txt and predictions.json."""
    args = {"imgsz": IMGSZ, "device": "cpu", "save_json": True, "save_txt": True, "save": True, "verbose": False}
    predictor = CocoDetectionPredictor(overrides={**args, "project": str(save_dir.parent), "name": save_dir.name,
                                                  **overrides})
    return predictor(source=str(source), model=model)


def train_on_scenes(data: Path, project: Path, epochs: int) -> UmopTrainer:
    """`epochs` of YOLOv8n at 64 px on CPU through the project's trainer, validating every epoch; returns the
    trainer."""
    args = dict(model="yolov8n.yaml", data=str(data), epochs=epochs, imgsz=64, batch=4, device="cpu", workers=0,
                project=str(project), name="run", plots=False, amp=False, conf=1e-4)
    trainer = UmopTrainer(overrides=args)
    trainer.train()
    return trainer
