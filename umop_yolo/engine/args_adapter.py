"""The one place the engine turns Ultralytics' args into UMOP's settings objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from umop_yolo.settings import ModelSettings


def settings_from_args(args: Any) -> ModelSettings:
    """A model's UMOP settings (with its PFL settings) from Ultralytics' args: a namespace (`model.args` while
    training), a dict (`model.args` of a loaded checkpoint) or None (a model built alone); keys missing take their
    defaults."""
    values = {} if args is None else args if isinstance(args, Mapping) else vars(args)
    return ModelSettings.from_settings(values)
