"""Pure decoding of dense-head outputs: flattening order, scores, per-level top-k, score threshold and clipping."""

import torch

from umop_yolo.nn import AnchorGenerator, DeltaXYWHBoxCoder
from umop_yolo.nn.postprocess import anchor_scores, clip_boxes, decode_top_anchors, flat, flat_levels


def test_flat_puts_anchors_minor_within_each_location():
    x = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float32).view(2, 3 * 2, 2, 2)  # 3 anchors x 2 values per cell
    out = flat(x, num_anchors=3)
    assert out.shape == (2, 2 * 2 * 3, 2)
    assert out[1, 3 * 1 + 2].tolist() == x[1, 4:6, 0, 1].tolist()  # location (y 0, x 1), anchor 2
    levels = flat_levels({"cls_logits": [x, x[..., :1, :1]]}, num_anchors=3)
    assert levels["cls_logits"].shape == (2, 12 + 3, 2)


def test_scores_are_class_probabilities_and_centerness_apart():
    logits, ctr = torch.zeros(1, 4, 3), torch.full((1, 4, 1), 100.0)
    torch.testing.assert_close(anchor_scores({"cls_logits": logits})[0], torch.full((1, 4, 3), 0.5))
    assert anchor_scores({"cls_logits": logits})[1] is None
    probs, centerness = anchor_scores({"cls_logits": logits, "centerness": -ctr})
    torch.testing.assert_close(probs, torch.full((1, 4, 3), 0.5))
    torch.testing.assert_close(centerness, torch.zeros(1, 4, 1))


def test_each_level_keeps_its_best_pairs_decoded_and_low_scores_zeroed():
    gen, coder = AnchorGenerator([8, 16], octave_base_scale=4, scales_per_octave=1, ratios=[1.0]), DeltaXYWHBoxCoder()
    anchors, sizes = gen([(2, 2), (1, 1)]), [4, 1]
    scores = torch.tensor([[[0.1, 0.02], [0.9, 0.02], [0.0, 0.3], [0.04, 0.01], [0.2, 0.6]]])
    deltas = torch.rand(1, 5, 4) * 0.1
    boxes, kept = decode_top_anchors(scores, deltas, anchors, sizes, coder, nms_pre=2, score_thr=0.05)
    order = [1, 2, 4]  # level 1: anchors 1 (0.9) and 2 (0.3); level 2: its only anchor
    torch.testing.assert_close(boxes[0], coder.decode(anchors[order], deltas[0, order]))
    # 0.02 < score_thr; level 2 keeps its 2 best (anchor, class) scores, level 1 has only 2 above the threshold
    torch.testing.assert_close(kept[0], torch.tensor([[0.9, 0.0], [0.0, 0.3], [0.2, 0.6]]))
    _, kept = decode_top_anchors(scores, deltas, anchors, sizes, coder, nms_pre=1, score_thr=0.05)
    torch.testing.assert_close(kept[0], torch.tensor([[0.9, 0.0], [0.0, 0.6]]))  # one pair per level


def test_centerness_multiplies_scores_after_the_threshold():
    """MMDetection thresholds the class score, then multiplies by centerness: 0.5 x 0.05 survives, 0.04 does not."""
    gen, coder = AnchorGenerator([8], octave_base_scale=4, scales_per_octave=1, ratios=[1.0]), DeltaXYWHBoxCoder()
    anchors = gen([(1, 2)])
    scores, centerness = torch.tensor([[[0.5], [0.04]]]), torch.tensor([[[0.05], [1.0]]])
    _, kept = decode_top_anchors(scores, torch.zeros(1, 2, 4), anchors, [2], coder, nms_pre=10, score_thr=0.05,
                                 centerness=centerness)
    torch.testing.assert_close(kept[0], torch.tensor([[0.025], [0.0]]))


def test_boxes_are_clipped_to_the_image_and_empty_ones_dropped():
    boxes = torch.tensor([[[-5.0, 2.0, 10.0, 50.0], [40.0, 1.0, 60.0, 9.0], [5.0, 5.0, 20.0, 20.0]]])
    clipped, scores = clip_boxes(boxes, torch.ones(1, 3, 2), torch.tensor([30, 40]))  # h 30, w 40
    torch.testing.assert_close(clipped[0], torch.tensor([[0.0, 2.0, 10.0, 30.0], [40.0, 1.0, 40.0, 9.0],
                                                         [5.0, 5.0, 20.0, 20.0]]))
    torch.testing.assert_close(scores[0], torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))  # box 1: no width
