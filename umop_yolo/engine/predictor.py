"""Prediction that also writes COCO-style results (`predictions.json`), for any head with the (y, raw) contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ultralytics.engine.results import Results
from ultralytics.models.yolo.detect import DetectionPredictor
from ultralytics.utils import DEFAULT_CFG, LOGGER, YAML

from umop_yolo.data.resolve import resolve_data
from umop_yolo.engine import runtime
from umop_yolo.engine.dense import DenseDetectionModel
from umop_yolo.engine.run.saving import check_writable
from umop_yolo.eval.coco_json import CocoTarget, result_record
from umop_yolo.nn.postprocess import keep_top_scores


def results_to_coco(result: Results, target: CocoTarget | None = None) -> list[dict[str, Any]]:
    """One image's detections as COCO results: bbox = [x, y, w, h] from the top left in original-image pixels.

    With a `target` (the data's `val_json`), an image it holds gets the JSON's image id and file name, and classes
    its category ids (e.g. COCO's 80 -> 91 ids; classes beyond its categories are dropped). Otherwise `image_id` is the
    file stem, as an int when it is numeric (COCO's file names), and `category_id` is the class index.
    """
    path = Path(result.path)
    image = target.entry(result.path) if target else None
    if image is None:
        image = {"id": int(path.stem) if path.stem.isnumeric() else path.stem, "file_name": path.name}
    category_ids = target.category_ids if target else None
    boxes = result.boxes
    records = []
    for (x1, y1, x2, y2), score, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
        if category_ids is None or int(cls) < len(category_ids):
            category = category_ids[int(cls)] if category_ids else int(cls)
            records.append(result_record(image["id"], image["file_name"], category, (x1, y1, x2 - x1, y2 - y1), score))
    return records


def data_target(data: str | Path | None) -> CocoTarget | None:
    """The `val_json` target of a data YAML (resolved as training resolves it), or None if it names none.

    A data path that no longer exists (e.g. the one a checkpoint was trained with, on another machine) gives None.
    """
    if not data or Path(data).suffix not in {".yaml", ".yml"} or not Path(data).is_file():
        return None
    resolved = Path(resolve_data(data))
    return CocoTarget.from_data(YAML.load(resolved), "val")


class CocoDetectionPredictor(DetectionPredictor):
    """DetectionPredictor that, with `save_json=True`, writes every detection to `<save_dir>/predictions.json`.

    Annotated images (`save`) and YOLO txt labels (`save_txt`) come from the base class. When the data YAML has a
    `val_json`, image ids, file names and category ids follow it, so the file can be scored against it with
    pycocotools.
    """

    def __init__(self, cfg: Any = DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None) -> None:
        runtime.register()
        super().__init__(cfg, overrides, _callbacks)

    def stream_inference(self, source: Any = None, model: Any = None, *args: Any, **kwargs: Any) -> Iterator[Results]:
        """Run the base predictor, collecting COCO records, and write them once the source is exhausted. A directory
        that cannot be written stops in one line first (cv2 would skip every image without a word)."""
        if self.args.save or self.args.save_txt or self.args.save_json:
            check_writable(self.save_dir, "prediction directory")
        runtime.ensure_fonts()  # Ultralytics' image plots look for it
        self.jdict: list[dict[str, Any]] = []
        self.target = data_target(self.args.data) if self.args.save_json else None
        yield from super().stream_inference(source, model, *args, **kwargs)
        if self.args.save_json:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            path = self.save_dir / "predictions.json"
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.jdict, f)
            LOGGER.info(f"{len(self.jdict)} detections saved to {path}")

    def inference(self, im: Any, *args: Any, **kwargs: Any) -> Any:
        """The base class's forward; a RetinaNet/ATSS model (PyTorch) decodes each level's `nms_pre` best (anchor,
        class) scores. An exported model keeps the cap it was exported with."""
        if isinstance(getattr(self.model, "model", None), DenseDetectionModel):  # AutoBackend holds it on its backend
            kwargs["nms_pre"] = int(self.args.nms_pre)
        return super().inference(im, *args, **kwargs)

    def postprocess(self, preds: Any, img: Any, orig_imgs: Any, **kwargs: Any) -> list[Results]:
        """NMS on each image's `nms_pre` best (box, class) scores and scaling as in the base class, then the COCO
        records of each image."""
        if not getattr(self.model, "end2end", False):
            preds = keep_top_scores(preds, int(self.args.nms_pre))
        results = super().postprocess(preds, img, orig_imgs, **kwargs)
        if self.args.save_json:
            for result in results:
                self.jdict.extend(results_to_coco(result, self.target))
        return results
