"""LevelRecorder on synthetic per-level stats: window aggregation into levels.csv, epoch means, no per-step sync."""

import csv
import math

import numpy as np
import pytest
import torch

from umop_yolo.engine.levels.level_stats import CSV_COLUMNS, LevelRecorder, step_values

NAMES = ["P3", "P4", "P5"]
SAMPLES = torch.tensor([512.0, 128.0, 32.0])


def stats(step: int, pfl: bool = True, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Step `step`: positives (step, 2 * step, 3) of (512, 128, 32) samples, loss (step, 10 step, 100 step)."""
    s = float(step)
    out = {"num_pos": torch.tensor([s, 2 * s, 3.0]), "num_samples": SAMPLES.clone(),
           "loss": torch.tensor([s, 10 * s, 100 * s])}
    if pfl:
        out |= {"gamma": torch.tensor([1.5 + 0.1 * s, 2.0, 2.5]), "alpha": torch.tensor([0.3, 0.25, 0.2])}
    return {k: v.to(device) for k, v in out.items()}


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_step_values_are_ratio_gamma_alpha_loss_with_nan_for_losses_without_pfl():
    v = step_values(stats(4))
    torch.testing.assert_close(v[:, 0], torch.tensor([4 / 512, 8 / 128, 3 / 32]))
    torch.testing.assert_close(v[:, 1:], torch.tensor([[1.9, 0.3, 4.0], [2.0, 0.25, 40.0], [2.5, 0.2, 400.0]]))
    assert step_values(stats(4, pfl=False))[:, 1:3].isnan().all()


def test_windows_become_bounded_csv_rows_with_quartiles_and_means(tmp_path):
    path = tmp_path / "levels.csv"
    rec = LevelRecorder(path, interval=4)
    rec.start_epoch(1, 0, NAMES)
    for step in range(1, 11):  # 10 steps: windows of 4, 4 and the epoch's last 2
        rec.update(stats(step))
    summary = rec.end_epoch()
    rows = read(path)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == math.ceil(10 / 4) * len(NAMES)
    assert [r["iteration"] for r in rows[::3]] == ["4", "8", "10"]
    assert [r["iterations"] for r in rows[::3]] == ["4", "4", "2"]
    p3 = [r for r in rows if r["level"] == "P3"]
    window = np.arange(5, 9) / 512  # P3's positive proportion over steps 5..8
    q = np.percentile(window, [0, 25, 50, 75, 100])
    for key, want in zip(("min", "q1", "median", "q3", "max"), q):
        assert float(p3[1][f"pos_ratio_{key}"]) == pytest.approx(want, rel=1e-5)
    assert float(p3[1]["pos_ratio_mean"]) == pytest.approx(window.mean(), rel=1e-5)
    assert float(p3[1]["gamma"]) == pytest.approx(1.5 + 0.1 * 6.5, rel=1e-5)
    assert float(p3[2]["cls_loss"]) == pytest.approx(9.5, rel=1e-5)
    # epoch means over all 10 steps, whatever the windows
    assert summary["level/pos_ratio_P3"] == pytest.approx(5.5 / 512, rel=1e-5)
    assert summary["level/pos_ratio_P5"] == pytest.approx(3 / 32, rel=1e-5)
    assert summary["pfl/gamma_P3"] == pytest.approx(1.5 + 0.55, rel=1e-5)
    assert summary["pfl/alpha_P4"] == pytest.approx(0.25) and summary["level/cls_loss_P4"] == pytest.approx(55.0)


def test_rows_grow_with_windows_not_steps_and_epochs_restart_windows(tmp_path):
    path = tmp_path / "levels.csv"
    rec = LevelRecorder(path, interval=10)
    for epoch in range(3):
        rec.start_epoch(epoch + 1, epoch * 25, NAMES)
        for step in range(25):
            rec.update(stats(step))
        rec.end_epoch()
    rows = read(path)
    assert len(rows) == 3 * math.ceil(25 / 10) * len(NAMES)  # 75 steps -> 9 windows, not 75 rows per level
    assert [int(r["iteration"]) for r in rows[::3]] == [10, 20, 25, 35, 45, 50, 60, 70, 75]
    assert [r["epoch"] for r in rows[::3]] == ["1"] * 3 + ["2"] * 3 + ["3"] * 3


def test_stock_loss_stats_leave_gamma_alpha_empty_and_out_of_results(tmp_path):
    rec = LevelRecorder(tmp_path / "levels.csv", interval=2)
    rec.start_epoch(1, 0, NAMES)
    for step in range(3):
        rec.update(stats(step, pfl=False))
    summary = rec.end_epoch()
    assert set(summary) == {f"level/{k}_{n}" for k in ("pos_ratio", "cls_loss") for n in NAMES}
    assert all(r["gamma"] == "" and r["alpha"] == "" for r in read(tmp_path / "levels.csv"))


def test_a_restarted_epoch_drops_its_unflushed_steps():
    rec = LevelRecorder(None, interval=10)
    rec.start_epoch(1, 0, NAMES)
    rec.update(stats(100))
    rec.start_epoch(1, 0, NAMES)  # e.g. Ultralytics' OOM or NaN retry of the epoch
    rec.update(stats(2))
    assert rec.end_epoch()["level/pos_ratio_P3"] == pytest.approx(2 / 512)
    assert rec.end_epoch() == {}


def test_a_resumed_or_redone_epoch_replaces_its_csv_rows(tmp_path):
    """levels.csv after a resume or a NaN/divergence recovery holds each epoch's windows once, as results.csv."""
    path = tmp_path / "levels.csv"

    def train(rec, epoch, steps):
        rec.start_epoch(epoch, (epoch - 1) * 25, NAMES)
        for step in range(steps):
            rec.update(stats(step))

    killed = LevelRecorder(path, interval=10)
    train(killed, 1, 25)
    killed.end_epoch()
    train(killed, 2, 12)  # killed in epoch 2 after one window was written; last.pt holds epoch 1
    resumed = LevelRecorder(path, interval=10)
    train(resumed, 2, 25)
    resumed.end_epoch()
    train(resumed, 3, 20)  # diverged: Ultralytics reloads last.pt and redoes epoch 3
    train(resumed, 3, 25)
    resumed.end_epoch()
    rows = read(path)
    assert [int(r["iteration"]) for r in rows[::3]] == [10, 20, 25, 35, 45, 50, 60, 70, 75]
    assert [r["epoch"] for r in rows[::3]] == ["1"] * 3 + ["2"] * 3 + ["3"] * 3


def test_steps_inside_a_window_never_read_the_device():
    """Meta tensors have no data: any host read (sync) would raise. Only the window's flush reads."""
    rec = LevelRecorder(None, interval=3)
    rec.start_epoch(1, 0, NAMES)
    rec.update(stats(1, device="meta"))
    rec.update(stats(2, device="meta"))
    assert rec.count == 2 and rec.buffer.device.type == "meta"
    with pytest.raises(NotImplementedError):  # the third step completes the window: one copy to the host
        rec.update(stats(3, device="meta"))


def test_empty_stats_are_skipped_and_interval_must_be_positive():
    rec = LevelRecorder(None, interval=2)
    rec.update({})
    assert rec.count == 0 and rec.end_epoch() == {}
    with pytest.raises(ValueError):
        LevelRecorder(None, interval=0)


def test_steps_without_positives_on_a_level_leave_its_gamma_alpha_out_of_the_means(tmp_path):
    """The fallback gamma of a level without positives (C_l = 2) is no measurement: it used to pull the window and
    epoch means of a level towards 2.0 (a late "rise" of P5 when close_mosaic leaves it without positives)."""
    def sparse(step: int) -> dict[str, torch.Tensor]:
        out = stats(step)
        if step % 2:  # odd steps: no positive on P5, whose gamma is then the fallback 2.0
            out["num_pos"][2], out["gamma"][2], out["alpha"][2] = 0.0, 2.0, 0.25
        return out

    assert step_values(sparse(1))[2, 1:3].isnan().all() and not step_values(sparse(2))[2, 1:3].isnan().any()
    path = tmp_path / "levels.csv"
    rec = LevelRecorder(path, interval=2)
    rec.start_epoch(1, 0, NAMES)
    for step in (1, 3, 2, 4):  # a first window without P5 positives, then one where every step has them
        rec.update(sparse(step))
    summary = rec.end_epoch()
    p5 = [r for r in read(path) if r["level"] == "P5"]
    assert p5[0]["gamma"] == "" and p5[0]["alpha"] == ""  # a gap, not 2.0
    assert float(p5[1]["gamma"]) == pytest.approx(2.5) and float(p5[0]["cls_loss"]) == pytest.approx(200.0)
    assert summary["pfl/gamma_P5"] == pytest.approx(2.5) and summary["pfl/alpha_P5"] == pytest.approx(0.2)
    assert summary["pfl/gamma_P3"] == pytest.approx(1.5 + 0.1 * 2.5)  # levels with positives: every step counts
    from umop_yolo.engine.levels.level_plots import GAMMA_ALPHA_PNG, plot_run

    assert tmp_path / GAMMA_ALPHA_PNG in plot_run(tmp_path)  # drawn with the gap, not left out
