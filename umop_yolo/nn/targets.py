"""Ground truth of a batch as the dense losses and assigners take it: padded per image (MMDetection's gt lists)."""

from __future__ import annotations

import torch
from torch import Tensor


def padded_targets(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Ultralytics' flat labels -> (B, M, 4) xyxy pixel boxes, (B, M) classes, (B, M) mask of real boxes.

    `batch` holds `img` (B, C, H, W), `batch_idx` (n,), `cls` (n, 1) and `bboxes` (n, 4) normalised xywh.
    One host sync (the largest box count, as in Ultralytics' own loss); M >= 1.
    """
    img = batch["img"]
    n_img, (h, w), device = img.shape[0], img.shape[2:], img.device
    idx, order = batch["batch_idx"].view(-1).long().sort(stable=True)
    counts = torch.bincount(idx, minlength=n_img)
    m = max(int(counts.max()) if idx.numel() else 0, 1)
    slot = torch.arange(idx.numel(), device=device) - (counts.cumsum(0) - counts)[idx]
    xywh = batch["bboxes"].view(-1, 4)[order].float() * torch.tensor([w, h, w, h], device=device)
    boxes = torch.zeros(n_img, m, 4, device=device)
    labels = torch.zeros(n_img, m, dtype=torch.long, device=device)
    mask = torch.zeros(n_img, m, dtype=torch.bool, device=device)
    boxes[idx, slot] = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    labels[idx, slot] = batch["cls"].view(-1)[order].long()
    mask[idx, slot] = True
    return boxes, labels, mask
