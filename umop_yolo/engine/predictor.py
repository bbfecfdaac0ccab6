"""Prediction that also writes COCO-style results (`predictions.json`), for any head with the (y, raw) contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ultralytics.engine.results import Results
from ultralytics.models.yolo.detect import DetectionPredictor
from ultralytics.utils import LOGGER, YAML

from umop_yolo.eval.coco_gt import contiguous_category_ids, load_instances


def results_to_coco(result: Results, category_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """One image's detections as COCO results: bbox = [x, y, w, h] from the top left in original-image pixels.

    `image_id` is the file stem as an int when it is numeric (COCO's file names) else the stem; `category_id` is
    `category_ids[class]` when given (e.g. COCO's 80 -> 91 ids) else the class index.
    """
    path = Path(result.path)
    image_id = int(path.stem) if path.stem.isnumeric() else path.stem
    boxes = result.boxes
    records = []
    for (x1, y1, x2, y2), score, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
        records.append(
            {
                "image_id": image_id,
                "file_name": path.name,
                "category_id": category_ids[int(cls)] if category_ids else int(cls),
                "bbox": [round(v, 3) for v in (x1, y1, x2 - x1, y2 - y1)],
                "score": round(score, 5),
            }
        )
    return records


def data_category_ids(data: str | Path | None) -> list[int] | None:
    """Category ids from the `val_json` of a data YAML (class i -> i-th smallest id), or None if it names none."""
    if not data or Path(data).suffix not in {".yaml", ".yml"} or not Path(data).is_file():
        return None
    cfg = YAML.load(data)
    if not cfg.get("val_json"):
        return None
    path = Path(cfg["val_json"])
    path = path if path.is_absolute() else Path(cfg.get("path") or Path(data).parent) / path
    return contiguous_category_ids(load_instances(path))


class CocoDetectionPredictor(DetectionPredictor):
    """DetectionPredictor that, with `save_json=True`, writes every detection to `<save_dir>/predictions.json`.

    Annotated images (`save`) and YOLO txt labels (`save_txt`) come from the base class. Category ids follow the
    `val_json` of `data` when the data YAML has one, so the file can be scored against it with pycocotools.
    """

    def stream_inference(self, source: Any = None, model: Any = None, *args: Any, **kwargs: Any) -> Iterator[Results]:
        """Run the base predictor, collecting COCO records, and write them once the source is exhausted."""
        self.jdict: list[dict[str, Any]] = []
        self.category_ids = data_category_ids(self.args.data) if self.args.save_json else None
        yield from super().stream_inference(source, model, *args, **kwargs)
        if self.args.save_json:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            path = self.save_dir / "predictions.json"
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.jdict, f)
            LOGGER.info(f"{len(self.jdict)} detections saved to {path}")

    def postprocess(self, preds: Any, img: Any, orig_imgs: Any, **kwargs: Any) -> list[Results]:
        """NMS and scaling as in the base class, then the COCO records of each image."""
        results = super().postprocess(preds, img, orig_imgs, **kwargs)
        if self.args.save_json:
            for result in results:
                self.jdict.extend(results_to_coco(result, self.category_ids))
        return results
