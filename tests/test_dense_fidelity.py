"""RetinaNet / ATSS losses agree with MMDetection (2.x, which the authors' UMOP code forks) where it is easy to drift:
the normaliser counts every image at least once, padding anchors are not samples, box targets are what the coder can
represent."""

import math
import pickle
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ultralytics.utils import DEFAULT_CFG_DICT

from conftest import tiny_train_args
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.nn import AnchorGenerator, ATSSAssigner, ATSSLoss, DeltaXYWHBoxCoder, MaxIoUAssigner, RetinaNetLoss
from umop_yolo.nn.losses import centerness_target
from umop_yolo.nn.targets import valid_regions
from umop_yolo.pfl import ProgressiveFocalLoss

FOCAL = ProgressiveFocalLoss(gamma=2.0, delta=0.0, w=0.5)
ATSS_CODER = DeltaXYWHBoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
ANCHORS = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 4.5], [20, 20, 30, 30], [40, 40, 50, 50]])
BOXES = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 28, 30]]])
LABELS = torch.tensor([[1, 2]])
MASK = torch.tensor([[True, True]])


def losses(detector):
    if detector == "retinanet":
        return RetinaNetLoss(FOCAL, MaxIoUAssigner(), DeltaXYWHBoxCoder(), nc=3)
    return ATSSLoss(FOCAL, ATSSAssigner(topk=2), ATSS_CODER, nc=3)


def preds(n_img, seed=0, nc=3, anchors=5):
    g = torch.Generator().manual_seed(seed)
    return {"cls_logits": torch.randn(n_img, anchors, nc, generator=g) * 2,
            "bbox_deltas": torch.randn(n_img, anchors, 4, generator=g),
            "centerness": torch.randn(n_img, anchors, 1, generator=g)}


def image(p, i):
    return {k: v[i : i + 1] for k, v in p.items()}


@pytest.mark.parametrize("detector", ["retinanet", "atss"])
def test_an_image_without_boxes_adds_one_to_the_divisor_of_cls_and_centerness(detector):
    """MMDetection's num_total_pos = sum_i max(#pos_i, 1): the cls (and ATSS' centerness) divisor, RetinaNet's L1's
    too; ATSS' GIoU keeps the centerness-target sum."""
    p = preds(2)
    boxes, labels, mask = torch.cat([BOXES, torch.zeros(1, 2, 4)]), torch.cat([LABELS, LABELS]), \
        torch.tensor([[True, True], [False, False]])
    loss = losses(detector)
    alone = loss(image(p, 0), ANCHORS, [3, 2], BOXES, LABELS, MASK)
    n_pos = float(loss.last_stats["num_pos"].sum())
    empty = loss(image(p, 1), ANCHORS, [3, 2], boxes[1:], labels[1:], mask[1:])
    both = loss(p, ANCHORS, [3, 2], boxes, labels, mask)
    assert n_pos == (3 if detector == "retinanet" else 2)
    # each image's sum over the sum of the divisors: (S0 + S1) / (n_pos + 1)
    torch.testing.assert_close(both["cls_loss"], (alone["cls_loss"] * n_pos + empty["cls_loss"]) / (n_pos + 1))
    if detector == "atss":
        torch.testing.assert_close(both["ctr_loss"], alone["ctr_loss"] * n_pos / (n_pos + 1))
        torch.testing.assert_close(both["box_loss"], alone["box_loss"])  # / the centerness-target sum
    else:
        torch.testing.assert_close(both["box_loss"], alone["box_loss"] * n_pos / (n_pos + 1))


# --- valid flags: anchors in the padding ------------------------------------------------------------------------------

def mmdet_valid_flags(gen, sizes, pad_h, pad_w):
    """Transcription of MMDetection's AnchorGenerator.valid_flags(featmap_sizes, pad_shape) for one image."""
    out = []
    for (feat_h, feat_w), s in zip(sizes, gen.strides):
        valid_h, valid_w = min(math.ceil(pad_h / s), feat_h), min(math.ceil(pad_w / s), feat_w)
        vx = torch.arange(feat_w) < valid_w
        vy = torch.arange(feat_h) < valid_h
        out.append((vy[:, None] & vx[None, :]).reshape(-1)[:, None].expand(-1, gen.num_anchors).reshape(-1))
    return torch.cat(out)


