"""umop-yolo: UMOP (progressive focal loss, level-wise resampling) for Ultralytics detectors.

`umop_yolo.pfl` is the pure-PyTorch loss core (no Ultralytics import). The Ultralytics adapters live in
`umop_yolo.engine`; importing the package sets the offline environment first, because Ultralytics reads it once,
when it is imported.
"""

from umop_yolo import offline

offline.configure()

__version__ = "0.1.0"
__all__ = ["__version__"]
