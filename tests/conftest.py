"""Shared fixtures and helpers: a private dataset cache, a tiny generated dataset, where ../shared lives, tiny
training arguments, a training batch and a CSV reader."""

import csv
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)  # CI: the same examples every run, no flakes
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("UMOP_CACHE_DIR", tempfile.mkdtemp(prefix="umop-test-cache-"))  # keep ~/.cache clean

SHARED = Path(__file__).resolve().parents[2] / "shared"
COCO128 = SHARED / "data" / "coco128"


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> Path:
    """A 16/8-image, 128 px version of the built-in shapes dataset (generated on first use)."""
    path = tmp_path_factory.mktemp("data") / "tiny_shapes.yaml"
    path.write_text(
        "generate: {builder: shapes, seed: 0, n_train: 16, n_val: 8, imgsz: 128}\n"
        "names: {0: circle, 1: square, 2: triangle, 3: cross, 4: star}\n"
    )
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private dataset cache for one test."""
    monkeypatch.setenv("UMOP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _logger_messages(level: int):
    """Messages Ultralytics' LOGGER logs at `level` and above while the test runs (it does not propagate to caplog)."""
    from ultralytics.utils import LOGGER

    seen: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: seen.append(record.getMessage())
    LOGGER.addHandler(handler)
    yield seen
    LOGGER.removeHandler(handler)


@pytest.fixture
def warnings_seen():
    """Messages Ultralytics' LOGGER warns while the test runs."""
    yield from _logger_messages(logging.WARNING)


@pytest.fixture
def logged():
    """Messages Ultralytics' LOGGER logs at INFO and above while the test runs."""
    yield from _logger_messages(logging.INFO)


@pytest.fixture
def coco128() -> Path:
    if not COCO128.is_dir():
        pytest.skip("../shared/data/coco128 is not present")
    return COCO128


def tiny_train_args(data: Path, project: Path, **kw) -> list[str]:
    """key=value arguments for a 1-epoch CPU training of YOLOv8n at 128 px."""
    args = dict(model="yolov8n.yaml", data=data, epochs=1, imgsz=128, batch=8, device="cpu", workers=0,
                project=project, name="run", plots=False, val=True)
    args.update(kw)
    return [f"{k}={v}" for k, v in args.items()]


def tiny_batch() -> dict:
    """A seeded training batch as Ultralytics collates it: two 128 px images, three boxes (normalised xywh)."""
    g = torch.Generator().manual_seed(0)
    return {"img": torch.rand(2, 3, 128, 128, generator=g), "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
            "cls": torch.tensor([[0.0], [2.0], [1.0]]),
            "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.2, 0.2, 0.1, 0.1], [0.6, 0.6, 0.8, 0.5]])}


def read_csv(path: Path, value: Callable[[str], object] = str) -> list[dict]:
    """Rows of a CSV log (results.csv, levels.csv, ablation.csv) as dicts; keys and values stripped, values
    converted by `value` (e.g. float)."""
    with open(path, encoding="utf-8") as f:
        return [{k.strip(): value(v.strip()) for k, v in row.items()} for row in csv.DictReader(f)]