def test_valid_flags_are_mmdetections_for_a_pad_shape_and_follow_a_centred_letterbox():
    gen = AnchorGenerator([8, 16, 32], octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
    sizes = [(12, 16), (6, 8), (3, 4)]  # a 96 x 128 batch
    shapes = [(96, 128), (70, 128), (96, 41), (1, 1)]
    got = gen.valid_flags(sizes, torch.tensor([[0.0, 0, w, h] for h, w in shapes]))
    assert got.shape == (4, sum(gen.level_sizes(sizes)))
    for flags, (h, w) in zip(got, shapes):
        assert torch.equal(flags, mmdet_valid_flags(gen, sizes, h, w))
    # a letterbox centred in the batch: anchor centres (x * s, y * s) in [x0, x1) x [y0, y1)
    centred = gen.valid_flags(sizes, torch.tensor([[0.0, 13, 128, 83]]))[0]
    anchors = gen(sizes)
    cy = (anchors[:, 1] + anchors[:, 3]) / 2
    assert torch.equal(centred, (cy.round() >= 13) & (cy.round() < 83))


def letterboxed(n_img=2, h=96, w=128):
    """A validation-style batch as Ultralytics' LetterBox leaves it: image 0 is 640x400 -> 128x80 padded by 8 rows
    top and bottom; image 1 fills the 96x128 input."""
    return {"img": torch.zeros(n_img, 3, h, w), "ori_shape": ((400, 640), (480, 640))[:n_img],
            "resized_shape": ((h, w),) * n_img, "ratio_pad": (((0.2, 0.2), (0, 8)), ((0.2, 0.2), (0, 0)))[:n_img],
            "batch_idx": torch.tensor([0.0, 1.0][:n_img]), "cls": torch.tensor([[0.0], [1.0]][:n_img]),
            "bboxes": torch.tensor([[0.5, 0.5, 0.25, 0.3], [0.3, 0.3, 0.2, 0.2]][:n_img])}


def test_valid_regions_are_the_letterboxed_images_and_none_for_training_batches():
    torch.testing.assert_close(valid_regions(letterboxed()), torch.tensor([[0.0, 8, 128, 88], [0, 0, 128, 96]]))
    # the input resized after letterboxing (multi-scale): the region scales with it
    small = {**letterboxed(), "img": torch.zeros(2, 3, 48, 64)}
    torch.testing.assert_close(valid_regions(small), torch.tensor([[0.0, 4, 64, 44], [0, 0, 64, 48]]))
    train = {**letterboxed(), "ratio_pad": ((0.2, 0.2), (0.2, 0.2))}  # mosaic / affine: no placement recorded
    assert valid_regions(train) is None
    recorded = {**train, "valid_region": (np.array([0.25, 0, 1, 0.5], np.float32), np.array([0, 0, 1, 1], np.float32))}
    torch.testing.assert_close(valid_regions(recorded), torch.tensor([[32.0, 0, 128, 48], [0, 0, 128, 96]]))
    assert valid_regions({k: v for k, v in letterboxed().items() if k != "ratio_pad"}) is None


def test_invalid_anchors_are_neither_assigned_nor_sampled():
    # MaxIoU: anchor 0 (IoU 1 with the box) is in the padding: the box's best valid anchor, 1, is its match
    valid = torch.tensor([[False, True, True, True, True]])
    got = MaxIoUAssigner()(ANCHORS, [3, 2], BOXES, MASK, valid)
    assert got.pos.tolist() == [[False, True, False, True, False]]
    assert got.ignore.tolist() == [[True, False, True, False, False]]  # padding; IoU in [0.4, 0.5)
    # ATSS: an invalid anchor is no candidate. Box [0,0,10,10] with topk 2 on level 0 (anchors 0-2), level 1 (3, 4):
    # all valid, the candidates are anchors 0, 1 (IoU 1, 0.8), 3, 4 (0): threshold 0.45 + 0.52, anchor 0 only.
    # Anchor 0 invalid: candidates 1, 2 (0.8, 0.45), 3, 4: threshold 0.31 + 0.39 = 0.70: anchor 1.
    atss = ATSSAssigner(topk=2)
    boxes = BOXES[:, :1]
    assert atss(ANCHORS, [3, 2], boxes, MASK[:, :1]).pos.tolist() == [[True, False, False, False, False]]
    got = atss(ANCHORS, [3, 2], boxes, MASK[:, :1], valid)
    assert got.pos.tolist() == [[False, True, False, False, False]] and got.ignore.tolist() == (~valid).tolist()
    # fewer valid anchors in a level than topk: the threshold is over the valid candidates only (MMDetection's
    # min(topk, anchors inside)): level 0 keeps anchor 1 alone, as if anchors 0 and 2 did not exist
    few = torch.tensor([[False, True, False, True, True]])
    want = atss(ANCHORS[[1, 3, 4]], [1, 2], boxes, MASK[:, :1])
    got = atss(ANCHORS, [3, 2], boxes, MASK[:, :1], few)
    assert got.pos[:, [1, 3, 4]].tolist() == want.pos.tolist() and not got.pos[:, [0, 2]].any()


def tiny_model(detector):
    torch.manual_seed(0)
    head = {"feat_channels": 16, "stacked_convs": 1, **({"gn_groups": 4} if detector == "atss" else {})}
    m = DenseDetectionModel({"detector": detector, "nc": 3, "backbone": {"depth": 18, "pretrained": None},
                             "neck": {"out_channels": 16}, "head": head}, verbose=False)
    m.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": True})
    return m.train()


@pytest.mark.parametrize("detector", ["retinanet", "atss"])
def test_the_criterion_of_a_letterboxed_batch_ignores_what_the_padding_anchors_predict(detector):
    m, batch = tiny_model(detector), letterboxed()
    criterion = m.init_criterion()
    preds = m(batch["img"])
    _, items = criterion(preds, batch)
    anchors, _ = m.model[-1].anchors_for(preds["feats"])
    cy = (anchors[:, 1] + anchors[:, 3]) / 2
    padding = (cy.round() < 8) | (cy.round() >= 88)  # image 0's 8 rows above and below
    assert padding.any()
    loud = {**preds, "cls_logits": preds["cls_logits"].clone()}
    loud["cls_logits"][0, padding] = 5.0  # confident false positives there: a large focal loss if sampled
    torch.testing.assert_close(criterion(loud, batch)[1], items)
    unpadded = {k: v for k, v in batch.items() if k != "ratio_pad"}
    assert criterion(loud, unpadded)[1]["cls_loss"] > 2 * items["cls_loss"]
    # `umop analyze` sees the same assignment as the loss
    assert criterion.assign(preds, batch).pos[0, padding].sum() == 0


def test_a_letterboxed_ultralytics_batch_has_the_valid_region_of_its_pixels(tiny_shapes):
    """Ultralytics' validation pipeline (LetterBox, rect batches): the region is where the 114 grey padding is not."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    from umop_yolo.data.resolve import resolve_data

    data = check_det_dataset(str(resolve_data(str(tiny_shapes))))
    cfg = get_cfg(overrides={"imgsz": 160})  # 160 px images in 192 px rect batches: 16 px of padding each side
    dataset = build_yolo_dataset(cfg, data["val"], 4, data, mode="val", rect=True, stride=32)
    batch = YOLODataset.collate_fn([dataset[i] for i in range(4)])
    content = (batch["img"] != 114).any(1)  # (B, H, W)
    rows, cols = content.any(2), content.any(1)
    for region, r, c in zip(valid_regions(batch), rows, cols):
        y, x = r.nonzero()[:, 0], c.nonzero()[:, 0]
        assert region.tolist() == [x[0], y[0], x[-1] + 1, y[-1] + 1] == [16, 16, 176, 176]


@pytest.mark.parametrize("detector", ["retinanet", "atss"])
def test_padding_anchors_take_no_loss_and_no_gradient(detector):
    p = {k: v.requires_grad_() for k, v in preds(1).items()}
    valid = torch.tensor([[True, True, True, True, False]])  # anchor 4: an easy negative in the padding
    loss = losses(detector)
    terms = loss(p, ANCHORS, [3, 2], BOXES, LABELS, MASK, valid)
    sum(terms.values()).backward()
    for v in p.values():
        assert v.grad is None or torch.equal(v.grad[0, 4], torch.zeros_like(v.grad[0, 4]))
    keep = {k: v.detach()[:, :4] for k, v in p.items()}
    want = loss(keep, ANCHORS[:4], [3, 1], BOXES, LABELS, MASK)
    for k in terms:
        torch.testing.assert_close(terms[k], want[k])


# --- box targets through the coder ------------------------------------------------------------------------------------

def test_atss_box_and_centerness_targets_are_decode_encode_of_the_box():
    """A 4 px box on a 640 px anchor: log(4 / 640) / 0.2 is past the coder's clamp, so MMDetection's target is the
    10.24 px box decode(encode(gt)) (pos_decode_bbox_targets, also the centerness target's box)."""
    anchors = torch.tensor([[0.0, 0, 640, 640], [1000, 1000, 1010, 1010], [2000, 2000, 2010, 2010]])
    box = torch.tensor([[[319.0, 319, 323, 323]]])  # centre (321, 321); the anchor centre (320, 320) is inside
    deltas = ATSS_CODER.encode(anchors[None], box.expand(1, 3, 4))  # what the box encodes to, unclamped
    p = {"cls_logits": torch.zeros(1, 3, 1), "bbox_deltas": deltas, "centerness": torch.zeros(1, 3, 1)}
    loss = ATSSLoss(FOCAL, ATSSAssigner(topk=3), ATSS_CODER, nc=1)
    terms = loss(p, anchors, [3], box, torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool))
    assert loss.last_stats["num_pos"].tolist() == [1.0]
    clamped = ATSS_CODER.decode(anchors[:1], deltas[0, :1])  # 10.24 px wide, centred on (321, 321)
    torch.testing.assert_close(clamped[0, 2] - clamped[0, 0], torch.tensor(640 * 16 / 1000))
    torch.testing.assert_close(terms["box_loss"], torch.tensor(0.0), atol=1e-6, rtol=0)  # the prediction is the target
    ctr = centerness_target(anchors[:1], clamped)  # (320 - 315.88) / (326.12 - 320), not 1 / 3 as of the raw box
    torch.testing.assert_close(terms["ctr_loss"], F.binary_cross_entropy_with_logits(torch.zeros(1), ctr))


def wide_images(root):
    """A data YAML of eight 128 x 64 noise images with one box each: mosaic tiles that leave grey fill."""
    import cv2

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), rng.integers(0, 255, (64, 128, 3), dtype=np.uint8))
            (root / "labels" / split / f"{i}.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: {{0: box}}\n")
    return root / "data.yaml"


