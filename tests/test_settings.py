"""UMOP's settings take their defaults and checks from the PFL core and name the settings key in every message."""

import re
from types import SimpleNamespace

import pytest

from umop_yolo import pfl
from umop_yolo.cfg import mode_args
from umop_yolo.errors import UserInputError
from umop_yolo.settings import UMOP_DEFAULTS, ModelSettings, check_umop_args


def test_pfl_defaults_come_from_the_core():
    core = pfl.ProgressiveFocalLoss().settings
    for key, field in pfl.SETTINGS_KEYS.items():
        assert UMOP_DEFAULTS[key] == getattr(pfl.PFLSettings(), field) == getattr(core, field), key
    assert ModelSettings.from_settings(UMOP_DEFAULTS) == ModelSettings()  # umop, backbone_weights too


@pytest.mark.parametrize("given, message", [
    ({"pfl_w": 1.6}, "pfl_w=1.6 must be < pfl_gamma - pfl_delta = 1.5 (alpha_l = w / gamma_l < 1)"),
    ({"pfl_gamma": 1.0, "pfl_delta": 0.25, "pfl_w": 0.75}, "pfl_w=0.75 must be < pfl_gamma - pfl_delta = 0.75"),
    ({"pfl_delta": 2.0}, "pfl_delta=2.0 must be >= 0 and < pfl_gamma=2.0"),
    ({"pfl_gamma": True}, "pfl_gamma=True must be a number"),
    ({"pfl_statistic": "median"}, "pfl_statistic='median' must be one of released, paper, centered"),
    ({"lrp_reduction": "max"}, "lrp_reduction='max' must be one of sum, mean"),
    ({"pfl_form": "vfl"}, "pfl_form='vfl' must be one of focal, varifocal, negatives"),
    ({"lrp": "yes"}, "lrp='yes' must be true or false"),
    ({"umop": 1}, "umop=1 must be true or false"),
    ({"backbone_weights": 3}, "backbone_weights=3 must be a .pth file, imagenet, or false (random init)"),
    ({"epochs": 12, "lr_steps": [8, 12]}, "lr_steps=[8, 12] must increase strictly within 1..11 (epochs=12)"),
])
def test_a_bad_setting_is_one_line_naming_its_key(given, message):
    with pytest.raises(UserInputError) as error:
        check_umop_args(given)
    assert str(error.value).startswith(message)
    with pytest.raises(UserInputError, match=re.escape(message)):  # from a namespace, as trainers pass them
        check_umop_args(SimpleNamespace(**{**UMOP_DEFAULTS, **given}))


def test_missing_keys_take_their_defaults():
    check_umop_args({})  # e.g. an older checkpoint's train_args
    check_umop_args({"pfl_gamma": 1.0, "pfl_delta": 0.25, "pfl_w": 0.74})


@pytest.mark.parametrize("mode", ["train", "val", "predict"])
def test_every_mode_checks_the_umop_keys_before_it_starts(mode):
    with pytest.raises(UserInputError, match=r"^pfl_w=1.6 must be < pfl_gamma - pfl_delta"):
        mode_args(mode, {"model": "yolov8n.yaml", "pfl_w": 1.6})
