"""Divergence: a finite loss explosion (lr0=1) is detected, recovered from last.pt like a NaN, and after repeated
failures stops in one line naming the learning rate."""

import csv
import math

import pytest

from conftest import tiny_train_args
from umop_yolo.cfg import experiment_args
from umop_yolo.cli import main, parse_args
from umop_yolo.engine.run.divergence import FACTOR, PATIENCE, WARM_STEPS, DivergenceError, DivergenceMonitor
from umop_yolo.engine.trainer import UmopTrainer

# 4 optimizer steps per epoch (16 images, batch 4, no gradient accumulation), the full lr from the first step
FAST = dict(batch=4, nbs=4, warmup_epochs=0, plots=False)


def monitor_after(losses: list[float]) -> DivergenceMonitor:
    monitor = DivergenceMonitor()
    for loss in losses:
        monitor.step(loss)
    return monitor


def test_step_losses_explode_only_after_patience_steps_far_above_the_running_median():
    normal = [30.0 + i % 5 for i in range(WARM_STEPS)]  # median 32
    huge = FACTOR * 32 * 2
    assert monitor_after(normal + [huge] * (PATIENCE - 1)).cause is None
    assert monitor_after(normal + [huge] * (PATIENCE - 1) + [31.0] + [huge] * (PATIENCE - 1)).cause is None
    exploded = monitor_after(normal + [huge] * PATIENCE).cause
    assert "training loss exploded to 6.4e+04" in exploded and "median of 32" in exploded
    assert monitor_after(normal + [huge] * PATIENCE).history == monitor_after(normal).history  # spikes stay out


def test_warm_steps_nan_and_a_tenfold_level_shift_are_no_explosion():
    assert monitor_after([1.0] * (WARM_STEPS - 1) + [FACTOR * 10] * PATIENCE).cause is None  # not warm yet
    assert monitor_after([30.0] * WARM_STEPS + [math.nan, math.inf] * PATIENCE).cause is None  # Ultralytics' case
    assert monitor_after([30.0] * WARM_STEPS + [300.0] * 100).cause is None


def test_validation_loss_explodes_against_the_training_loss_with_a_floor():
    monitor = DivergenceMonitor()
    monitor.validated(train_loss=0.001, val_loss=500.0)  # a memorised tiny dataset: the floor keeps it normal
    assert monitor.pop_cause() is None
    monitor.validated(train_loss=8.6, val_loss=2.4e18)
    assert monitor.pop_cause() == "the validation loss exploded to 2.4e+18 (training loss 8.6)"
    assert monitor.pop_cause() is None  # each epoch starts over
    monitor.validated(train_loss=8.6, val_loss=math.nan)
    assert "exploded to nan" in monitor.pop_cause()


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.slow
def test_lr0_1_stops_in_one_line_naming_the_learning_rate(optimizer, tiny_shapes, tmp_path, capsys):
    args = tiny_train_args(tiny_shapes, tmp_path, epochs=3, lr0=1, optimizer=optimizer, **FAST)
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("umop: error: training diverged in epoch 1")
    assert f"lr0=1, optimizer={optimizer}" in err[0]


@pytest.mark.slow
def test_an_explosion_after_a_saved_epoch_reloads_last_pt_and_stops_after_three_tries(
        tiny_shapes, tmp_path, warnings_seen):
    trainer = UmopTrainer(overrides=experiment_args(None, parse_args(tiny_train_args(
        tiny_shapes, tmp_path, epochs=3, optimizer="auto", level_log_interval=2, **FAST))))

    def lr_far_too_high_in_epoch_2(trainer):
        if trainer.epoch == 1:
            for group in trainer.optimizer.param_groups:
                group["lr"] = 1.0

    trainer.add_callback("on_train_batch_start", lr_far_too_high_in_epoch_2)
    named = r"epoch 2: .*again after 3 reloads of last\.pt; .*optimizer=AdamW\): lower lr0"  # what auto chose
    with pytest.raises(DivergenceError, match=named):
        trainer.train()
    reloads = [w for w in warnings_seen if "reloading last.pt" in w]
    assert [w[-len("(attempt 1/3)"):] for w in reloads] == ["(attempt 1/3)", "(attempt 2/3)", "(attempt 3/3)"]
    assert all("training diverged in epoch 2: the " in w and "\n" not in w for w in reloads)
    with open(tmp_path / "run" / "levels.csv") as f:
        epochs = [row["epoch"] for row in csv.DictReader(f) if row["level"] == "P3"]
    assert epochs == ["1", "1", "2", "2"]  # epoch 2 redone 4 times, recorded once