def shapes_batches(data_yaml, n=8, **hyp):
    """Training batches through Ultralytics' augmentation (no colour jitter), recording valid regions."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    from umop_yolo.data.resolve import resolve_data
    from umop_yolo.data.valid_region import record_valid_regions

    random.seed(0)
    np.random.seed(0)
    data = check_det_dataset(str(resolve_data(str(data_yaml))))
    cfg = get_cfg(overrides={"imgsz": 128, "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, **hyp})
    dataset = record_valid_regions(build_yolo_dataset(cfg, data["train"], n, data, mode="train", stride=32))
    return dataset, YOLODataset.collate_fn([dataset[i] for i in range(n)]), cfg


def test_training_batches_record_where_the_affine_put_each_image(tiny_shapes):
    """Mosaic off (the close_mosaic epochs; the paper configs): scaled, shifted, flipped images in 114 grey. The
    recorded region is the box of the non-grey pixels (to the pixel the nearest-neighbour mask and the bilinear image
    warps may disagree on)."""
    dataset, batch, cfg = shapes_batches(tiny_shapes, mosaic=0.0, scale=0.5, translate=0.2, fliplr=0.5)
    regions = valid_regions(batch)
    assert (regions[:, 2:] - regions[:, :2]).prod(1).min() < 128 * 128 * 0.9  # some images leave padding
    for region, img in zip(regions, batch["img"]):
        content = (img != 114).any(0)
        y, x = content.any(1).nonzero()[:, 0], content.any(0).nonzero()[:, 0]
        assert (region - torch.tensor([x[0], y[0], x[-1] + 1, y[-1] + 1])).abs().max() <= 1
    dataset.close_mosaic(cfg)  # the rebuilt transforms still record it
    assert "valid_region" in type(dataset).collate_fn([dataset[0]])
    assert pickle.loads(pickle.dumps(dataset)).build_transforms(cfg) is not None  # DataLoader workers (spawn)


def test_a_mosaic_counts_as_valid_up_to_its_canvas_edge(tmp_path):
    """The warp of a mosaic at scale 1 covers the input: valid throughout, the grey fill between its tiles included."""
    _, batch, _ = shapes_batches(wide_images(tmp_path), mosaic=1.0, scale=0.0, translate=0.0)
    assert (batch["img"] == 114).all(1).all(2).any()  # a grey row: fill above or below the 64 px high tiles
    torch.testing.assert_close(valid_regions(batch), torch.tensor([[0.0, 0, 128, 128]] * 8))


@pytest.mark.parametrize("model, recorded", [("atss_yolov8n.yaml", True), ("yolov8n.yaml", False)])
def test_the_trainer_records_valid_regions_for_dense_heads_only(tiny_shapes, tmp_path, model, recorded):
    from umop_yolo.cfg import experiment_args
    from umop_yolo.cli import parse_args
    from umop_yolo.engine.trainer import UmopTrainer

    trainer = UmopTrainer(overrides=experiment_args(None, parse_args(tiny_train_args(tiny_shapes, tmp_path,
                                                                                     model=model))))
    trainer.data = trainer.get_dataset()
    trainer.model = trainer.get_model(trainer.args.model, verbose=False)
    train = trainer.build_dataset(trainer.data["train"], "train", 2)
    val = trainer.build_dataset(trainer.data["val"], "val", 2)
    assert ("valid_region" in train[0]) is recorded
    assert "valid_region" not in val[0]  # validation batches carry LetterBox's ratio_pad instead
