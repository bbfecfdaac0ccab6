"""YOLO26: the shipped experiment pair, and the level statistics of both branches of its end-to-end loss (E2ELoss's
one-to-many `o2m` and one-to-one `o2o`) in levels.csv, results.csv and the level plots."""

import math
from types import SimpleNamespace

import pytest
import torch
from ultralytics.cfg import get_cfg
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.loss import E2ELoss

from conftest import read_csv, tiny_batch
from umop_yolo.cfg import CFG_DIR, DATA_DIR, load_yaml, mode_args
from umop_yolo.cli import main
from umop_yolo.engine.build import build_model
from umop_yolo.engine.levels.level_plots import CLS_LOSS_PNG, GAMMA_ALPHA_PNG, POS_RATIO_PNG, plot_run
from umop_yolo.engine.levels.level_stats import BRANCH_COLUMNS, CSV_COLUMNS, LevelRecorder, branch_stats, o2m_weight
from umop_yolo.engine.trainer import UmopTrainer

LEVELS = ["P3", "P4", "P5"]
SCHEDULE = ("data", "epochs", "imgsz", "batch", "nbs", "warmup_epochs", "close_mosaic", "plots", "optimizer")
PNGS = (POS_RATIO_PNG, CLS_LOSS_PNG, GAMMA_ALPHA_PNG)


def e2e_model(umop: bool = True, epochs: int = 4):
    torch.manual_seed(0)
    m = build_model("yolo26n.yaml", nc=3, verbose=False).train()
    m.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": umop, "epochs": epochs})
    m.criterion = m.init_criterion()
    assert isinstance(m.criterion, E2ELoss)
    return m


def step(m) -> dict[str, dict[str, torch.Tensor]]:
    batch = tiny_batch()
    m.criterion(m(batch["img"]), batch)
    return branch_stats(m.criterion)


def epoch_mean(windows: list[dict[str, str]], key: str) -> float:
    """The step-weighted mean of a levels.csv column over windows, those without a value left out (NaN if none)."""
    pairs = [(float(r[key]), int(r["iterations"])) for r in windows if r[key]]
    return sum(v * n for v, n in pairs) / sum(n for _, n in pairs) if pairs else math.nan


def test_experiments_are_the_yolov8n_pair_on_yolo26n():
    for loss in ("stock", "umop"):
        ours, v8 = load_yaml(CFG_DIR / f"yolo26n_{loss}.yaml"), load_yaml(CFG_DIR / f"yolov8n_{loss}.yaml")
        assert ours["model"] == "yolo26n.yaml"
        assert {k: ours.get(k) for k in SCHEDULE} == {k: v8.get(k) for k in SCHEDULE}
        assert {k: v for k, v in ours.items() if k != "model"} == {k: v for k, v in v8.items() if k != "model"}
    assert load_yaml(CFG_DIR / "yolo26n_stock.yaml")["cls"] == DEFAULT_CFG_DICT["cls"]  # stock: Ultralytics' gain


def test_auto_optimizer_is_adamw_at_the_shipped_schedule():
    """As BaseTrainer counts them: images / max(batch, nbs) per epoch x epochs; auto takes MuSGD only above 10,000."""
    args = mode_args("train", {"cfg": "yolo26n_umop.yaml"})
    trainer = object.__new__(UmopTrainer)
    trainer.args = get_cfg(overrides={k: v for k, v in args.items() if k != "project"})
    data = load_yaml(DATA_DIR / "shapes.yaml")
    trainer.data = {"nc": len(data["names"])}
    iterations = math.ceil(data["generate"]["n_train"] / max(args["batch"], args["nbs"])) * args["epochs"]
    model = build_model("yolo26n.yaml", nc=trainer.data["nc"], verbose=False)
    optimizer = trainer.build_optimizer(model, name=trainer.args.optimizer, iterations=iterations)  # auto: the default
    assert type(optimizer).__name__ == "AdamW" and trainer.args.lr0 == pytest.approx(0.002 * 5 / (4 + 5), abs=1e-6)
    trainer.build_optimizer(model, name="auto", iterations=10_001)
    assert trainer.args.optimizer == "MuSGD"


@pytest.mark.parametrize("umop", [True, False])
def test_both_branches_are_recorded_and_one_to_one_keeps_one_positive_per_object(umop):
    stats = step(e2e_model(umop))
    assert list(stats) == ["o2m", "o2o"]
    o2m, o2o = stats["o2m"], stats["o2o"]
    boxes = len(tiny_batch()["cls"])
    assert 0 < o2o["num_pos"].sum() <= boxes < o2m["num_pos"].sum()  # top-1 per object against TAL's top-10
    assert torch.equal(o2m["num_samples"], o2o["num_samples"])
    assert ("gamma" in o2o) is umop
    if umop:  # each branch has its own PFL: its own C_l (hence gamma_l once off the clamp) from its own positives
        measured = (o2m["num_pos"] > 0) & (o2o["num_pos"] > 0)
        assert measured.any() and (o2m["statistic"] != o2o["statistic"])[measured].all()


