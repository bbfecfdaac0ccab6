"""DenseDetectionModel: YAML schema, the Detect contract (train dict, eval (y, raw), export y), targets, load."""

import pytest
import torch
import yaml

from umop_yolo.cfg import MODELS_DIR
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.dense_schema import merged_config
from umop_yolo.nn.targets import padded_targets


def tiny(detector, nc=3, **head):
    """A narrow ResNet-18 model config (random init) that runs in milliseconds."""
    cfg = {"detector": detector, "nc": nc, "backbone": {"depth": 18, "pretrained": None},
           "neck": {"out_channels": 32}, "head": {"feat_channels": 32, "stacked_convs": 1, **head}}
    if detector == "atss":
        cfg["head"]["gn_groups"] = 8
    return cfg


def batch(n_img=2):
    return {"img": torch.rand(n_img, 3, 128, 128), "batch_idx": torch.tensor([1.0, 0, 1]),
            "cls": torch.tensor([[2.0], [0], [1]]),
            "bboxes": torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.5, 0.5, 0.25, 0.5], [0.75, 0.5, 0.5, 0.5]])}


def test_every_model_yaml_is_complete_and_matches_its_name():
    files = sorted(MODELS_DIR.glob("*.yaml"))
    dense = [f for f in files if "detector" in yaml.safe_load(f.read_text())]
    assert {f.stem.split("_")[0] for f in dense} == {"retinanet", "atss"}
    for f in dense:
        cfg = yaml.safe_load(f.read_text())
        assert merged_config(cfg) == {**cfg, "backbone": cfg["backbone"], "neck": cfg["neck"], "head": cfg["head"]}, f
        assert cfg["detector"] == f.stem.split("_")[0]
        assert ("dcn" in f.stem) == bool(cfg["backbone"].get("dcn_stages")), f
        yolo = cfg["backbone"].get("yolo")  # atss_yolov8n.yaml: backbone {yolo: yolov8n.yaml}
        assert f"{f.stem.split('_')[1]}.yaml" == yolo if yolo else "yolo" not in f.stem, f


def test_unknown_keys_are_rejected_with_their_place():
    with pytest.raises(ValueError, match="head.anchors.octave"):
        merged_config({"detector": "atss", "head": {"anchors": {"octave": 8}}})
    with pytest.raises(ValueError, match="detector"):
        merged_config({"detector": "fcos"})


@pytest.mark.parametrize("detector, per_loc, keys", [("retinanet", 9, {"box_loss", "cls_loss"}),
                                                      ("atss", 1, {"box_loss", "cls_loss", "ctr_loss"})])
def test_detect_contract_train_eval_export(detector, per_loc, keys):
    model = DenseDetectionModel(tiny(detector, test={"nms_pre": 50}), nc=3, verbose=False)
    assert model.stride.tolist() == [8, 16, 32, 64, 128] and not model.end2end
    x = torch.rand(2, 3, 128, 256)
    preds = model(x)
    sizes = [per_loc * (16 // 2**i) * (32 // 2**i) for i in range(5)]  # P3-P7 of a 128 x 256 image
    assert preds["cls_logits"].shape == (2, sum(sizes), 3) and len(preds["feats"]) == 5
    model.eval()
    y, raw = model(x)
    assert y.shape == (2, 4 + 3, sum(min(50, n) for n in sizes)) and set(raw) >= {"cls_logits", "bbox_deltas"}
    scores = y[:, 4:]
    assert ((scores == 0) | (scores >= 0.05)).all()  # below score_thr: dropped
    model.model[-1].export = True
    assert torch.equal(model(x), y)
    model.model[-1].export = False
    model.train()
    loss, items = model.loss(batch())
    assert set(items) == keys and loss.shape == () and torch.isfinite(loss)


def test_padded_targets_groups_boxes_by_image_in_pixels():
    boxes, labels, mask = padded_targets(batch())
    assert mask.tolist() == [[True, False], [True, True]] and labels.tolist() == [[0, 0], [2, 1]]
    torch.testing.assert_close(boxes[1, 0], torch.tensor([0.0, 0, 64, 64]))  # xywh 0.25, 0.25, 0.5, 0.5 of 128 px
    empty = padded_targets({**batch(), "batch_idx": torch.zeros(0), "cls": torch.zeros(0, 1),
                            "bboxes": torch.zeros(0, 4)})
    assert empty[2].shape == (2, 1) and not empty[2].any()


def test_load_transfers_matching_tensors_and_keeps_a_new_classifier():
    source = DenseDetectionModel(tiny("atss", nc=3), verbose=False)
    target = DenseDetectionModel(tiny("atss", nc=5), verbose=False)
    target.load({"ema": source, "model": None}, verbose=False)
    head, src = target.model[-1].head, source.model[-1].head
    torch.testing.assert_close(head.reg_convs[0].weight, src.reg_convs[0].weight)
    assert head.atss_cls.weight.shape[0] == 5  # 3 -> 5 classes: the classifier is not copied
