"""`umop analyze`: how the chosen head's assigner spreads positives over the pyramid levels (paper Fig. 2).

Runs only the forward pass and target assignment (no backward, no optimiser) over N batches of the training loader,
augmentations included, with the criterion the model trains with, through its `assign` (`engine.criterion`): YOLO heads
Ultralytics' TaskAlignedAssigner, RetinaNet/ATSS their MaxIoU/ATSS assigners. Per level it reports the positive
proportion of each image (positive anchors / anchors of that level) and the objects the level receives (ground-truth
boxes with at least one positive anchor on it; a box can count on several levels). Positive anchors are those the loss
trains as positives and levels.csv counts: a target above 0 (not TAL's fg_mask, which also holds anchors of target 0).
An end-to-end head (YOLO26: Ultralytics' `E2ELoss`) is reported per branch, one-to-many (`o2m`) and one-to-one
(`o2o`), each with its own assigner on its own predictions, as levels.csv records them.
A stock Ultralytics checkpoint is rebuilt as ours with its weights (`checkpoint_model`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from umop_yolo.engine.criterion import E2E_BRANCHES, LevelAssignment, LevelCriterion, level_branches
from umop_yolo.engine.levels.level_stats import BRANCH_COLUMNS, BRANCH_NAMES, level_names
from umop_yolo.errors import UserInputError

TABLE_CSV = "levels_table.csv"


@dataclass
class LevelReport:
    """Per-level assignment statistics accumulated over batches."""

    names: list[str]
    strides: list[int]
    branch: str = ""  # '' for a single-branch head, else an end-to-end head's `o2m` or `o2o`
    ratios: list[list[float]] = field(init=False)  # per level: positive proportion of every image
    positives: list[int] = field(init=False)  # per level: positive anchors
    anchors: list[int] = field(init=False)  # per level: anchors per image (last batch's size)
    objects: list[int] = field(init=False)  # per level: boxes with >= 1 positive anchor there
    num_boxes: int = field(default=0, init=False)
    unassigned: int = field(default=0, init=False)  # boxes with no positive anchor on any level
    images: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        self.ratios, self.positives, self.anchors, self.objects = [[] for _ in range(n)], [0] * n, [0] * n, [0] * n

    def add(self, assignment: LevelAssignment, num_boxes: int) -> None:
        """One batch's assignment, of `num_boxes` ground-truth boxes."""
        pos, gt_index, level_sizes = assignment
        b = pos.shape[0]
        image = torch.arange(b, device=pos.device)[:, None].expand_as(pos)
        width = int(gt_index.max()) + 1 if gt_index.numel() else 1
        anywhere = torch.zeros(b * width, dtype=torch.bool, device=pos.device)
        for i, (p, g, im) in enumerate(zip(pos.split(level_sizes, 1), gt_index.split(level_sizes, 1),
                                           image.split(level_sizes, 1))):
            hit = torch.zeros_like(anywhere)
            hit[(im * width + g)[p]] = True
            anywhere |= hit
            self.ratios[i].extend((p.sum(1).float() / level_sizes[i]).tolist())
            self.positives[i] += int(p.sum())
            self.anchors[i] = level_sizes[i]
            self.objects[i] += int(hit.sum())
        self.num_boxes += num_boxes
        self.unassigned += num_boxes - int(anywhere.sum())
        self.images += b

    def rows(self) -> list[dict[str, Any]]:
        """The per-level table: positive proportion (%, over images), positives per image, objects (count, %)."""
        out = []
        for i, name in enumerate(self.names):
            r = 100 * np.asarray(self.ratios[i])
            q1, med, q3 = np.percentile(r, [25, 50, 75])
            out.append({"level": name, "stride": self.strides[i], "anchors_per_image": self.anchors[i],
                        "pos_pct_mean": r.mean(), "pos_pct_q1": q1, "pos_pct_median": med, "pos_pct_q3": q3,
                        "positives_per_image": self.positives[i] / self.images, "objects": self.objects[i],
                        "objects_pct": 100 * self.objects[i] / max(self.num_boxes, 1)})
            if self.branch:
                out[-1][BRANCH_COLUMNS[0]] = self.branch
        return out

    def table(self) -> str:
        """The per-level table as aligned text, with a totals line."""
        head = ("level", "stride", "anchors/img", "pos% mean", "q1", "median", "q3", "pos/img", "objects", "obj%")
        lines = [f"{BRANCH_NAMES[self.branch]} branch"] if self.branch else []
        lines.append("%8s%8s%13s%11s%9s%9s%9s%10s%9s%8s" % head)
        for r in self.rows():
            lines.append("%8s%8d%13d%11.3f%9.3f%9.3f%9.3f%10.2f%9d%8.1f" % tuple(r.values())[:len(head)])
        lines.append(f"{self.images} images, {self.num_boxes} boxes, {self.unassigned} with no positive anchor; "
                     "pos% = positive anchors / anchors of the level per image; obj% = boxes with a positive there")
        return "\n".join(lines)

    def plot(self, out_dir: Path, title: str) -> Path:
        """The Fig. 2 box plot of the per-image proportions, named after the branch as the level plots are."""
        from umop_yolo.engine.levels.level_plots import POS_RATIO_PNG, box_from_values, plot_positive_proportion

        png = f"{POS_RATIO_PNG[:-4]}_{self.branch}.png" if self.branch else POS_RATIO_PNG
        title = f"{title}, {BRANCH_NAMES[self.branch]} branch" if self.branch else title
        boxes = [box_from_values(np.asarray(v), n) for v, n in zip(self.ratios, self.names)]
        note = f"{self.images} training images (augmented), {self.num_boxes} boxes; one value per image"
        return plot_positive_proportion(boxes, out_dir / png, title, note)


