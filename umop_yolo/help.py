"""What `umop help`, `umop cfg`, `umop version` and `umop checks` print: the guide, the settings in force, versions
and hardware. Nothing here downloads or installs anything."""

from __future__ import annotations

import os
import platform
import textwrap
from importlib import metadata
from typing import Any

import yaml

from umop_yolo import __version__
from umop_yolo.cfg import CFG_DIR, DATA_DIR, DEFAULT_EXPERIMENT, MODELS_DIR, experiment_name, mode_args
from umop_yolo.settings import UMOP_DEFAULTS, UMOP_SETTINGS, check_umop_args

# mode -> (what it does, an example). The CLI runs exactly these modes.
MODES: dict[str, tuple[str, str]] = {
    "train": (f"train a detector (default cfg={DEFAULT_EXPERIMENT}: YOLOv8n + UMOP on the built-in shapes data)",
              "umop train cfg=atss_umop.yaml epochs=12 device=0,1,2,3"),
    "val": ("COCO AP of a checkpoint (data: default the data it was trained on)",
            "umop val model=runs/detect/train/weights/best.pt data=shapes.yaml"),
    "predict": ("detect objects in images, folders or videos", "umop predict model=best.pt source=images/"),
    "export": ("export a checkpoint (format=onnx needs pip install 'umop-yolo[export]')",
               "umop export model=best.pt format=onnx"),
    "analyze": ("positives per pyramid level of a model's assignment, no training",
                "umop analyze cfg=yolov8n_umop.yaml batches=20"),
    "plots": ("redraw the level plots of a finished run", "umop plots run=runs/detect/train"),
    "ablate": ("the paper's Table 1: variants x seeds, mean +- std",
               "umop ablate seeds=3 variants=baseline,pfl,pfl+lrp baseline:cls=0.5"),
    "convert": ("COCO JSON / VOC XML -> YOLO labels + data.yaml", "umop convert format=coco src=/data/coco"),
    "check": ("dry run over a dataset before a long job: files, JSON, image sizes, classes; one line per problem",
              "umop check data=coco.yaml"),
    "cfg": ("every key and value in force for `umop train` with these arguments", "umop cfg cfg=atss_umop.yaml"),
    "version": ("the version of umop_yolo", "umop version"),
    "checks": ("versions of the packages umop uses, CPU and GPUs", "umop checks"),
    "help": ("this guide (also: umop MODE help, --help)", "umop help"),
}
USAGE = f"usage: umop [detect] {{{','.join(MODES)}}} [cfg=EXPERIMENT.yaml] [key=value ...]"
PACKAGES = ("ultralytics", "torch", "torchvision", "pycocotools", "faster-coco-eval")  # required beside umop_yolo
OPTIONAL = ("onnx", "onnxruntime", "onnxslim", "tensorboard")  # [export], [logging]


def _value(value: Any) -> str:
    """A value as a YAML file or `key=value` writes it (true, null, [8, 11])."""
    try:
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()
    except yaml.YAMLError:  # a type YAML has no tag for (a tuple from `imgsz=(320, 320)`)
        return repr(value)


def _wrapped(text: str, indent: int, hanging: int | None = None) -> str:
    return textwrap.fill(text, 120, initial_indent=" " * indent, subsequent_indent=" " * (hanging or indent))


def guide() -> str:
    """The full help: usage, modes, examples, the YAMLs found by bare name and every UMOP key."""
    width = max(map(len, MODES))
    about = ("umop runs Ultralytics' `yolo` workflow with UMOP (progressive focal loss with level-wise resampling) "
             "and the RetinaNet / ATSS baselines. Arguments are key=value pairs, as for `yolo`; cfg= names an "
             "experiment YAML, and the command line overrides its keys.")
    lines = [USAGE, "", _wrapped(about, 0), "", "Modes:"]
    lines += [f"  {mode:<{width}}  {what}" for mode, (what, _) in MODES.items()]
    lines += ["", "Examples:", "  umop train                     # the default experiment, on the CPU"]
    lines += [f"  {example}" for mode, (_, example) in MODES.items() if mode not in {"help", "version"}]
    lines += ["", "Found by bare name:"]
    for key, folder in (("cfg", CFG_DIR), ("model", MODELS_DIR), ("data", DATA_DIR)):
        names = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        extra = " (and Ultralytics' own: yolov8n.yaml, yolo11n.yaml, ...)" if key == "model" else ""
        lines.append(_wrapped(f"{key}=: {names}{extra}", 2, 4))
    lines += ["", "UMOP keys (default: meaning). Every Ultralytics key works too; `umop cfg` lists all keys in force:"]
    for key, (default, text) in UMOP_SETTINGS.items():
        lines += [f"  {key}={_value(default)}", _wrapped(text, 6)]
    lines += ["", "Python: from umop_yolo import UmopYOLO; UmopYOLO('yolov8n.yaml').train(epochs=1). See README.md."]
    return "\n".join(lines)


def settings_in_force(overrides: dict[str, Any]) -> str:
    """Every key `umop train` would run with (Ultralytics' defaults and the UMOP keys, under `cfg=` and the
    overrides), one `key: value` line each, marked where it differs from the default."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    args = mode_args("train", overrides)
    check_umop_args(args)
    defaults = {**DEFAULT_CFG_DICT, **UMOP_DEFAULTS}
    experiment = experiment_name("train", overrides)
    given = [f"cfg={experiment}"] * bool(experiment) + [f"{k}={_value(v)}" for k, v in overrides.items() if k != "cfg"]
    lines = [f"# in force for: umop train {' '.join(given)}"]
    for key, value in {**defaults, **args}.items():
        note = f"  # default: {_value(defaults[key])}" if key in defaults and defaults[key] != value else ""
        lines.append(f"{key}: {_value(value)}{note}")
    return "\n".join(lines)


def _installed(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def checks() -> str:
    """Versions of Python, umop_yolo and the packages it uses; the CPU model and accelerators (read locally,
    offline)."""
    import torch
    from ultralytics.utils.cpu import CPUInfo  # the model name from /proc/cpuinfo, sysctl or the registry

    rows = [("python", platform.python_version()), ("umop_yolo", __version__)]
    rows += [(package, _installed(package)) for package in (*PACKAGES, *OPTIONAL)]
    rows.append(("os", platform.platform()))
    rows.append(("cpu", f"{CPUInfo.name()} ({platform.machine()}), {os.cpu_count()} cores, "
                        f"{torch.get_num_threads()} torch threads"))
    if torch.cuda.is_available():
        names = ", ".join(f"{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
        rows.append(("cuda", f"{torch.version.cuda or torch.version.hip}; {names}"))
    else:
        rows.append(("cuda", "not available (training runs on the CPU)"))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        rows.append(("mps", "available"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
