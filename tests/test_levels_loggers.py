"""The per-level means reach Ultralytics' loggers through trainer.metrics (checked with its TensorBoard callback), the
level plots are drawn and registered before on_train_end, and results.png is drawn from Ultralytics' own columns."""

import csv
import importlib

import pytest

from conftest import read_csv
from umop_yolo.engine.levels import level_plots
from umop_yolo.engine.levels.level_plots import (
    CLS_LOSS_PNG,
    GAMMA_ALPHA_PNG,
    POS_RATIO_PNG,
    plot_results_without_levels,
)
from umop_yolo.engine.trainer import UmopTrainer

LEVELS = ("P3", "P4", "P5")


@pytest.fixture
def plotted_columns(monkeypatch) -> list[list[str]]:
    """The header of every CSV handed to Ultralytics' plot_results (which then runs as usual)."""
    seen: list[list[str]] = []

    def spy(file, **kwargs):
        with open(file, newline="") as f:
            seen.append(next(csv.reader(f)))
        return real(file=file, **kwargs)

    real = level_plots.plot_results
    monkeypatch.setattr(level_plots, "plot_results", spy)
    return seen


def test_results_png_leaves_the_level_columns_to_the_level_plots(tmp_path, plotted_columns):
    standard = ["epoch", "time", "train/box_loss", "train/cls_loss", "metrics/mAP50-95(B)", "val/box_loss",
                "val/cls_loss", "lr/pg0"]
    levels = ["level/pos_ratio_P3", "pfl/gamma_P3", "level/cls_loss_P3", "level/cls_loss_P4"]
    rows = [standard + levels, *([str(e), "1.0", "2", "1", "0.1", "2.1", "1.1", "0.01", "0.01", "2", "0.3", "0.2"]
                                 for e in (1, 2))]
    with open(tmp_path / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    png = plot_results_without_levels(tmp_path / "results.csv")
    assert png == tmp_path / "results.png" and png.read_bytes()[:4] == b"\x89PNG"
    # plot_results halves the *loss* columns into a train row and a val row: only Ultralytics' losses may be there
    assert plotted_columns == [standard]


@pytest.fixture
def tensorboard_callbacks(monkeypatch) -> dict:
    """Ultralytics' TensorBoard callbacks as outside pytest (its module switches itself off when pytest runs)."""
    pytest.importorskip("tensorboard")
    import ultralytics.utils
    from ultralytics.utils.callbacks import tensorboard

    monkeypatch.setattr(ultralytics.utils, "TESTS_RUNNING", False)
    yield importlib.reload(tensorboard).callbacks
    monkeypatch.undo()
    importlib.reload(tensorboard)


@pytest.mark.slow
def test_level_means_reach_tensorboard_and_level_plots_precede_on_train_end(tiny_shapes, tmp_path, plotted_columns,
                                                                            tensorboard_callbacks):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from ultralytics.utils.callbacks import get_default_callbacks

    # val=False: epoch 2 starts with epoch 1's metrics (validation skipped), the level means must not move columns
    args = dict(model="yolov8n.yaml", data=str(tiny_shapes), epochs=3, imgsz=128, batch=8, device="cpu", workers=0,
                project=str(tmp_path), name="run", plots=True, val=False)
    callbacks = get_default_callbacks()
    for event in ("on_pretrain_routine_start", "on_fit_epoch_end", "teardown"):  # not its model graph (slow)
        callbacks[event].append(tensorboard_callbacks[event])
    at_train_end = {}
    callbacks["on_train_end"].append(lambda t: at_train_end.update({p.name: p.is_file() for p in t.plots}))
    UmopTrainer(overrides=args, _callbacks=callbacks).train()

    run = tmp_path / "run"
    assert all(at_train_end.get(name) for name in (POS_RATIO_PNG, CLS_LOSS_PNG, GAMMA_ALPHA_PNG, "results.png"))
    assert plotted_columns and not any(k.startswith(("pfl/", "level/")) for k in plotted_columns[0])
    rows = read_csv(run / "results.csv", float)
    assert len(rows) == 3
    for row in rows:  # the columns held their place in every epoch: alpha_l = w / gamma_l, pfl_w = 0.5
        assert all(row[f"pfl/alpha_{p}"] * row[f"pfl/gamma_{p}"] == pytest.approx(0.5, abs=0.05) for p in LEVELS)
    events = EventAccumulator(str(run))
    events.Reload()
    for key in (*(f"pfl/{k}_{p}" for k in ("gamma", "alpha") for p in LEVELS), "level/pos_ratio_P3",
                "level/cls_loss_P5"):
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [1, 2, 3]
        assert [e.value for e in logged] == pytest.approx([row[key] for row in rows], rel=1e-5)
