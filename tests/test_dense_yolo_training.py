"""RetinaNet / ATSS on YOLOv8n and YOLO11n through the CLI's experiment path: one tiny epoch of each shipped YAML
trains and validates; an interrupted run resumes; checkpoints load restricted, run TTA validation and `umop analyze`."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from ultralytics.utils.callbacks import base

from conftest import read_csv
from umop_yolo.cli import run
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.run.checkpoint import load_file
from umop_yolo.nn.yolo_backbone import YOLOBackbone

pytestmark = pytest.mark.slow  # every test trains

TINY = ["epochs=1", "imgsz=64", "batch=8", "device=cpu", "workers=0", "name=run"]  # 16 images: 2 steps an epoch
LEVELS = ("P3", "P4", "P5")


class Interrupted(Exception):
    """Raised by a callback to stop training after epoch 1's checkpoint, as a crash would."""


def check_run(run_dir: Path, epochs: int, umop: bool) -> None:
    """results.csv: finite losses, COCO AP, per-level statistics (gamma_l within gamma0 +- delta with UMOP); best.pt
    loads with the restricted unpickler into a dense model on a YOLO backbone."""
    table = read_csv(run_dir / "results.csv", float)
    assert [int(r["epoch"]) for r in table] == list(range(1, epochs + 1))
    for r in table:
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("train/box_loss", "train/cls_loss"))
        assert r["metrics/mAP50-95(B)"] >= 0 and all(f"level/pos_ratio_{p}" in r for p in LEVELS)
        for p in LEVELS:  # no positive on a level in the whole epoch: no measurement, a gap (NaN)
            gamma, measured = r[f"pfl/gamma_{p}"], r[f"level/pos_ratio_{p}"] > 0
            assert (1.5 <= gamma <= 2.5 if umop else gamma == 2.0) if measured else math.isnan(gamma)
    model = load_file(run_dir / "weights" / "best.pt")["model"]  # restricted: no trust_checkpoint
    assert type(model) is DenseDetectionModel and isinstance(model.model[0], YOLOBackbone)


@pytest.mark.parametrize("cfg, model", [("yolov8n_retinanet_focal", "retinanet_yolov8n.yaml"),
                                        ("yolov8n_atss_focal", "atss_yolo11n.yaml"),
                                        ("yolov8n_retinanet_umop", "retinanet_yolo11n.yaml")])
def test_each_yaml_trains_an_epoch_validates_and_predicts(cfg, model, tiny_shapes, tmp_path):
    run("train", [f"cfg={cfg}", f"model={model}", f"data={tiny_shapes}", f"project={tmp_path}", *TINY])
    check_run(tmp_path / "run", epochs=1, umop=cfg.endswith("umop"))
    best = tmp_path / "run" / "weights" / "best.pt"
    metrics = run("val", [f"model={best}", f"data={tiny_shapes}", "imgsz=64", "batch=8", "augment=true",
                          f"project={tmp_path}", "name=val"])  # TTA through NMS
    assert 0 <= metrics.box.map <= 1
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8))
    results = run("predict", [f"model={best}", f"source={image}", "imgsz=64", "save=false", f"project={tmp_path}",
                              "name=predict"])
    assert len(results) == 1 and results[0].orig_shape == (80, 100) and results[0].boxes.data.shape[1] == 6


def test_atss_yolov8n_umop_resumes_after_an_interruption_and_feeds_analyze(tiny_shapes, tmp_path, monkeypatch):
    def interrupt(trainer):
        raise Interrupted

    args = ["cfg=yolov8n_atss_umop", f"data={tiny_shapes}", f"project={tmp_path}", *TINY, "epochs=2"]
    with monkeypatch.context() as m:
        m.setitem(base.default_callbacks, "on_model_save", [*base.default_callbacks["on_model_save"], interrupt])
        with pytest.raises(Interrupted):
            run("train", args)
    last = tmp_path / "run" / "weights" / "last.pt"
    assert load_file(last)["epoch"] == 0  # epoch 1 saved with its optimizer, restricted load
    trainer = run("train", ["resume=true", f"model={last}"])
    assert trainer.start_epoch == 1
    check_run(tmp_path / "run", epochs=2, umop=True)

    report = run("analyze", [f"model={tmp_path / 'run' / 'weights' / 'best.pt'}", f"data={tiny_shapes}", "imgsz=64",
                             "batch=8", "batches=1", f"project={tmp_path}", "name=analyze"])[""]
    assert report.names == list(LEVELS) and sum(report.positives) > 0
