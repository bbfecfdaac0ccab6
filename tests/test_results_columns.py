"""results.csv columns: Ultralytics' own first, in its order, then the COCO columns, then the per-level means; a
results.csv written in another order keeps it."""

from ultralytics.utils.metrics import DetMetrics

from umop_yolo.engine.run.saving import results_row
from umop_yolo.eval.metrics import COCO_KEYS, CocoDetMetrics

TRAIN = ["train/box_loss", "train/cls_loss", "train/dfl_loss"]
VAL = ["val/box_loss", "val/cls_loss", "val/dfl_loss"]
LR = ["lr/pg0", "lr/pg1", "lr/pg2"]
LEVELS = {"pfl/gamma_P3": 2.0, "level/pos_ratio_P3": 0.1}


def trainer_metrics() -> dict[str, float]:
    """What BaseTrainer hands save_metrics: train losses, the validator's metrics (ours: Ultralytics' four, then
    COCO), val losses, learning rates."""
    keys = [*TRAIN, *CocoDetMetrics().keys, *VAL, *LR]
    return {k: float(i) for i, k in enumerate(keys)}


def test_ultralytics_columns_come_first_in_their_order(tmp_path):
    row = results_row(trainer_metrics(), LEVELS, tmp_path / "results.csv")
    stock = [*TRAIN, *DetMetrics().keys, *VAL, *LR]  # Ultralytics' 13 after `epoch` and `time`
    assert list(row) == [*stock, *COCO_KEYS, *LEVELS]
    assert row == {**trainer_metrics(), **LEVELS}  # the same values, only reordered


def test_a_results_csv_in_another_order_keeps_its_header(tmp_path):
    csv = tmp_path / "results.csv"
    older = ["epoch", "time", *reversed(list(trainer_metrics())), *LEVELS]
    csv.write_text(", ".join(older) + "\n")
    assert list(results_row(trainer_metrics(), LEVELS, csv)) == older[2:]
    current = list(results_row(trainer_metrics(), {}, tmp_path / "new.csv"))
    assert list(results_row(trainer_metrics(), {}, csv)) == current  # other columns than the file's: current order
