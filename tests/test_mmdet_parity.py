"""Parity with MMDetection 3.3: the committed checkpoints, run here, give MMDetection's raw head outputs and its final
detections (tests/fixtures/mmdet_*: recorded by tools/mmdet_golden.py; mmdet is not needed here).

Test settings: nms_pre 1000, score_thr 0.05, NMS IoU 0.6, 100 per image, images already resized and unpadded.
Scores ride on the per-level selection of MMDetection 3.x (`filter_scores_and_topk` in
mmdet/models/dense_heads/base_dense_head.py `_predict_by_feat_single`: class score > score_thr, then the nms_pre best
(anchor, class) pairs, then x centerness), and decoded boxes are clipped to the image with empty ones dropped
(`delta2bbox` with `max_shape`, `min_bbox_size=0`). The detections are checked again with nms_pre 50, where the cap
decides which boxes survive. NMS here is Ultralytics' (torchvision's, as the golden run's mmcv stand-in), whose
class offsets differ from mmcv's `batched_nms`: equal results unless an IoU lies within float rounding of 0.6.
"""

from pathlib import Path

import pytest
import torch

from umop_yolo.engine.mmdet_import import mmdet_model
from umop_yolo.engine.validator import CocoDetectionValidator
from umop_yolo.nn.postprocess import flat_levels

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DETECTORS = ("atss", "retinanet")


def golden(detector: str) -> dict:
    return torch.load(FIXTURES / f"mmdet_{detector}_outputs.pt", weights_only=True)


def as_input(image: torch.Tensor) -> torch.Tensor:
    """An (H, W, 3) RGB uint8 image as the model's (1, 3, H, W) input in [0, 1], as Ultralytics feeds it."""
    return image.permute(2, 0, 1)[None].float() / 255


def run(detector: str, checkpoint: str | None = None, nms_pre: int = 1000) -> list[tuple[torch.Tensor, dict]]:
    model, _ = mmdet_model(FIXTURES / (checkpoint or f"mmdet3_{detector}_r18.pth"))
    with torch.no_grad():
        return [model(as_input(image), nms_pre=nms_pre) for image in golden(detector)["images"]]


@pytest.mark.parametrize("detector", DETECTORS)
def test_mmdet_raw_head_outputs_match(detector):
    ref, outputs = golden(detector), run(detector)
    num_anchors = 1 if detector == "atss" else 9
    for raw, (_, preds) in zip(ref["raw"], outputs):
        expected = flat_levels({k: [x[None] for x in v] for k, v in raw.items()}, num_anchors)
        assert set(expected) == set(preds) - {"feats"}
        for key, want in expected.items():  # relative to each output's scale (elementwise is meaningless near 0)
            torch.testing.assert_close(preds[key], want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize("nms_pre", [1000, 50])
@pytest.mark.parametrize("detector", DETECTORS)
def test_mmdet_final_detections_match(detector, nms_pre, tmp_path):
    ref, suffix = golden(detector), "" if nms_pre == 1000 else f"_nms_pre{nms_pre}"
    # the per-image cap of the `nms_pre` setting (MMYOLO's, not MMDetection's) out of the way: only the per-level
    # one, passed to the forward in run(), is MMDetection's
    validator = CocoDetectionValidator(save_dir=tmp_path, args={"conf": 0.0, "iou": 0.6, "max_det": 100,
                                                                 "nms_pre": 5 * 1000})
    validator.end2end = False
    for i, (y, _) in enumerate(run(detector, nms_pre=nms_pre)):
        det = validator.postprocess(y)[0]
        want_scores, order = ref["scores" + suffix][i].sort(descending=True)
        got_scores, got_order = det["conf"].sort(descending=True)
        assert len(got_scores) == len(want_scores) > 10, f"image {i}: {len(got_scores)} vs {len(want_scores)}"
        torch.testing.assert_close(got_scores, want_scores, rtol=0, atol=1e-5)
        torch.testing.assert_close(det["bboxes"][got_order], ref["boxes" + suffix][i][order], rtol=0, atol=1e-3)
        assert det["cls"][got_order].long().tolist() == ref["labels" + suffix][i][order].tolist()


def test_mmdet2_checkpoint_gives_the_same_model():
    for (y2, _), (y3, _) in zip(run("atss", "mmdet2_atss_r18.pth"), run("atss")):
        torch.testing.assert_close(y2, y3, rtol=0, atol=0)
