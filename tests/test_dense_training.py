"""Tiny RetinaNet and ATSS learn through UmopTrainer; checkpoints reload, predict and export; UMOP logs gamma_l."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import read_csv
from umop_yolo.engine.api import UmopYOLO
from umop_yolo.engine.trainer import UmopTrainer

pytestmark = pytest.mark.slow  # every test trains


def draw_dataset(root: Path, n: int = 8, size: int = 128) -> Path:
    """n images of red boxes (class 0) and yellow discs (class 1) on grey; train = val (learning, not generalising)."""
    rng = np.random.default_rng(0)
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        img, rows = np.full((size, size, 3), 40, np.uint8), []
        for _ in range(2):
            c = int(rng.integers(2))
            w, h = (rng.uniform(0.2, 0.5, 2) * size).astype(int)
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            if c == 0:
                cv2.rectangle(img, (x, y), (x + w, y + h), (40, 40, 230), -1)
            else:
                cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, (40, 200, 230), -1)
            rows.append(f"{c} {(x + w / 2) / size} {(y + h / 2) / size} {w / size} {h / size}")
        cv2.imwrite(str(root / "images" / f"{i}.png"), img)
        (root / "labels" / f"{i}.txt").write_text("\n".join(rows))
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images\nval: images\nnames: {{0: box, 1: disc}}\n")
    return data


@pytest.fixture(scope="module")
def boxes_and_discs(tmp_path_factory) -> Path:
    return draw_dataset(tmp_path_factory.mktemp("boxes_and_discs"))


def train(detector: str, data: Path, project: Path, **overrides) -> Path:
    """30 SGD steps of a narrow ResNet-18 RetinaNet/ATSS from scratch at 128 px; returns the run directory."""
    cfg = {"detector": detector, "backbone": {"depth": 18, "pretrained": None, "frozen_stages": -1, "norm_eval": False},
           "neck": {"out_channels": 32}, "head": {"feat_channels": 32, "stacked_convs": 1}}
    if detector == "atss":
        cfg["head"]["gn_groups"] = 8
    model = project / f"{detector}.yaml"
    model.write_text(yaml.safe_dump(cfg))
    args = dict(model=str(model), data=str(data), epochs=30, imgsz=128, batch=8, nbs=8, device="cpu", workers=0,
                plots=False, val=False, project=str(project), name=detector, optimizer="SGD", lr0=0.005, momentum=0.9,
                weight_decay=8e-4, warmup_epochs=1, warmup_bias_lr=0.0, mosaic=0.0, close_mosaic=0, amp=False,
                hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, translate=0.0, scale=0.0, **overrides)
    UmopTrainer(overrides=args).train()
    return project / detector


def total_loss(row: dict[str, float]) -> float:
    return sum(v for k, v in row.items() if k.startswith("train/"))


def test_retinanet_with_plain_focal_loss_learns(boxes_and_discs, tmp_path):
    rows = read_csv(train("retinanet", boxes_and_discs, tmp_path, umop=False) / "results.csv", float)
    assert total_loss(rows[-1]) < 0.6 * total_loss(rows[0])
    assert rows[-1]["metrics/mAP50(B)"] > 0.3
    for level in ("P3", "P4", "P5", "P6", "P7"):  # plain focal loss: the flat reference line of Fig. 3
        gamma, alpha = rows[-1][f"pfl/gamma_{level}"], rows[-1][f"pfl/alpha_{level}"]
        if rows[-1][f"level/pos_ratio_{level}"] > 0:
            assert (gamma, alpha) == (pytest.approx(2.0), pytest.approx(0.25))
        else:  # no positive on the level in the whole epoch: no measurement, a gap
            assert math.isnan(gamma) and math.isnan(alpha)
    assert all(f"level/pos_ratio_{level}" in rows[0] for level in ("P3", "P4", "P5", "P6", "P7"))


def test_atss_with_umop_learns_logs_gamma_per_level_and_its_checkpoint_predicts_and_exports(boxes_and_discs, tmp_path):
    run = train("atss", boxes_and_discs, tmp_path, umop=True)
    rows = read_csv(run / "results.csv", float)
    assert total_loss(rows[-1]) < 0.6 * total_loss(rows[0])
    assert rows[-1]["metrics/mAP50(B)"] > 0.3
    for level in ("P3", "P4", "P5", "P6", "P7"):
        gamma, alpha = rows[-1][f"pfl/gamma_{level}"], rows[-1][f"pfl/alpha_{level}"]
        if rows[-1][f"level/pos_ratio_{level}"] > 0:
            assert 1.5 <= gamma <= 2.5 and abs(alpha * gamma - 0.5) < 1e-3
        else:
            assert math.isnan(gamma) and math.isnan(alpha)
    image = str(boxes_and_discs.parent / "images" / "0.png")
    model = UmopYOLO(str(run / "weights" / "best.pt"))  # a fresh model from the checkpoint alone
    found = model.predict(image, imgsz=128, conf=0.25, verbose=False)[0].boxes
    assert len(found) > 0
    exported = UmopYOLO(model.export(format="torchscript", imgsz=128), task="detect")
    again = exported.predict(image, imgsz=128, conf=0.25, verbose=False)[0].boxes
    torch.testing.assert_close(again.xyxy, found.xyxy, rtol=1e-4, atol=1e-3)
