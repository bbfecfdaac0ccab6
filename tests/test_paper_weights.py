"""ImageNet backbone weights: a training whose weights are missing, unreadable or for another
architecture stops in one line before any run directory exists; `backbone_weights=` takes a torchvision or mmcv .pth;
a built model keeps no path of the file, and a model rebuilt from a checkpoint never reads ImageNet weights again."""

import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision

from conftest import tiny_train_args
from umop_yolo.cli import main
from umop_yolo.engine.build import build_model, check_weights_args
from umop_yolo.engine.trainer import UmopTrainer
from umop_yolo.errors import InputNotFoundError, UserInputError
from umop_yolo.nn import ResNet
from umop_yolo.nn.resnet import check_pretrained

TORCHVISION_FILES = [(18, 1, 64, "resnet18-f37072fd.pth"), (50, 1, 64, "resnet50-0676ba61.pth"),
                     (101, 1, 64, "resnet101-63fe2227.pth"), (101, 64, 4, "resnext101_64x4d-173b62eb.pth")]


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache: torch.hub.get_dir() points here ($TORCH_HOME/hub)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory) -> Path:
    """A torchvision ResNet-18 state dict (random weights, torchvision's names) as a .pth file."""
    path = tmp_path_factory.mktemp("weights") / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def error_line(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("umop: error: ") and "\n" not in err
    return err


@pytest.mark.parametrize("depth, groups, base_width, file", TORCHVISION_FILES)
def test_missing_imagenet_file_names_the_torchvision_file_where_it_goes_and_the_alternatives(depth, groups,
                                                                                           base_width, file, hub):
    with pytest.raises(UserInputError) as error:
        check_pretrained({"depth": depth, "groups": groups, "base_width": base_width, "pretrained": "imagenet"})
    message = str(error.value)
    assert f"torchvision's {file} " in message and f"in {hub / 'checkpoints'} " in message
    assert "backbone_weights=/path/to/" in message and "backbone_weights=false" in message and "\n" not in message
    check_pretrained({"depth": depth, "groups": groups, "base_width": base_width, "pretrained": None})  # explicit


def test_training_without_the_imagenet_file_stops_before_a_run_directory_exists(hub, tiny_shapes, tmp_path, capsys):
    args = tiny_train_args(tiny_shapes, tmp_path / "runs", model="atss_r18_fpn.yaml")  # pretrained: imagenet
    assert "resnet18-f37072fd.pth" in error_line(["train", *args], capsys)
    assert not (tmp_path / "runs").exists()
    existing = tmp_path / "runs" / "run"  # an earlier run of the same name stays as it is
    existing.mkdir(parents=True)
    (existing / "results.csv").write_text("epoch\n1\n")
    error_line(["train", *args, "exist_ok=true"], capsys)
    assert [p.name for p in existing.iterdir()] == ["results.csv"]
    assert (existing / "results.csv").read_text() == "epoch\n1\n"


def test_ultralytics_pretrained_with_a_pth_names_backbone_weights(tiny_shapes, tmp_path, r18_file, capsys):
    args = tiny_train_args(tiny_shapes, tmp_path / "runs", model="atss_r18_fpn.yaml", pretrained=r18_file)
    assert f"use backbone_weights={r18_file}" in error_line(["train", *args], capsys)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("model, weights, message", [
    ("atss_r18_fpn.yaml", "missing.pth", "backbone weights 'missing.pth' not found"),
    ("atss_r18_fpn.yaml", "IMAGENET1K_V9", "neither a file nor a ResNet18_Weights name (IMAGENET1K_V1 or imagenet)"),
    ("yolov8n.yaml", "r18.pth", "backbone_weights=r18.pth applies to the ResNet backbone of a RetinaNet/ATSS model "
                                "YAML; model="),
    ("atss_yolov8n.yaml", "r18.pth", "atss_yolov8n.yaml has no ResNet backbone"),
])
def test_bad_backbone_weights_stop_in_one_line(model, weights, message, tiny_shapes, tmp_path, capsys):
    args = tiny_train_args(tiny_shapes, tmp_path / "runs", model=model, backbone_weights=weights)
    assert message in error_line(["train", *args], capsys)
    assert not (tmp_path / "runs").exists()


def test_weights_for_another_architecture_are_one_line_naming_both(r18_file, tmp_path):
    with pytest.raises(UserInputError) as error:
        check_pretrained({"depth": 50, "pretrained": str(r18_file)})
    assert str(error.value) == (f"resnet18 weights in {r18_file} do not fit resnet50: 23 tensors differ in shape "
                                "(first: layer1.0.conv1.weight 64x64x3x3, needs 64x64x1x1), 165 missing (first: "
                                "layer1.0.conv3.weight)")
    unreadable = tmp_path / "notes.pth"
    unreadable.write_text("not weights")
    with pytest.raises(UserInputError, match=r"^backbone weights '.*notes.pth' are not a readable state dict"):
        check_pretrained({"depth": 18, "pretrained": str(unreadable)})
    with pytest.raises(InputNotFoundError, match="not found"):
        ResNet(depth=18, pretrained=str(tmp_path / "gone.pth"))


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: {"state_dict": {f"backbone.{k}": v for k, v in s.items()}},
                                  lambda s: {"model": {f"module.{k}": v for k, v in s.items()}, "epoch": 3}],
                         ids=["torchvision", "mmdetection", "ddp"])
