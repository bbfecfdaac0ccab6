"""COCO-style evaluation helpers: ground truth from YOLO labels, pycocotools scoring, result-table rows.

`coco_gt` and `coco_eval` depend only on numpy and pycocotools; `metrics` adapts the scores to Ultralytics'
`DetMetrics` so that the trainer logs them.
"""
