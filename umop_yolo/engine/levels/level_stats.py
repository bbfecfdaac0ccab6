"""Per-level training statistics (paper Fig. 2, 3): positive proportion, gamma_l, alpha_l, classification loss.

Every step writes one (L, 4) row into a preallocated device buffer (no host sync). Once per window of `interval`
steps, and at the end of each epoch, the window is averaged over DDP ranks (one all-reduce; every rank records and
flushes at the same steps) and copied to the host in one transfer, appended to `levels.csv`
(one row per level: the window's positive-proportion quartiles and mean gamma, alpha, loss) and added to the epoch's
means, which become results.csv columns. The file therefore grows by L rows per window, never per step.
An end-to-end head (YOLO26, YOLOv10: Ultralytics' `E2ELoss`) records both its branches, the one-to-many (`o2m`) and
the one-to-one (`o2o`), in the same buffer and transfer: its rows name their branch and E2ELoss's one-to-many weight.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from ultralytics.utils.torch_utils import unwrap_model

from umop_yolo.distributed import nanmean_across_ranks
from umop_yolo.engine.criterion import level_branches
from umop_yolo.engine.run.saving import trim_epochs

FIELDS = ("pos_ratio", "gamma", "alpha", "cls_loss")  # the buffer's last axis
PREFIXES = {"gamma": "pfl/", "alpha": "pfl/"}  # results.csv / metrics prefix of each field; "level/" for the others
QUANTILES = {"min": 0.0, "q1": 0.25, "median": 0.5, "q3": 0.75, "max": 1.0}
CSV_COLUMNS = ("iteration", "epoch", "level", "iterations", "pos_ratio_mean",
               *(f"pos_ratio_{k}" for k in QUANTILES), "gamma", "alpha", "cls_loss")
BRANCH_COLUMNS = ("branch", "o2m_weight")  # after CSV_COLUMNS in an end-to-end head's levels.csv
BRANCH_NAMES = {"o2m": "one-to-many", "o2o": "one-to-one"}  # E2ELoss's branches, as levels.csv names them
UNNAMED_BRANCHES = ("", "o2m")  # results.csv names no branch for these: a single-branch head's, E2ELoss's one-to-many


def level_names(strides: Tensor | list[float]) -> list[str]:
    """Pyramid level names from strides: stride 8 -> 'P3', 128 -> 'P7'."""
    return [f"P{round(math.log2(float(s)))}" for s in strides]


def is_level_key(key: str) -> bool:
    """Whether a results.csv column / metrics key is one of the per-level epoch means (`pfl/...`, `level/...`)."""
    return key.startswith(("pfl/", "level/"))


def criterion_stats(criterion: Any) -> dict[str, Tensor]:
    """The latest per-level stats of a criterion (the one-to-many branch of an end-to-end loss); {} if none."""
    return next(iter(branch_stats(criterion).values()), {})


def branch_stats(criterion: Any) -> dict[str, dict[str, Tensor]]:
    """The latest per-level stats of each recorded branch of a criterion (`criterion.level_branches`); {} if none."""
    return {name: branch.last_stats for name, branch in level_branches(criterion).items()}


def o2m_weight(criterion: Any) -> float | None:
    """E2ELoss's current one-to-many loss weight (a host float, changed once per epoch); None for other criteria."""
    return getattr(criterion, "o2m", None)


def step_values(stats: dict[str, Tensor]) -> Tensor:
    """(L, 4) positive proportion, gamma, alpha and classification loss of one step, on the stats' device.

    gamma and alpha are NaN for criteria without them (the stock YOLO loss) and on a level without positives in this
    step, where they are the fallback (C_l = 2), not a measurement: window and epoch means skip them, and a window
    with none is a gap. No host sync.
    """
    ratio = stats["num_pos"].float() / stats["num_samples"].float().clamp_min(1.0)
    missing = torch.full_like(ratio, math.nan)
    measured = stats["num_pos"] > 0
    gamma, alpha = (torch.where(measured, stats[k].float(), missing) if k in stats else missing
                    for k in ("gamma", "alpha"))
    return torch.stack([ratio, gamma, alpha, stats["loss"].float()], -1)


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6g}"


