"""Head outputs to detections before NMS, as torchvision keeps `postprocess_detections` with its models.

Per-level head maps are flattened location-major, anchors minor (the AnchorGenerator's order); at test time each
level keeps its `nms_pre` best (anchor, class) scores above `score_thr` (MMDetection 3.x's `nms_pre`), decoded to
boxes clipped to the image. Any head's
(B, 4 + nc, N) output then keeps its `nms_pre` best (box, class) scores per image (`keep_top_scores`), so NMS never
sees more candidates than that.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from umop_yolo.nn.box_coder import DeltaXYWHBoxCoder


def flat(x: Tensor, num_anchors: int) -> Tensor:
    """(B, A*K, H, W) -> (B, H*W*A, K): locations row-major, anchors minor (the AnchorGenerator's order)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1] // num_anchors)


def flat_levels(maps: dict[str, list[Tensor]], num_anchors: int) -> dict[str, Tensor]:
    """Each output's per-level maps flattened and concatenated over levels: name -> (B, A, K)."""
    return {k: torch.cat([flat(x, num_anchors) for x in v], 1) for k, v in maps.items()}


def anchor_scores(preds: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
    """(B, A, nc) class probabilities and, where the head has a centerness branch (ATSS), the (B, A, 1) centerness
    probabilities that multiply them once thresholded (None otherwise)."""
    centerness = preds["centerness"].sigmoid() if "centerness" in preds else None
    return preds["cls_logits"].sigmoid(), centerness


def top_k_indices(scores: Tensor, k: int) -> Tensor:
    """(B, min(k, A)) indices of the best of (B, A) scores. While tracing for export, min(k, A) is computed in the
    graph, so a dynamic-shape ONNX keeps the cap at every input size (a Python min would freeze one branch)."""
    if torch.jit.is_tracing():
        return scores.topk(torch.clamp(torch._shape_as_tensor(scores)[1], max=k), dim=1).indices
    return scores.topk(min(k, scores.shape[1]), dim=1).indices


def keep_top_k(scores: Tensor, k: int) -> Tensor:
    """(B, n) scores with all but each row's `k` highest set to 0."""
    top = top_k_indices(scores, k)
    return torch.zeros_like(scores).scatter_(1, top, scores.gather(1, top))


def clip_boxes(boxes: Tensor, scores: Tensor, image_hw: Tensor) -> tuple[Tensor, Tensor]:
    """Boxes clipped to the image (h, w) and the scores of those left with no width or height set to 0 (MMDetection's
    `clip_border` and `min_bbox_size=0`)."""
    limit = image_hw.to(boxes).flip(0).repeat(2)  # (w, h, w, h)
    boxes = torch.minimum(boxes.clamp_min(0), limit)
    empty = (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])
    return boxes, scores.masked_fill(empty[..., None], 0.0)


def decode_top_anchors(scores: Tensor, deltas: Tensor, anchors: Tensor, level_sizes: list[int],
                       coder: DeltaXYWHBoxCoder, nms_pre: int, score_thr: float, centerness: Tensor | None = None,
                       image_hw: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """MMDetection 3.x's per-level selection (`filter_scores_and_topk`): class scores at or below `score_thr` are
    dropped, then the `nms_pre` best (anchor, class) scores are kept, then multiplied by the centerness, if any.

    Returns (B, N, 4) xyxy boxes (clipped to `image_hw` when given) and (B, N, nc) scores, 0 where dropped; N = sum over
    levels of min(nms_pre, size): the anchors holding the best class scores, which hold every kept (anchor, class)
    score.
    """
    boxes, kept = [], []
    factors = centerness.split(level_sizes, 1) if centerness is not None else [None] * len(level_sizes)
    levels = zip(scores.split(level_sizes, 1), deltas.split(level_sizes, 1), anchors.split(level_sizes), factors)
    for s, d, a, f in levels:
        idx = top_k_indices(s.amax(-1), nms_pre)  # (B, k)
        s = s.gather(1, idx[..., None].expand(-1, -1, s.shape[-1]))
        s = keep_top_k(s.masked_fill(s <= score_thr, 0.0).flatten(1), nms_pre).view_as(s)
        if f is not None:
            s = s * f.gather(1, idx[..., None])
        box = coder.decode(a[idx], d.gather(1, idx[..., None].expand(-1, -1, 4))).to(s.dtype)
        box, s = clip_boxes(box, s, image_hw) if image_hw is not None else (box, s)
        boxes.append(box)
        kept.append(s)
    return torch.cat(boxes, 1), torch.cat(kept, 1)


def keep_top_scores(y: Tensor | tuple[Tensor, Any], k: int) -> Tensor:
    """(B, 4 + nc, N) boxes and class scores (or a head's (y, raw)) with all but each image's `k` highest (box, class)
    scores set to 0.

    The pre-NMS cap of MMYOLO's `nms_pre` and Ultralytics' `max_nms`, applied before NMS expands boxes into (box,
    class) candidates: NMS keeps scores above `conf` >= 0, so at most `k` candidates per image reach it, the `k`
    best, whatever the head, and output indices still point at the same boxes. `y` is returned as is when it has no
    more than `k` scores per image.
    """
    y = y[0] if isinstance(y, (tuple, list)) else y
    scores = y[:, 4:].flatten(1)
    if scores.shape[1] <= k:
        return y
    return torch.cat([y[:, :4], keep_top_k(scores, k).view_as(y[:, 4:])], 1)
