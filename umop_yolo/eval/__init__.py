"""COCO-style evaluation functions: ground truth from YOLO labels, COCOeval scoring, result-table rows.

`coco_eval` and `report` depend only on numpy and pycocotools (faster-coco-eval when installed); `coco_gt` also reads
image sizes the way Ultralytics does; `coco_json` links image files and detections to a dataset's own instances JSON
(validation and prediction); `metrics` adapts the scores to Ultralytics' `DetMetrics` so that the trainer logs them.
"""
