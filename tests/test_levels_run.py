"""Level diagnostics end to end through the CLI: a tiny training run's levels.csv, results columns and plots,
`umop plots` on an existing run, `umop analyze` on the tiny dataset and on coco128."""

import math

import pytest

from conftest import read_csv, tiny_train_args
from umop_yolo.cli import main

PNG = b"\x89PNG\r\n\x1a\n"
LEVELS = ("P3", "P4", "P5")
PLOTS = ("levels_pos_ratio.png", "levels_cls_loss.png", "levels_gamma_alpha.png")


def is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def umop_run(tiny_shapes, tmp_path_factory):
    """2 epochs of 4 batches (16 images, batch 4), level_log_interval=3."""
    project = tmp_path_factory.mktemp("levels")
    assert main(["train", *tiny_train_args(tiny_shapes, project, epochs=2, batch=4, level_log_interval=3)]) == 0
    return project / "run"


@pytest.mark.slow
def test_training_writes_bounded_levels_csv_with_results_columns_and_three_plots(umop_run):
    rows = read_csv(umop_run / "levels.csv")
    assert len(rows) == 2 * math.ceil(4 / 3) * len(LEVELS)  # per epoch: windows of 3 + 1 steps, one row per level
    assert [int(r["iteration"]) for r in rows if r["level"] == "P3"] == [3, 4, 7, 8]
    assert all(1.5 <= float(r["gamma"]) <= 2.5 and 0 <= float(r["pos_ratio_min"]) <= float(r["pos_ratio_max"]) <= 1
               for r in rows)
    results = read_csv(umop_run / "results.csv")
    for epoch, result in enumerate(results, 1):
        for level in LEVELS:
            windows = [r for r in rows if r["level"] == level and int(r["epoch"]) == epoch]
            steps = sum(int(r["iterations"]) for r in windows)
            mean = sum(float(r["pos_ratio_mean"]) * int(r["iterations"]) for r in windows) / steps
            assert float(result[f"level/pos_ratio_{level}"]) == pytest.approx(mean, rel=1e-4)
            assert f"pfl/gamma_{level}" in result and f"level/cls_loss_{level}" in result
    assert all(is_png(umop_run / name) for name in PLOTS)


@pytest.mark.slow
def test_plots_command_redraws_an_existing_run(umop_run, capsys):
    for name in PLOTS:
        (umop_run / name).unlink()
    assert main(["plots", f"run={umop_run}"]) == 0
    assert all(is_png(umop_run / name) for name in PLOTS)
    assert capsys.readouterr().out.count(".png") == 3


def test_plots_command_errors_in_one_line(tmp_path, capsys):
    assert main(["plots", f"run={tmp_path}"]) == 2
    assert main(["plots"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("umop: error:") and "levels.csv" in err[0] and "run=" in err[1]


@pytest.mark.slow
def test_stock_run_records_positives_and_loss_but_no_gamma(tiny_shapes, tmp_path):
    assert main(["train", *tiny_train_args(tiny_shapes, tmp_path, umop=False, batch=4, level_log_interval=2)]) == 0
    run = tmp_path / "run"
    rows = read_csv(run / "levels.csv")
    assert len(rows) == 2 * len(LEVELS) and all(r["gamma"] == "" and float(r["cls_loss"]) > 0 for r in rows)
    result = read_csv(run / "results.csv")[0]
    assert not any(k.startswith("pfl/") for k in result) and all(f"level/pos_ratio_{n}" in result for n in LEVELS)
    assert is_png(run / PLOTS[0]) and is_png(run / PLOTS[1]) and not (run / PLOTS[2]).exists()


def analyze_args(data, project, **kw):
    args = dict(model="yolov8n.yaml", data=data, imgsz=128, batch=4, device="cpu", project=project, name="an",
                batches=2)
    args.update(kw)
    return [f"{k}={v}" for k, v in args.items()]


def check_analysis(out):
    table = read_csv(out / "levels_table.csv")
    assert [r["level"] for r in table] == list(LEVELS)
    assert [int(r["anchors_per_image"]) for r in table] == [256, 64, 16]
    for r in table:
        assert 0 <= float(r["pos_pct_q1"]) <= float(r["pos_pct_median"]) <= float(r["pos_pct_q3"]) <= 100
        assert 0 <= float(r["objects_pct"]) <= 100
    assert sum(float(r["positives_per_image"]) for r in table) > 0
    assert is_png(out / "levels_pos_ratio.png")


def test_analyze_writes_table_and_plot_for_the_tiny_dataset(tiny_shapes, tmp_path):
    assert main(["analyze", *analyze_args(tiny_shapes, tmp_path)]) == 0
    check_analysis(tmp_path / "an")


def test_analyze_on_coco128(coco128, tmp_path):
    assert main(["analyze", *analyze_args("coco128.yaml", tmp_path, batch=8, batches=1)]) == 0
    check_analysis(tmp_path / "an")


def test_analyze_rejects_a_bad_batch_count(tiny_shapes, tmp_path, capsys):
    assert main(["analyze", *analyze_args(tiny_shapes, tmp_path, batches=0)]) == 2
    assert "batches=0" in capsys.readouterr().err
