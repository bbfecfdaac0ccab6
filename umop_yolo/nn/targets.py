"""Ground truth of a batch as the dense losses and assigners take it: padded per image (MMDetection's gt lists), and
where each image lies in its input (MMDetection's pad_shape, for the anchors' valid flags)."""

from __future__ import annotations

import numpy as np
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


def valid_regions(batch: dict) -> Tensor | None:
    """(B, 4) xyxy pixels of each image's valid region in `img`, or None where every image fills its input.

    MMDetection's pad_shape as a box: anchors outside it are invalid (`AnchorGenerator.valid_flags`). From, in order:
    - `valid_region`, normalised xyxy per image: training batches of a dataset under
      `umop_yolo.data.valid_region.record_valid_regions` (where Ultralytics' random affine put the image);
    - LetterBox's record (validation batches): `ratio_pad` = ((gain_h, gain_w), (left, top)), the resized original
      (`ori_shape` x gain) at (left, top) of the `resized_shape` canvas.
    Both scale with `img` if the batch was resized since (multi-scale). Other batches (Ultralytics' own training
    pipeline records no placement; `ratio_pad` keeps the load-time gains only) count as filling their input.
    """
    h, w = batch["img"].shape[2:]
    device = batch["img"].device
    if "valid_region" in batch:
        regions = torch.as_tensor(np.stack(batch["valid_region"]), dtype=torch.float32, device=device)
        return regions * torch.tensor([w, h, w, h], dtype=torch.float32, device=device)
    pads = batch.get("ratio_pad")
    if not pads or not all(isinstance(p[0], (tuple, list)) for p in pads):
        return None
    regions = []
    for (gain, (left, top)), (h0, w0), canvas in zip(pads, batch["ori_shape"], batch["resized_shape"]):
        sy, sx = h / float(canvas[0]), w / float(canvas[1])
        regions.append([left * sx, top * sy, (left + round(w0 * gain[1])) * sx, (top + round(h0 * gain[0])) * sy])
    return torch.tensor(regions, dtype=torch.float32, device=device)
