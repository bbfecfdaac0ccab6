"""Anchor boxes per pyramid level, laid out as MMDetection's AnchorGenerator (v2, `center_offset=0`)."""

from __future__ import annotations

import torch
from torch import Tensor


class AnchorGenerator:
    """Anchors of every level as one (A, 4) xyxy tensor, location-major (row-major y, x), base anchors minor.

    Base anchor sizes at stride s: s * octave_base_scale * 2^(i / scales_per_octave), i < scales_per_octave, for each
    aspect ratio r = h / w (w = size / sqrt(r), h = size * sqrt(r)); ratios vary slowest. Anchor centres are at
    (x * s, y * s). RetinaNet: octave_base_scale 4, 3 scales, ratios (0.5, 1, 2) = 9 per location; ATSS: 8, 1, (1,).
    """

    def __init__(
        self,
        strides: list[int],
        octave_base_scale: float = 4.0,
        scales_per_octave: int = 3,
        ratios: tuple[float, ...] | list[float] = (0.5, 1.0, 2.0),
    ) -> None:
        self.strides = [int(s) for s in strides]
        scales = octave_base_scale * 2.0 ** (torch.arange(scales_per_octave, dtype=torch.float64) / scales_per_octave)
        h_ratios = torch.tensor(ratios, dtype=torch.float64).sqrt()
        self.base = []  # per level: (num_anchors, 4) centred at 0
        for s in self.strides:
            ws = (s / h_ratios[:, None] * scales[None, :]).flatten()
            hs = (s * h_ratios[:, None] * scales[None, :]).flatten()
            self.base.append(torch.stack([-ws / 2, -hs / 2, ws / 2, hs / 2], 1).float())
        self.num_anchors = len(ratios) * scales_per_octave

    def __call__(self, sizes: list[tuple[int, int]], device: torch.device | str = "cpu") -> Tensor:
        """(A, 4) anchors for feature maps of the given (H, W) sizes, one per level."""
        out = []
        for (h, w), s, base in zip(sizes, self.strides, self.base):
            y, x = torch.meshgrid(torch.arange(h, device=device) * s, torch.arange(w, device=device) * s, indexing="ij")
            shifts = torch.stack([x, y, x, y], -1).reshape(-1, 1, 4).float()
            out.append((shifts + base.to(device)).reshape(-1, 4))
        return torch.cat(out)

    def level_sizes(self, sizes: list[tuple[int, int]]) -> list[int]:
        """Number of anchors per level for feature maps of the given sizes."""
        return [h * w * self.num_anchors for h, w in sizes]

    def valid_flags(self, sizes: list[tuple[int, int]], regions: Tensor) -> Tensor:
        """(B, A) bool: the anchors of image b whose centre (x * s, y * s) lies in its valid region regions[b] =
        (x0, y0, x1, y1) pixels, x0 <= x * s < x1 and y0 <= y * s < y1, laid out as `__call__`'s anchors.

        MMDetection's `valid_flags(featmap_sizes, pad_shape)` (x < ceil(pad_w / s)) for the region (0, 0, pad_w,
        pad_h); computed from the integer grid, as there, so no rounding of anchor coordinates decides an edge.
        """
        out = []
        for (h, w), s in zip(sizes, self.strides):
            x = torch.arange(w, device=regions.device) * s
            y = torch.arange(h, device=regions.device) * s
            vx = (x >= regions[:, 0:1]) & (x < regions[:, 2:3])  # (B, W)
            vy = (y >= regions[:, 1:2]) & (y < regions[:, 3:4])  # (B, H)
            out.append((vy[:, :, None] & vx[:, None, :]).flatten(1).repeat_interleave(self.num_anchors, 1))
        return torch.cat(out, 1)