class LevelRecorder:
    """Bounded per-level record of a training run: device window buffer -> `levels.csv` rows + epoch means.

    Args:
        path: the CSV to append to (created with a header), or None to keep only the epoch means.
        interval: steps per window, i.e. per CSV row of each level.
    """

    def __init__(self, path: Path | None, interval: int = 10) -> None:
        if interval < 1:
            raise ValueError(f"interval={interval} must be >= 1")
        self.path, self.interval = path, interval
        self.names: list[str] = []
        self.epoch = self.iteration = self.count = 0  # 1-based epoch, global steps done, steps in the window
        self.buffer: Tensor | None = None  # (interval, branches x L, 4), branch by branch
        self.branches: list[str] = [""]  # the recorded branches, in buffer order ('': a single-branch head)
        self.o2m_weight: float | None = None  # E2ELoss's one-to-many weight in this window (constant in an epoch)
        self.epoch_sum: Tensor | None = None  # (branches x L, 4) on the host, NaNs (no measurement) skipped
        self.epoch_count: Tensor | None = None  # (branches x L, 4) steps that measured each value

    def start_epoch(self, epoch: int, iteration: int, names: list[str]) -> None:
        """Begin epoch `epoch` (1-based) after `iteration` global steps; a restarted epoch drops its unsaved part.

        The first epoch of this recorder (a new run, or a resume) and a restarted one (NaN or divergence recovery, OOM
        retry) first drop the CSV rows of this epoch and later ones, as results.csv is trimmed: they are redone.
        """
        if self.path is not None and (self.epoch == 0 or epoch <= self.epoch):
            trim_epochs(self.path, epoch - 1)
        self.epoch, self.iteration, self.names = epoch, iteration, names
        self.count, self.epoch_sum, self.epoch_count = 0, None, None

    def update(self, stats: dict[str, Tensor]) -> None:
        """Store one step's statistics in the device buffer; flush when the window is full."""
        self.update_branches({"": stats})

    def update_branches(self, stats: dict[str, dict[str, Tensor]], o2m_weight: float | None = None) -> None:
        """`update` with one step's statistics of each branch (`branch_stats`), stored side by side; `o2m_weight`:
        E2ELoss's one-to-many weight in this step (a host float: no sync)."""
        stats = {branch: s for branch, s in stats.items() if s}
        if not stats:
            return
        values = torch.cat([step_values(s) for s in stats.values()])  # (branches x L, 4)
        if self.buffer is None or self.buffer.shape[1:] != values.shape or self.buffer.device != values.device:
            self.flush()
            self.buffer = values.new_empty((self.interval, *values.shape))
        self.branches, self.o2m_weight = list(stats), o2m_weight
        self.buffer[self.count] = values
        self.count += 1
        self.iteration += 1
        if self.count == self.interval:
            self.flush()

    def flush(self) -> None:
        """Copy the window to the host (the one sync per window), append its rows, add it to the epoch's sums."""
        if not self.count:
            return
        window = nanmean_across_ranks(self.buffer[: self.count]).cpu()  # (n, L, 4)
        self.count = 0
        total, count = window.nansum(0), (~window.isnan()).sum(0)
        first = self.epoch_sum is None
        self.epoch_sum = total if first else self.epoch_sum + total
        self.epoch_count = count if first else self.epoch_count + count
        if self.path is not None:
            self._append(window)

    def _append(self, window: Tensor) -> None:
        mean = window.nanmean(0)  # (branches x L, 4); NaN (an empty field) where no step measured it
        quartiles = torch.quantile(window[..., 0], torch.tensor(list(QUANTILES.values())), dim=0)  # (5, branches x L)
        branched = self.branches != [""]
        weight = _fmt(math.nan if self.o2m_weight is None else self.o2m_weight)
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(CSV_COLUMNS + BRANCH_COLUMNS * branched)
            for i, (branch, name) in enumerate(self._rows(len(mean))):
                values = [mean[i, 0], *quartiles[:, i], mean[i, 1], mean[i, 2], mean[i, 3]]
                writer.writerow([self.iteration, self.epoch, name, len(window), *(_fmt(float(v)) for v in values),
                                 *([branch, weight] if branched else [])])

    def _rows(self, count: int) -> list[tuple[str, str]]:
        """(branch, level) of each of the buffer's `count` rows."""
        names = self.names or [f"L{i}" for i in range(count // len(self.branches))]
        return [(branch, name) for branch in self.branches for name in names]

    def end_epoch(self) -> dict[str, float]:
        """Flush the rest of the epoch; its per-level means as results.csv columns (`pfl/gamma_P3` and `pfl/alpha_P3`
        where the loss has them, over the steps with positives on the level; `level/pos_ratio_P3`,
        `level/cls_loss_P3`), then reset; an end-to-end head's one-to-one branch adds its own (`pfl/gamma_o2o_P3` ...).
        {} if nothing was recorded."""
        self.flush()
        if self.epoch_sum is None:
            return {}
        mean = self.epoch_sum / self.epoch_count  # 0 / 0 = NaN: no step of the epoch measured it
        self.epoch_sum, self.epoch_count = None, None
        rows, out = self._rows(len(mean)), {}
        for branch in self.branches:  # the branch's rows, field by field
            index = [i for i, (b, _) in enumerate(rows) if b == branch]
            tag = "" if branch in UNNAMED_BRANCHES else f"{branch}_"
            for j, field in enumerate(FIELDS):
                column, prefix = mean[index, j], PREFIXES.get(field, "level/")
                if not column.isnan().all():  # gamma/alpha of a loss that has them; a level without positives: NaN
                    out.update({f"{prefix}{field}_{tag}{rows[i][1]}": float(v) for i, v in zip(index, column)})
        return out


def _start_level_epoch(trainer: Any) -> None:
    """on_train_epoch_start: number this epoch's steps and name the pyramid levels for the level recorder."""
    names = level_names(unwrap_model(trainer.model).stride)
    trainer.level_recorder.start_epoch(trainer.epoch + 1, trainer.epoch * len(trainer.train_loader), names)


def _record_level_stats(trainer: Any) -> None:
    """on_train_batch_end: this step's per-level stats of each branch into the recorder's device buffer (no host sync).
    Every DDP rank records: each window is averaged over ranks when it is read."""
    criterion = unwrap_model(trainer.model).criterion
    trainer.level_recorder.update_branches(branch_stats(criterion), o2m_weight(criterion))


def _flush_level_stats(trainer: Any) -> None:
    """on_train_epoch_end: the epoch's last window, on every rank together (rank 0 alone then logs the epoch)."""
    trainer.level_recorder.flush()


LEVEL_CALLBACKS = (("on_train_epoch_start", _start_level_epoch), ("on_train_batch_end", _record_level_stats),
                   ("on_train_epoch_end", _flush_level_stats))  # the trainer's level recording
