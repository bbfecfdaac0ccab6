"""Validation that reports what detection papers report: COCOeval's AP, AP50, AP75, APs, APm, APl on any dataset."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from ultralytics.cfg import get_cfg, get_save_dir
from ultralytics.data.utils import img2label_paths
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.nn.tasks import load_checkpoint
from ultralytics.utils import DEFAULT_CFG_DICT, LOGGER, nms, ops

from umop_yolo.data.resolve import SOURCE_KEY
from umop_yolo.data.voc import VOC_BOXES
from umop_yolo.engine import runtime, ultralytics_internals
from umop_yolo.engine.dense import decoding_at
from umop_yolo.engine.run.saving import check_writable
from umop_yolo.errors import UserInputError
from umop_yolo.eval.coco_eval import METRICS, default_backend, evaluate_boxes
from umop_yolo.eval.coco_gt import cached_yolo_gt, yolo_images
from umop_yolo.eval.coco_json import CocoTarget, data_file, result_record
from umop_yolo.eval.metrics import COCO_KEYS, CocoDetMetrics
from umop_yolo.eval.report import printable, text_row, write_tables
from umop_yolo.nn.postprocess import keep_top_scores

TEST_KEYS = ("conf", "iou", "max_det", "nms_pre")  # the NMS settings of validation


def training_test_args(ckpt: dict | None, given: dict[str, Any]) -> dict[str, Any]:
    """The NMS settings a checkpoint's training validated with (its train args: conf when set, iou, max_det, nms_pre)
    that a standalone val or predict does not give: e.g. MMDetection's 0.05 / 0.6 / 100 of a RetinaNet or ATSS
    experiment, not Ultralytics' 0.001 / 0.7 / 300. {} for a model built from a YAML. Those that differ from the
    defaults are logged."""
    train_args = (ckpt or {}).get("train_args") or {}
    args = {k: train_args[k] for k in TEST_KEYS if k not in given and train_args.get(k) is not None}
    if changed := [f"{k}={v}" for k, v in args.items() if v != DEFAULT_CFG_DICT[k]]:
        LOGGER.info(f"NMS settings of the model's training: {', '.join(changed)}")
    return args


class CocoDetectionValidator(DetectionValidator):
    """Detection validator scored by COCOeval (faster-coco-eval if installed, else pycocotools: the same numbers),
    during training and standalone.

    Ground truth is the data dict's `<split>_json` (e.g. `val_json`, a COCO instances file: images matched by the
    converter's id map or by relative path, see `eval.coco_json`; class i -> i-th smallest category id), else it is
    built from the YOLO labels and cached as JSON beside them (`labels/<split>.coco.json`; `<UMOP_CACHE_DIR>/coco_gt/`
    if that folder is read-only). The six numbers are printed (nan, shown as "-", for a size range without ground
    truth), added to the metrics dict as `metrics/AP(COCO)` ... `metrics/APl(COCO)`, and COCO AP is the fitness.
    Standalone runs also write `predictions.json`, `coco_metrics.md/.csv` and, with `per_class=True`,
    `coco_per_class.md/.csv` into the save dir.
    """

    def __init__(self, dataloader=None, save_dir=None, args=None, _callbacks: dict | None = None) -> None:
        """Set up the validator with COCO-extended metrics; a standalone run's directory must be writable."""
        runtime.register()
        if save_dir is None:  # as Ultralytics would choose it (training passes its own)
            save_dir = get_save_dir(get_cfg(overrides=args))
            check_writable(save_dir, "validation directory")
        super().__init__(dataloader, save_dir, args, _callbacks)
        self.metrics = CocoDetMetrics()
        self.gt_json: Path | None = None  # the ground-truth file of the last evaluation (None: held in memory only)
        self.images: dict[str, dict] = {}  # image path -> its ground-truth image (`id`, `file_name`)
        self.target: CocoTarget | None = None  # the data's `<split>_json`, if it has one; kept across epochs
        self.coco_backend = default_backend()  # the COCOeval library that scored the last evaluation

    def get_model(self, model: Any, trainer: Any = None) -> Any:
        """The model to validate, as the base class picks it, a checkpoint file loaded as its AutoBackend would (a
        training's final check of best.pt); a RetinaNet/ATSS model as a view whose forward decodes each level's
        `nms_pre` best (anchor, class) scores: the base class calls `model(img, augment=...)` alone."""
        model = super().get_model(model, trainer)
        weights = self.args.model if model is None else model
        if trainer is None and isinstance(weights, (str, Path)) and str(weights).endswith(".pt"):
            model = load_checkpoint(weights)[0]
        return decoding_at(model, int(self.args.nms_pre))

    def __call__(self, trainer: Any = None, model: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Ultralytics' validation, with its plotting font in place (its dataset check looks for it)."""
        runtime.ensure_fonts()
        return super().__call__(trainer, model, **kwargs)

    def init_metrics(self, model: torch.nn.Module) -> None:
        """Map this dataset's images and classes to ground-truth ids, and collect every prediction for COCOeval."""
        if not self.training and not self.args.single_cls:  # training builds the model from the data
            self._check_classes(model.names)
        super().init_metrics(model)
        self.args.save_json = True  # pred_to_json runs for every image; standalone runs save predictions.json
        ultralytics_internals.use_own_ground_truth(self)
        im_files = [lb["im_file"] for lb in self.dataloader.dataset.labels]
        split = "val" if self.training else self.args.split or "val"  # training always validates on `val`
        if data_file(self.data, f"{split}_json") is None:
            self.target = None
            self.images = yolo_images(im_files)
            self.class_map = list(range(self.nc))  # category id = YOLO class index
        else:
            self.images = self._read_target(split, im_files)
            self.class_map = self.target.category_ids

    def _check_classes(self, names: dict[int, str]) -> None:
        """A model with another class count than the data stops in one line; other class names are warned once."""
        ours, theirs = list(names.values()), list(self.data["names"].values())
        data = self.data.get(SOURCE_KEY, self.args.data)  # the user's YAML, not our resolved copy
        if len(ours) != len(theirs):
            raise UserInputError(
                f"the model has {len(ours)} classes but data '{data}' has {len(theirs)}: "
                "validate on data with the model's classes"
            )
        if differ := [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]:
            i, more = differ[0], f" ({len(differ) - 1} more)" if len(differ) > 1 else ""
            LOGGER.warning(
                f"the model's class names differ from data '{data}': class {i} is '{ours[i]}' in the model "
                f"but '{theirs[i]}' in data{more}; classes are scored by index."
            )

    def postprocess(self, preds: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Ultralytics' NMS on each image's `nms_pre` best (box, class) scores, without its time limit.

        Focal-loss heads keep many low scores above `conf=0.001`; uncapped, NMS over them costs far more than the
        forward pass. The time limit would stop NMS part-way through a batch on a busy CPU and leave the remaining
        images with no detections, scoring a model by how fast NMS ran.
        """
        if not self.end2end:  # an end-to-end head's (B, max_det, 6) rows need no NMS
            preds = keep_top_scores(preds, int(self.args.nms_pre))
        outputs = nms.non_max_suppression(
            preds,
            self.args.conf,
            self.args.iou,
            multi_label=True,
            agnostic=self.args.single_cls or self.args.agnostic_nms,
            max_det=self.args.max_det,
            end2end=self.end2end,
            max_time_img=math.inf,
        )
        return [{"bboxes": x[:, :4], "conf": x[:, 4], "cls": x[:, 5], "extra": x[:, 6:]} for x in outputs]

    def _read_target(self, split: str, im_files: list[str]) -> dict[str, dict]:
        """Read the split's JSON once (kept across epochs) and match the images to it; warns about what it misses."""
        json_file = data_file(self.data, f"{split}_json")
        fresh = self.target is None or self.target.json_file != json_file
        if fresh:
            self.target = CocoTarget.from_data(self.data, split)
            categories = len(self.target.instances["categories"])
            if categories != self.nc:
                LOGGER.warning(
                    f"{json_file} has {categories} categories but the model has {self.nc} classes: "
                    "class i is scored as the i-th smallest category id, classes beyond them are dropped."
                )
        images = self.target.match(im_files)
        if fresh and (unmatched := len(im_files) - len(images)):
            LOGGER.warning(f"{unmatched} of {len(im_files)} images are not in {json_file}: they are not evaluated.")
        return images

    def pred_to_json(self, predn: dict[str, torch.Tensor], pbatch: dict[str, Any]) -> None:
        """Add one image's predictions (original-image pixels) to `jdict` as COCO results under its ground-truth id."""
        image = self.images.get(pbatch["im_file"])
        if image is None:  # not in the official JSON (warned once in init_metrics)
            return
        boxes = ops.xyxy2ltwh(predn["bboxes"]).tolist()
        for box, score, cls in zip(boxes, predn["conf"].tolist(), predn["cls"].tolist()):
            if int(cls) < len(self.class_map):
                self.jdict.append(result_record(image["id"], image["file_name"], self.class_map[int(cls)], box, score))

    def _ground_truth(self) -> dict:
        """COCO ground truth restricted to this dataset's images; sets `gt_json` to the file that holds it."""
        if self.target is not None:
            self.gt_json, instances = self.target.json_file, self.target.instances
            keep = {image["id"] for image in self.images.values()}
            return {
                **instances,
                "images": [img for img in instances["images"] if img["id"] in keep],
                "annotations": [a for a in instances["annotations"] if a["image_id"] in keep],
            }
        labels = self.dataloader.dataset.labels
        cache_file = Path(img2label_paths([labels[0]["im_file"]])[0]).parent.with_suffix(".coco.json")
        voc_box = self.data.get("voc_box")  # converted VOC data: how its boxes were read
        notes = {"voc_box": f"{voc_box}: {VOC_BOXES.get(voc_box, '')}"} if voc_box else None
        gt, self.gt_json = cached_yolo_gt(labels, self.names, cache_file, notes=notes)
        if self.gt_json is None:
            LOGGER.warning(f"could not write the COCO ground truth to {cache_file} or the cache dir; kept in memory.")
        return gt

    def get_stats(self) -> dict[str, Any]:
        """Ultralytics' metrics plus the COCOeval numbers, computed here so that print_results can show them."""
        self.metrics.process(save_dir=self.save_dir, plot=self.args.plots, on_plot=self.on_plot)
        stats = self.coco_evaluate(self.metrics.results_dict, self.jdict, self._ground_truth())
        self.metrics.clear_stats()
        return stats

    def coco_evaluate(self, stats: dict[str, Any], pred_json: list[dict], anno_json: dict) -> dict[str, Any]:
        """Score COCO results against COCO ground truth with COCOeval and add the six numbers to `stats`.

        Replaces Ultralytics' version, which needs faster-coco-eval and only warns without it.
        """
        per_class = bool(getattr(self.args, "per_class", False))
        if not pred_json:
            LOGGER.warning("no predictions to score: COCO metrics are 0 (nan for size ranges without ground truth).")
        scores = evaluate_boxes(anno_json, pred_json, use_cats=not self.args.single_cls, per_class=per_class)
        LOGGER.info(f"{scores.backend} COCOeval (bbox), ground truth {self.gt_json or 'in memory'}:\n{scores.summary}")
        self.metrics.coco, self.coco_backend = scores.stats, scores.backend
        names = {c["id"]: str(c.get("name", c["id"])) for c in anno_json["categories"]}
        self.metrics.coco_per_class = {names[c]: dict(zip(METRICS, v)) for c, v in scores.per_class.items()}
        if not self.training:
            self._write_tables()
        return {**stats, **dict(zip(COCO_KEYS, self.metrics.coco.values())), "fitness": self.metrics.fitness}

    def _write_tables(self) -> None:
        """Markdown and CSV rows, ready to paste into a results table, for the run and (on request) per class."""
        label = self.args.name or Path(str(self.args.model)).stem
        write_tables(self.save_dir, "coco_metrics", "model", {label: self.metrics.coco})
        if self.metrics.coco_per_class:
            write_tables(self.save_dir, "coco_per_class", "class", self.metrics.coco_per_class)

    @contextmanager
    def _one_line_names(self) -> Iterator[None]:
        """Class names with control characters escaped, for Ultralytics' image plots (PIL's text layout fails on a
        line break)."""
        names, self.names = self.names, {k: printable(v) for k, v in self.names.items()}
        try:
            yield
        finally:
            self.names = names

    def plot_val_samples(self, batch: dict[str, Any], ni: int) -> None:
        with self._one_line_names():
            super().plot_val_samples(batch, ni)

    def plot_predictions(self, batch: dict[str, Any], preds: list[dict[str, torch.Tensor]], ni: int,
                         max_det: int | None = None) -> None:
        with self._one_line_names():
            super().plot_predictions(batch, preds, ni, max_det)

    def eval_json(self, stats: dict[str, Any]) -> dict[str, Any]:
        """Return `stats` unchanged: get_stats already scored `jdict`, the very list the base class saves as JSON."""
        return stats

    def print_results(self) -> None:
        """Print Ultralytics' P/R/mAP table, then the COCO columns (per class with `per_class=True`)."""
        row = "%22s" + "%11i" * 2 + "%11.3g" * 4
        LOGGER.info(row % ("all", self.seen, self.metrics.nt_per_class.sum(), *self.metrics.box.mean_results()))
        if self.metrics.nt_per_class.sum() == 0:
            LOGGER.warning(f"no labels found in {self.args.task} set, cannot compute metrics without labels")
        if self.args.verbose and not self.training and self.nc > 1:
            for i, c in enumerate(self.metrics.ap_class_index):
                counts = self.metrics.nt_per_image[c], self.metrics.nt_per_class[c]
                LOGGER.info(row % (printable(self.names[c]), *counts, *self.metrics.class_result(i)))
        LOGGER.info(("%22s" + "%11s" * len(METRICS)) % (f"COCO ({self.coco_backend})", *METRICS))
        LOGGER.info(text_row("all", self.metrics.coco.values()))
        for name, values in self.metrics.coco_per_class.items():
            LOGGER.info(text_row(name, values.values()))
