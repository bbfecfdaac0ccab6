"""MMDetection-style schedule functions and the experiment YAMLs that reproduce the paper's RetinaNet / ATSS rows."""

import re

import pytest
import torch
import yaml

from umop_yolo.cfg import CFG_DIR, MODELS_DIR
from umop_yolo.engine.schedule import step_lr_lambda
from umop_yolo.settings import check_schedule

EXPERIMENTS = sorted(p for p in CFG_DIR.glob("*.yaml") if p.stem.startswith(("retinanet", "atss")))


def test_step_decay_as_mmdetection_1x():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, step_lr_lambda([8, 11]))
    lrs = []
    for _ in range(12):  # Ultralytics steps the scheduler once per epoch, before the epoch
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    torch.testing.assert_close(torch.tensor(lrs), torch.tensor([0.01] * 8 + [0.001] * 3 + [0.0001]))


@pytest.mark.parametrize("steps, warmup, clip, match", [([11, 8], 500, 0, "lr_steps"), ([8, 12], 500, 0, "lr_steps"),
                                                        ("8,11", 500, 0, "lr_steps"), ([8, 11], -1, 0, "warmup_iters"),
                                                        ([8, 11], 500, -1.0, "grad_clip")])
def test_check_schedule_names_the_bad_setting(steps, warmup, clip, match):
    with pytest.raises(ValueError, match=match):
        check_schedule(12, steps, warmup, clip)


def test_experiment_yamls_reproduce_the_paper_rows_with_mmdetection_settings():
    from ultralytics.utils import DEFAULT_CFG_DICT

    import umop_yolo.engine  # noqa: F401  (registers the UMOP keys)

    assert len(EXPERIMENTS) == 10
    for path in EXPERIMENTS:
        text, cfg = path.read_text(), yaml.safe_load(path.read_text())
        assert set(cfg) <= set(DEFAULT_CFG_DICT), path.name
        assert re.search(r"\d\d\.\d COCO", text.split("\nmodel:")[0]), f"{path.name}: no paper AP in the header"
        model = yaml.safe_load((MODELS_DIR / cfg["model"]).read_text())
        assert path.stem.split("_")[0] == model["detector"]
        assert cfg["iou"] == {"retinanet": 0.5, "atss": 0.6}[model["detector"]]
        assert cfg["umop"] == ("umop" in path.stem)
        assert cfg["optimizer"] == "SGD" and cfg["lr0"] == 0.01 / 16 and cfg["weight_decay"] == 1e-4 * cfg["nbs"]
        assert (cfg["epochs"], cfg["lr_steps"]) in [(12, [8, 11]), (24, [16, 22])]
        check_schedule(cfg["epochs"], cfg["lr_steps"], cfg["warmup_iters"], cfg["grad_clip"])
        assert cfg["mosaic"] == 0 and cfg["conf"] == 0.05 and cfg["max_det"] == 100 and cfg["imgsz"] % 128 == 0
        assert ("multi_scale" in cfg) == path.stem.endswith("_ms")
