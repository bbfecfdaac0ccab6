"""Head outputs to detections before NMS, as torchvision keeps `postprocess_detections` with its models.

Per-level head maps are flattened location-major, anchors minor (the AnchorGenerator's order); at test time each
level keeps its `nms_pre` best anchors by class score (MMDetection's `nms_pre`), decoded to boxes. Any head's
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


def anchor_scores(preds: dict[str, Tensor]) -> Tensor:
    """(B, A, nc) detection scores: class probabilities, times the centerness probability where the head has one
    (ATSS ranks and NMSes by cls x centerness)."""
    scores = preds["cls_logits"].sigmoid()
    if "centerness" in preds:
        scores = scores * preds["centerness"].sigmoid()
    return scores


def top_k_indices(scores: Tensor, k: int) -> Tensor:
    """(B, min(k, A)) indices of the best of (B, A) scores. While tracing for export, min(k, A) is computed in the
    graph, so a dynamic-shape ONNX keeps the cap at every input size (a Python min would freeze one branch)."""
    if torch.jit.is_tracing():
        return scores.topk(torch.clamp(torch._shape_as_tensor(scores)[1], max=k), dim=1).indices
    return scores.topk(min(k, scores.shape[1]), dim=1).indices


def decode_top_anchors(scores: Tensor, deltas: Tensor, anchors: Tensor, level_sizes: list[int],
                       coder: DeltaXYWHBoxCoder, nms_pre: int, score_thr: float) -> tuple[Tensor, Tensor]:
    """Per level the `nms_pre` anchors with the best class score: (B, N, 4) xyxy boxes and (B, N, nc) scores, scores
    below `score_thr` set to 0 (dropped by any NMS threshold above 0). N = sum over levels of min(nms_pre, size)."""
    boxes, kept = [], []
    for s, d, a in zip(scores.split(level_sizes, 1), deltas.split(level_sizes, 1), anchors.split(level_sizes)):
        idx = top_k_indices(s.amax(-1), nms_pre)  # (B, k)
        s = s.gather(1, idx[..., None].expand(-1, -1, s.shape[-1]))
        boxes.append(coder.decode(a[idx], d.gather(1, idx[..., None].expand(-1, -1, 4))).to(s.dtype))
        kept.append(s.masked_fill(s < score_thr, 0.0))
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
    top = scores.topk(k, dim=1, sorted=False).indices
    kept = torch.zeros_like(scores).scatter_(1, top, scores.gather(1, top))
    return torch.cat([y[:, :4], kept.view_as(y[:, 4:])], 1)
