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