def test_torchvision_and_mmcv_style_files_load(wrap, tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    state = {k: v for k, v in reference.state_dict().items() if "num_batches_tracked" not in k}  # as older files
    torch.save(wrap(state), tmp_path / "w.pth")
    check_pretrained({"depth": 18, "pretrained": str(tmp_path / "w.pth")})
    net = ResNet(depth=18, pretrained=str(tmp_path / "w.pth"))
    torch.testing.assert_close(net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.testing.assert_close(net.bn1.running_var, reference.bn1.running_var)  # frozen stem: a buffer


def test_backbone_weights_on_the_command_line_replace_the_yaml_and_leave_no_path_in_the_model(r18_file, hub):
    check_weights_args("atss_r18_fpn.yaml", str(r18_file), True)  # the YAML's imagenet is not needed then
    check_weights_args("atss_r18_fpn.yaml", False, True)  # from scratch, explicitly
    model = build_model("atss_r18_fpn.yaml", nc=2, verbose=False, backbone_weights=str(r18_file))
    reference = torch.load(r18_file, weights_only=True)
    torch.testing.assert_close(model.model[0].layer3[0].conv1.weight, reference["layer3.0.conv1.weight"])
    assert model.yaml["backbone"]["pretrained"] is None and model.model[0].weights_file == "r18.pth"
    assert str(r18_file.parent).encode() not in pickle.dumps(model)  # what a checkpoint pickles


def test_a_model_from_a_checkpoint_never_reads_imagenet_weights(r18_file, hub, tmp_path):
    """Fine-tuning from best.pt on another machine: the file it was trained from is gone, and older checkpoints
    still name it in their model YAML."""
    trained = build_model("atss_r18_fpn.yaml", nc=2, verbose=False, backbone_weights=str(r18_file))
    rebuilt = build_model(trained.yaml, nc=2, verbose=False)  # Ultralytics rebuilds a checkpoint's model so
    assert rebuilt.model[0].weights_file is None
    old_yaml = {**trained.yaml, "backbone": {**trained.yaml["backbone"], "pretrained": str(tmp_path / "gone.pth")}}
    trainer = object.__new__(UmopTrainer)  # only what get_model reads
    trainer.args = SimpleNamespace(backbone_weights=str(tmp_path / "gone.pth"), cls_remap=True)
    trainer.data = {"nc": 2, "channels": 3, "names": {0: "a", 1: "b"}}
    model = trainer.get_model(cfg=old_yaml, weights=trained, verbose=False)
    torch.testing.assert_close(model.model[0].layer2[0].conv1.weight, trained.model[0].layer2[0].conv1.weight)
    with pytest.raises(UserInputError, match="best.pt is a checkpoint with its own weights"):
        check_weights_args(tmp_path / "best.pt", str(r18_file), True)
    check_weights_args("atss_r18_fpn.yaml", None, str(tmp_path / "best.pt"))  # its weights replace ImageNet's


def test_checkpoint_train_args_name_the_weights_file_without_its_folder(r18_file, tmp_path):
    from umop_yolo.engine.run.saving import weights_file_names_only

    args = SimpleNamespace(backbone_weights=str(r18_file), data="/some/data.yaml")
    with weights_file_names_only(args):
        saved = pickle.dumps(vars(args))  # what Ultralytics' save_model writes as train_args
    assert str(r18_file.parent).encode() not in saved and b"r18.pth" in saved
    assert args.backbone_weights == str(r18_file)  # the training itself keeps the path
    trainer_source = Path(UmopTrainer.save_model.__code__.co_filename).read_text()
    assert "weights_file_names_only(self.args)" in trainer_source
