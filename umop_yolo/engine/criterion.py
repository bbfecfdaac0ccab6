"""The one interface of the two loss families, as the level diagnostics use them.

`LevelSplitDetectionLoss` (YOLO heads, TaskAlignedAssigner; engine/loss.py) and `DenseCriterion` (RetinaNet / ATSS,
MaxIoU / ATSS assigners; engine/dense_criterion.py) both take Ultralytics' (preds, batch), record per-level statistics
of their latest step in `last_stats`, and expose their target assignment as `assign`: the positives per pyramid level
that the classification loss trains with (paper Fig. 2).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

from torch import Tensor

E2E_BRANCHES = {"o2m": "one2many", "o2o": "one2one"}  # E2ELoss attribute = key of the head's raw output


class LevelAssignment(NamedTuple):
    """One batch's assignment; anchors run level by level (P3 first), `level_sizes` anchors each."""

    pos: Tensor  # (B, A) bool: positive anchors
    gt_index: Tensor  # (B, A) long: each anchor's box among its image's boxes (meaningful where pos)
    level_sizes: list[int]  # anchors per level of one image: the samples per level and image


@runtime_checkable
class LevelCriterion(Protocol):
    """A training criterion whose positives and losses are known per pyramid level."""

    last_stats: dict[str, Tensor]  # latest step, detached: num_pos, num_samples, loss (+ gamma, alpha with PFL)

    def __call__(self, preds: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Ultralytics' criterion call: (loss x batch size, detached loss items)."""

    def assign(self, preds: Any, batch: dict[str, Tensor]) -> LevelAssignment:
        """The target assignment the loss would use for these predictions (as the model's forward returns them)."""


def level_branches(criterion: Any) -> dict[str, LevelCriterion]:
    """The criteria whose levels are recorded, by branch: Ultralytics' `E2ELoss` (YOLO26, YOLOv10) as its one-to-many
    (`o2m`) and one-to-one (`o2o`) criteria, any other as itself under the name ''; {} without the interface."""
    if all(isinstance(getattr(criterion, k, None), LevelCriterion) for k in E2E_BRANCHES.values()):
        return {name: getattr(criterion, key) for name, key in E2E_BRANCHES.items()}
    return {"": criterion} if isinstance(criterion, LevelCriterion) else {}

