"""Degenerate batches through the real training loss: finite loss, loss items and gradients, and training goes on.

Each case runs the model's own criterion (`model.loss`, built by `init_criterion` from UMOP's settings) on one batch,
then a few optimizer steps. `MODELS` is the parametrisation point for detectors: YOLOv8n (PFLDetectionLoss) and the
RetinaNet/ATSS baselines (`DenseDetectionModel`).
"""

import copy

import pytest
import torch
from ultralytics.cfg import get_cfg

from umop_yolo.cfg import MODELS_DIR
from umop_yolo.engine.build import build_model
from umop_yolo.engine.dense import DenseDetectionModel

IMGSZ, BATCH, NC = 64, 2, 5
MODELS = {  # name: builder of a fresh model with NC classes
    "yolov8n": lambda: build_model("yolov8n.yaml", nc=NC, verbose=False),
    "retinanet_r18": lambda: DenseDetectionModel(MODELS_DIR / "retinanet_r18_fpn.yaml", nc=NC, verbose=False),
    "atss_r18": lambda: DenseDetectionModel(MODELS_DIR / "atss_r18_fpn.yaml", nc=NC, verbose=False),
}


def boxes(image, xywh, cls=0):
    """Label rows for one image: (batch_idx, cls, cx, cy, w, h), normalised."""
    xywh = torch.as_tensor(xywh, dtype=torch.float32).view(-1, 4)
    return torch.cat([torch.full((len(xywh), 1), float(image)), torch.full((len(xywh), 1), float(cls)), xywh], 1)


def crowd(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(n, 2, generator=g) * 0.3 + 2 / IMGSZ
    centre = wh / 2 + torch.rand(n, 2, generator=g) * (1 - wh)
    return torch.cat([centre, wh], 1)


PIXEL = 1 / IMGSZ
CASES = {
    "no_objects": torch.zeros(0, 6),
    "one_pixel_boxes_only": torch.cat([boxes(0, [[0.2, 0.2, PIXEL, PIXEL], [0.7, 0.6, PIXEL, PIXEL]]),
                                       boxes(1, [0.5, 0.5, PIXEL, PIXEL])]),
    "image_sized_box_and_an_empty_image": boxes(0, [0.5, 0.5, 1.0, 1.0], cls=4),
    "duplicate_boxes": boxes(0, [[0.4, 0.5, 0.2, 0.3]] * 64, cls=2),
    "1200_objects_then_image_sized_tiny_and_duplicates": torch.cat([
        torch.cat([torch.zeros(1200, 1), torch.arange(1200).remainder(NC)[:, None].float(), crowd(1200)], 1),
        boxes(1, [0.5, 0.5, 1.0, 1.0]), boxes(1, [[0.3, 0.3, PIXEL, PIXEL]] * 3), boxes(1, [[0.6, 0.4, 0.1, 0.1]] * 20),
    ]),
}


def make_batch(rows):
    g = torch.Generator().manual_seed(0)
    return {
        "img": torch.rand(BATCH, 3, IMGSZ, IMGSZ, generator=g),
        "batch_idx": rows[:, 0],
        "cls": rows[:, 1:2],
        "bboxes": rows[:, 2:6],
    }


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    torch.manual_seed(0)
    m = MODELS[request.param]()
    m.args = get_cfg(overrides={"pfl_delta": 0.5})  # Ultralytics' defaults + UMOP's: what init_criterion reads
    return m


def level_gammas(criterion):
    stats = getattr(criterion, "last_stats", None) or getattr(getattr(criterion, "bce", None), "last_stats", {})
    return stats.get("gamma")


@pytest.mark.parametrize("case", list(CASES))
def test_degenerate_batch_gives_finite_loss_and_gradients_and_training_goes_on(model, case):
    model = copy.deepcopy(model).train()
    batch = make_batch(CASES[case])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    for _ in range(2):  # the step after an update must be finite too
        optimizer.zero_grad()
        loss, items = model.loss(batch)
        assert torch.isfinite(loss).all(), (case, loss)
        assert all(torch.isfinite(v).all() for v in items.values()), (case, items)
        loss.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None), case
        optimizer.step()
    gamma = level_gammas(model.criterion)
    assert gamma is not None and ((gamma >= 1.5 - 1e-6) & (gamma <= 2.5 + 1e-6)).all(), gamma
    assert all(torch.isfinite(p).all() for p in model.parameters())
