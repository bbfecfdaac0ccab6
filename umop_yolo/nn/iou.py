"""IoU between anchors and ground-truth boxes (pairwise) and generalised IoU between aligned boxes (xyxy)."""

from __future__ import annotations

from torch import Tensor


def area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def pairwise_iou(anchors: Tensor, boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of (A, 4) anchors with (B, M, 4) boxes: (B, A, M). Coordinates are taken one at a time to keep memory
    at a few (B, A, M) tensors."""
    a = anchors[None, :, None, :]  # (1, A, 1, 4)
    b = boxes[:, None, :, :]  # (B, 1, M, 4)
    iw = (a[..., 2].minimum(b[..., 2]) - a[..., 0].maximum(b[..., 0])).clamp_min_(0)
    ih = (a[..., 3].minimum(b[..., 3]) - a[..., 1].maximum(b[..., 1])).clamp_min_(0)
    inter = iw.mul_(ih)
    union = area(anchors)[None, :, None] + area(boxes)[:, None, :] - inter
    return inter / union.clamp_min(eps)


def giou(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Generalised IoU (Rezatofighi et al. 2019) of aligned boxes (..., 4) -> (...), in [-1, 1]."""
    lt, rb = pred[..., :2].maximum(target[..., :2]), pred[..., 2:].minimum(target[..., 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    union = (area(pred) + area(target) - inter).clamp_min(eps)
    enclose = (pred[..., 2:].maximum(target[..., 2:]) - pred[..., :2].minimum(target[..., :2])).clamp_min(0).prod(-1)
    enclose = enclose.clamp_min(eps)
    return inter / union - (enclose - union) / enclose
