"""predict_augment: every scale x flip pass mapped back to the input's pixels, for any (B, 4+nc, N) output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.tasks import DetectionModel

from scenes import validate, write_scenes
from umop_yolo.engine.tta import predict_augment


class BrightBoxModel(nn.Module):
    """Stub head with one 'anchor' per image: the box around pixels brighter than 0.5 in channel 0, score 1."""

    stride = torch.tensor([8.0, 128.0])  # a P3-P7-like largest stride: scaled inputs are padded to 128

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        rows = []
        for image in x:
            ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            rows.append(torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, torch.tensor(1)]).float())
        return torch.stack(rows)[..., None], {}


def test_every_pass_maps_back_to_the_input_box():
    x = torch.zeros(2, 3, 96, 160)
    x[0, :, 10:40, 20:80] = 1.0  # an off-centre box, so an un-flipped flip pass would land elsewhere
    x[1, :, 50:90, 100:156] = 1.0
    y = predict_augment(BrightBoxModel(), x)
    assert y.shape == (2, 5, 6)  # 3 scales x 2 flips, one anchor each
    expected = torch.tensor([[50.0, 25.0, 60.0, 30.0], [128.0, 70.0, 56.0, 40.0]])
    for i in range(2):
        torch.testing.assert_close(y[i, :4].T, expected[i].expand(6, 4), atol=2.0, rtol=0)  # 2 px: resampling
    torch.testing.assert_close(y[:, :4, 0], expected, atol=0, rtol=0)  # scale 1, no flip: exact
    torch.testing.assert_close(y[:, :4, 1], expected, atol=0, rtol=0)  # scale 1, flipped: exact
    assert (y[:, 4] == 1).all()


def test_vertical_flip_and_padding_to_the_model_stride():
    x = torch.zeros(1, 3, 96, 160)
    x[0, :, 10:40, 20:80] = 1.0
    seen = []
    model = BrightBoxModel()
    plain = model.predict

    def recording(xi):
        seen.append(tuple(xi.shape[-2:]))
        return plain(xi)

    model.predict = recording
    y = predict_augment(model, x, scales=(1.0, 0.5), flips=(2,))
    assert seen == [(96, 160), (128, 128)]  # 48x80 padded up to multiples of 128
    torch.testing.assert_close(y[0, :4].T, torch.tensor([[50.0, 25.0, 60.0, 30.0]] * 2), atol=1.0, rtol=0)


def test_stock_yolo_model_passes_are_concatenated_and_de_flipped():
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        y = predict_augment(model, x, scales=(1.0, 0.67), flips=(None, 3))
        plain = model.predict(x)[0]
        flipped = model.predict(x.flip(3))[0]
        small = model.predict(F.pad(F.interpolate(x, size=(43, 64), mode="bilinear"), [0, 0, 0, 21], value=0.447))[0]
    n, m = plain.shape[-1], small.shape[-1]
    assert y.shape == (1, 6, 2 * n + 2 * m)  # every anchor of every pass is kept
    torch.testing.assert_close(y[..., :n], plain)
    deflipped = flipped.clone()
    deflipped[:, 0] = 96 - flipped[:, 0]
    torch.testing.assert_close(y[..., n : 2 * n], deflipped)
    rescaled = small.clone()
    rescaled[:, [0, 2]] /= 64 / 96
    rescaled[:, [1, 3]] /= 43 / 64
    torch.testing.assert_close(y[..., 2 * n : 2 * n + m], rescaled)


class TTADetectionModel(DetectionModel):
    """How a model class wires TTA: `augment=True` in val/predict reaches `_predict_augment`."""

    calls = 0

    def _predict_augment(self, x: torch.Tensor) -> torch.Tensor:
        TTADetectionModel.calls += 1
        return predict_augment(self, x)


def test_validator_with_augment_runs_every_pass_through_nms(tmp_path):
    data = write_scenes(tmp_path / "scenes")
    model = TTADetectionModel("yolov8n.yaml", nc=2, verbose=False)
    validator, stats = validate(data, tmp_path / "val", model, augment=True, imgsz=64, conf=1e-4)
    assert TTADetectionModel.calls == len(validator.dataloader)  # one augmented forward per batch
    assert (tmp_path / "val" / "predictions.json").is_file() and "metrics/AP(COCO)" in stats
