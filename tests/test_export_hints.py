"""After an export the log suggests the `umop` commands that run the exported file, and they run; `umop val` of a
model that records no dataset stops in one line (Ultralytics would download coco8)."""

import shlex

import pytest
import torch

from umop_yolo.cli import main
from umop_yolo.engine.build import build_model
from umop_yolo.engine.log_rewrite import umop_commands

EXPORT_HINTS = ("\nPredict:         yolo predict task=detect model=/r/best.onnx imgsz=320 "
                "\nValidate:        yolo val task=detect model=/r/best.onnx imgsz=320 data=shapes.yaml ")


def test_ultralytics_export_hints_become_umop_commands():
    assert umop_commands(EXPORT_HINTS) == (
        "\nPredict:         umop predict model=/r/best.onnx imgsz=320 "
        "\nValidate:        umop val model=/r/best.onnx imgsz=320 data=shapes.yaml ")
    assert umop_commands("yolo settings runs_dir=x") == "yolo settings runs_dir=x"  # other yolo commands stay


@pytest.mark.slow
def test_export_suggests_umop_commands_that_run(tiny_shapes, tmp_path, messages_logged, monkeypatch, capsys):
    weights = tmp_path / "best.pt"  # as training writes it: the model and its train args, data included
    torch.save({"model": build_model("yolov8n.yaml", nc=5, verbose=False), "train_args": {"data": str(tiny_shapes)}},
               weights)
    monkeypatch.chdir(tmp_path)
    assert main(["export", f"model={weights}", "format=torchscript", "imgsz=64"]) == 0
    text = "\n".join(messages_logged)
    assert "yolo predict" not in text and "yolo val" not in text
    hints = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in text.splitlines()
             if line.startswith(("Predict:", "Validate:"))}
    assert [words[:2] for words in hints.values()] == [["umop", "predict"], ["umop", "val"]]
    for words in hints.values():  # each hint runs as printed (predict: Ultralytics' two sample images)
        assert main([*words[1:], "device=cpu", f"project={tmp_path / 'runs'}"]) == 0, shlex.join(words)
    capsys.readouterr()
    exported = hints["Validate"][2].partition("=")[2]
    assert main(["val", f"model={exported}", "imgsz=64"]) == 2  # the same without data=
    assert capsys.readouterr().err.strip() == f"umop: error: model '{exported.rpartition('/')[2]}' records no " \
                                               "dataset: give data="