def test_levels_csv_has_rows_per_branch_and_the_o2m_weight_follows_e2eloss(tmp_path):
    epochs, path = 4, tmp_path / "levels.csv"
    m = e2e_model(epochs=epochs)
    rec = LevelRecorder(path, interval=2)
    summaries = []
    for epoch in range(1, epochs + 1):  # in BaseTrainer's order: E2ELoss's weight moves before the epoch's last flush
        rec.start_epoch(epoch, (epoch - 1) * 3, LEVELS)
        for _ in range(3):
            stats = step(m)
            rec.update_branches(stats, o2m_weight(m.criterion))
        m.criterion.update()
        summaries.append(rec.end_epoch())
    rows = read_csv(path)
    assert tuple(rows[0]) == CSV_COLUMNS + BRANCH_COLUMNS
    assert len(rows) == epochs * 2 * 2 * len(LEVELS)  # windows of 2 + 1 steps, two branches, three levels
    assert [(r["branch"], r["level"]) for r in rows[:6]] == [(b, n) for b in ("o2m", "o2o") for n in LEVELS]
    schedule = [0.8 - 0.7 * e / (epochs - 1) for e in range(epochs)]  # E2ELoss: 0.8 in the first epoch, 0.1 in the last
    for epoch, weight in enumerate(schedule, 1):
        weights = [float(r["o2m_weight"]) for r in rows if int(r["epoch"]) == epoch]
        assert weights == pytest.approx([weight] * 2 * 2 * len(LEVELS), abs=1e-5)
    for r in rows[-6:]:  # the last window: the last step's stats, each branch's in its rows
        branch, i = stats[r["branch"]], LEVELS.index(r["level"])
        ratio = float(branch["num_pos"][i] / branch["num_samples"][i])
        assert float(r["pos_ratio_mean"]) == pytest.approx(ratio, rel=1e-5)
        gamma = math.nan if branch["num_pos"][i] == 0 else float(branch["gamma"][i])  # no positives: a gap
        assert float(r["gamma"] or math.nan) == pytest.approx(gamma, rel=1e-5, nan_ok=True)
    for branch, tag in (("o2m", ""), ("o2o", "o2o_")):  # results.csv: o2m's columns as before, o2o's named
        for level in LEVELS:
            windows = [r for r in rows if (r["branch"], r["level"], r["epoch"]) == (branch, level, str(epochs))]
            ratio = epoch_mean(windows, "pos_ratio_mean")
            assert summaries[-1][f"level/pos_ratio_{tag}{level}"] == pytest.approx(ratio, rel=1e-5)
            gamma = epoch_mean(windows, "gamma")
            assert summaries[-1][f"pfl/gamma_{tag}{level}"] == pytest.approx(gamma, rel=1e-5, nan_ok=True)
    assert len(summaries[-1]) == 2 * 4 * len(LEVELS)

    written = plot_run(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{png[:-4]}_{b}.png" for png in PNGS for b in ("o2m", "o2o"))
    assert all(p.stat().st_size > 10_000 for p in written) and not any((tmp_path / png).exists() for png in PNGS)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["umop", "stock"])
def test_shipped_experiments_train_and_record_both_branches(loss, tiny_shapes, tmp_path):
    args = dict(cfg=f"yolo26n_{loss}.yaml", data=tiny_shapes, epochs=1, imgsz=64, batch=8, device="cpu", workers=0,
                project=tmp_path, name="run", plots=False, level_log_interval=1)
    assert main(["train", *(f"{k}={v}" for k, v in args.items())]) == 0
    run = tmp_path / "run"
    rows = read_csv(run / "levels.csv")
    assert len(rows) == 2 * 2 * len(LEVELS)  # 16 images at batch 8: two windows of one step
    assert {r["branch"] for r in rows} == {"o2m", "o2o"} and all(float(r["o2m_weight"]) == 0.8 for r in rows)
    result = read_csv(run / "results.csv")[0]
    assert all(f"level/pos_ratio_{n}" in result and f"level/pos_ratio_o2o_{n}" in result for n in LEVELS)
    assert (f"pfl/gamma_o2o_{LEVELS[0]}" in result) is (loss == "umop")
    assert all((run / f"{POS_RATIO_PNG[:-4]}_{b}.png").is_file() for b in ("o2m", "o2o"))
