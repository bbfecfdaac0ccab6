"""Anchors (MMDetection layout) and the delta-xywh box coder, on cases with known answers."""

import math

import torch

from umop_yolo.nn import AnchorGenerator, DeltaXYWHBoxCoder


def wh(boxes):
    return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]


def test_retinanet_anchors_nine_per_location_ratio_major_location_row_major():
    gen = AnchorGenerator([8, 16], octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
    anchors = gen([(2, 3), (1, 2)])
    assert gen.num_anchors == 9 and gen.level_sizes([(2, 3), (1, 2)]) == [54, 18]
    assert anchors.shape == (72, 4)
    first = anchors[:9]
    sizes = 32 * 2 ** (torch.arange(3) / 3)  # stride 8 x octave base 4, 3 scales per octave
    w, h = wh(first)
    r = math.sqrt(2)
    torch.testing.assert_close(w, torch.cat([sizes * r, sizes, sizes / r]))  # ratio h/w = 0.5, 1, 2
    torch.testing.assert_close(h, torch.cat([sizes / r, sizes, sizes * r]))
    torch.testing.assert_close((first[:, :2] + first[:, 2:]) / 2, torch.zeros(9, 2))  # centred on (0, 0)
    torch.testing.assert_close(anchors[9:18], first + torch.tensor([8.0, 0, 8, 0]))  # next x
    torch.testing.assert_close(anchors[27:36], first + torch.tensor([0.0, 8, 0, 8]))  # next row (W = 3)
    torch.testing.assert_close(wh(anchors[54:63])[0], 2 * w)  # P4: twice the size, stride 16
    torch.testing.assert_close(anchors[63:72], anchors[54:63] + torch.tensor([16.0, 0, 16, 0]))


def test_atss_anchor_is_one_square_of_eight_strides_per_location():
    gen = AnchorGenerator([8, 16, 32, 64, 128], octave_base_scale=8, scales_per_octave=1, ratios=(1.0,))
    anchors = gen([(1, 1)] * 5)
    w, h = wh(anchors)
    expected = torch.tensor([64.0, 128, 256, 512, 1024])
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(h, expected)


def test_box_coder_known_deltas_with_stds():
    coder = DeltaXYWHBoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
    anchor, box = torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[5.0, 5, 15, 25]])
    # centre (5, 5) -> (10, 15): dx = 5/10, dy = 10/10; w 10 -> 10, h 10 -> 20
    torch.testing.assert_close(coder.encode(anchor, box), torch.tensor([[5.0, 10.0, 0.0, math.log(2) / 0.2]]))


def test_box_coder_round_trip_and_clamped_scale():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 50, 2, generator=g) * 500
    anchors = torch.cat([xy, xy + 8 + torch.rand(2, 50, 2, generator=g) * 300], -1)
    xy = torch.rand(2, 50, 2, generator=g) * 500
    boxes = torch.cat([xy, xy + 4 + torch.rand(2, 50, 2, generator=g) * 300], -1)
    for stds in ((1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)):
        coder = DeltaXYWHBoxCoder(stds=stds)
        torch.testing.assert_close(coder.decode(anchors, coder.encode(anchors, boxes)), boxes, rtol=1e-5, atol=1e-3)
    big = DeltaXYWHBoxCoder().decode(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 50, -50]]))
    torch.testing.assert_close(wh(big), (torch.tensor([10 * 1000 / 16]), torch.tensor([10 * 16 / 1000])))
