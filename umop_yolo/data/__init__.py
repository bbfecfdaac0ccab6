"""Data layer: the built-in `shapes` dataset, `data=` resolution, and COCO/VOC to YOLO conversion."""

from umop_yolo.data.convert import convert, convert_main
from umop_yolo.data.resolve import resolve_data
from umop_yolo.data.shapes import ShapesSpec, build_shapes

__all__ = ["ShapesSpec", "build_shapes", "convert", "convert_main", "resolve_data"]