def save_reports(reports: dict[str, LevelReport], out_dir: Path, title: str) -> list[Path]:
    """Write levels_table.csv (all branches, one `branch` column for an end-to-end head) and each branch's plot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [row for report in reports.values() for row in report.rows()]
    with open(out_dir / TABLE_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    return [out_dir / TABLE_CSV, *(report.plot(out_dir, title) for report in reports.values())]


def assign(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, LevelAssignment]:
    """Forward pass and the model's own target assignment for one preprocessed batch, no loss backward: per branch
    (`engine.criterion.level_branches`), an end-to-end head's branches each on their own predictions."""
    preds = model(batch["img"])
    branches = criteria_of(model)
    if set(branches) == set(E2E_BRANCHES):
        raw = preds[1] if isinstance(preds, tuple) else preds  # eval mode: (decoded, raw) as Ultralytics' parse_output
        return {name: c.assign(raw[E2E_BRANCHES[name]], batch) for name, c in branches.items()}
    return {name: c.assign(preds, batch) for name, c in branches.items()}


def criteria_of(model: nn.Module) -> dict[str, LevelCriterion]:
    """The model's criteria by branch, as its trainer builds them from `model.args`."""
    branches = level_branches(model.criterion)
    if not branches:
        raise TypeError(f"{type(model).__name__}: its criterion {type(model.criterion).__name__} has no per-level "
                        "assignment (engine.criterion.LevelCriterion)")
    return branches


@torch.no_grad()
def analyze_levels(model: nn.Module, batches: Any, total: int | None = None) -> dict[str, LevelReport]:
    """Assignment statistics per branch ('' for a single-branch head) over preprocessed batches (images in [0, 1] on
    the model's device), with a progress bar.

    The model runs in eval mode (no BatchNorm updates); `model.args` configures its criterion as in training.
    """
    from ultralytics.utils import TQDM

    model.eval()
    model.criterion = model.init_criterion()
    names, strides = level_names(model.stride), [int(s) for s in model.stride]
    reports = {branch: LevelReport(names, strides, branch) for branch in criteria_of(model)}
    for batch in TQDM(batches, total=total, desc="Assigning targets"):
        for branch, assignment in assign(model, batch).items():
            reports[branch].add(assignment, int(batch["cls"].shape[0]))
    return reports


def run_analysis(args: dict[str, Any], batches: int = 10) -> dict[str, LevelReport]:
    """`umop analyze`: build the model (YAML or .pt) and the training loader from experiment args, assign targets over
    `batches` batches, print the per-level table of each branch and write them with the Fig. 2 plots to
    runs/detect/analyze*."""
    from ultralytics.cfg import get_cfg, get_save_dir
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import DEFAULT_CFG, LOGGER
    from ultralytics.utils.checks import check_imgsz
    from ultralytics.utils.torch_utils import init_seeds, select_device

    from umop_yolo.data.resolve import resolve_data
    from umop_yolo.engine import runtime
    from umop_yolo.engine.build import build_model
    from umop_yolo.engine.run.preflight import check_model_yaml
    from umop_yolo.settings import check_umop_args

    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise UserInputError(f"batches={batches!r} must be an integer >= 1")
    runtime.register()
    runtime.ensure_fonts()  # Ultralytics' dataset check looks for its plotting font
    cfg = get_cfg(DEFAULT_CFG, args)
    check_umop_args(cfg)
    init_seeds(cfg.seed)
    device = select_device(cfg.device, verbose=False)
    data = check_det_dataset(resolve_data(cfg.data))
    if str(cfg.model).endswith(".pt"):
        model = checkpoint_model(str(cfg.model)).to(device)
    else:
        check_model_yaml(str(cfg.model))  # one line for a missing or malformed YAML, as train gives
        model = build_model(cfg.model, nc=data["nc"], ch=data["channels"], verbose=False).to(device)
    model.args = cfg
    stride = max(int(model.stride.max()), 32)
    cfg.imgsz = check_imgsz(cfg.imgsz, stride=stride, floor=stride, max_dim=1)
    batch_size = cfg.batch if isinstance(cfg.batch, int) and cfg.batch > 0 else 16  # no auto-batch here
    dataset = build_yolo_dataset(cfg, data["train"], batch_size, data, mode="train", stride=stride)
    loader = build_dataloader(dataset, batch_size, cfg.workers if device.type != "cpu" else 0, shuffle=True,
                              device=device)
    n = min(batches, len(loader))
    reports = analyze_levels(model, (_to_device(b, device) for _, b in zip(range(n), loader)), n)
    out_dir = get_save_dir(cfg, name=cfg.name or "analyze")
    save_reports(reports, out_dir,
                 f"Positive proportion per level: {Path(str(cfg.model)).stem} on {Path(str(cfg.data)).stem}")
    tables = "\n\n".join(report.table() for report in reports.values())
    LOGGER.info(f"\n{tables}\nResults saved to {out_dir}")
    return reports


def checkpoint_model(path: str) -> nn.Module:
    """A .pt loaded as `umop val/predict` load it. A stock Ultralytics model is rebuilt as ours from its own YAML, with
    its weights: the same TaskAlignedAssigner on the same predictions, in a criterion that has `assign`."""
    from umop_yolo.engine.api import UmopYOLO
    from umop_yolo.engine.build import build_model
    from umop_yolo.engine.model import UmopDetectionModel

    model = UmopYOLO(path).model.float()
    if isinstance(model, UmopDetectionModel):
        return model
    ours = build_model(model.yaml, nc=model.yaml["nc"], ch=model.yaml.get("channels", 3), verbose=False)
    ours.load(model, verbose=False)
    return ours


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A loader batch as the trainer feeds it: tensors on the device, images as floats in [0, 1]."""
    batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    batch["img"] = batch["img"].float() / 255
    return batch
