"""Ultralytics' log lines, reworded where they would mislead a umop user (temporary paths, `yolo` commands)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ultralytics.utils import LOGGER

YOLO_COMMAND = re.compile(r"\byolo (predict|val) task=detect\b")  # the exporter's "Predict:" and "Validate:" hints


class _Rewrite(logging.Filter):
    """Replace each record's message by `rewrite(message)` where that changes it."""

    def __init__(self, rewrite: Callable[[str], str]) -> None:
        super().__init__()
        self.rewrite = rewrite

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if (new := self.rewrite(message)) != message:
            record.msg, record.args = new, None
        return True


@contextmanager
def rewritten_log(rewrite: Callable[[str], str]) -> Iterator[None]:
    """Within this block Ultralytics' log messages pass through `rewrite`."""
    log_filter = _Rewrite(rewrite)
    LOGGER.addFilter(log_filter)
    try:
        yield
    finally:
        LOGGER.removeFilter(log_filter)


def umop_commands(message: str) -> str:
    """`yolo predict task=detect ...` / `yolo val task=detect ...` (what Ultralytics suggests after an export) as the
    `umop` commands that run the exported file."""
    return YOLO_COMMAND.sub(r"umop \1", message)
