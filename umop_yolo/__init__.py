"""umop-yolo: UMOP (progressive focal loss, level-wise resampling) for Ultralytics detectors.

`umop_yolo.pfl` is the pure-PyTorch loss core (no Ultralytics import). The Ultralytics adapters live in
`umop_yolo.engine`. Importing the package changes nothing outside it: the entry points (the `umop` command, `UmopYOLO`,
the trainer, validator and predictor) register the UMOP settings and keep Ultralytics offline when they run
(`umop_yolo.engine.runtime`). `from umop_yolo import UmopYOLO` loads the engine only when asked for (PEP 562), so
importing the core stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["UmopYOLO", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "UmopYOLO":
        from umop_yolo.engine.api import UmopYOLO

        return UmopYOLO
    raise AttributeError(f"module 'umop_yolo' has no attribute '{name}'")
