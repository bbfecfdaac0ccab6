"""Shared fixtures and functions: a private dataset cache, a tiny generated dataset, where ../shared lives, tiny
training arguments, a training batch, a CSV reader and the messages Ultralytics logs."""

import csv
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from umop_yolo import offline

offline.configure()  # the tests run the package as its entry points do: offline, before Ultralytics is imported
from umop_yolo.engine.runtime import register  # noqa: E402  (imports Ultralytics)

register()  # the UMOP keys in Ultralytics' defaults, which tests that build models and losses directly read

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


def ultralytics_messages(level: int) -> Iterator[list[str]]:
    """Messages of `level` and above that Ultralytics' LOGGER emits (after its filters) until the generator closes;
    the LOGGER does not propagate to caplog."""
    from ultralytics.utils import LOGGER

    seen: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: seen.append(record.getMessage())
    LOGGER.addHandler(handler)
    yield seen
    LOGGER.removeHandler(handler)


@pytest.fixture
def warnings_seen() -> Iterator[list[str]]:
    """Messages Ultralytics' LOGGER warns while the test runs."""
    yield from ultralytics_messages(logging.WARNING)


@pytest.fixture
def messages_logged() -> Iterator[list[str]]:
    """Every message Ultralytics' LOGGER emits while the test runs."""
    yield from ultralytics_messages(logging.INFO)


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
