"""The paper's experiment YAMLs train as MMDetection does: SGD without Nesterov, weight decay on
every parameter, linear warmup from 0.001 x lr, no EMA, fp32, best.pt = the last epoch; `epochs=` scales `lr_steps`.
The YOLO experiments keep Ultralytics' own optimisation."""

import pytest
import torch
from ultralytics.cfg import get_cfg
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import ModelEMA

from umop_yolo.cfg import CFG_DIR, mode_args
from umop_yolo.engine.build import build_model
from umop_yolo.engine.schedule import count_iterations, linear_warmup, step_lr_lambda
from umop_yolo.engine.trainer import UmopTrainer
from umop_yolo.errors import UserInputError

PAPER = sorted(p.name for p in CFG_DIR.glob("*.yaml") if p.stem.startswith(("retinanet", "atss")))
YOLO = sorted(p.name for p in CFG_DIR.glob("yolov8n_*.yaml"))
MMDET_LR, MMDET_DECAY, MMDET_BATCH = 0.01, 1e-4, 16  # per 16 images


def tiny_dense(detector: str):
    """The paper's detector at toy width (random init): the same kinds of parameters (BN, GN, Scale, biases)."""
    head = {"feat_channels": 32, "stacked_convs": 1, **({"gn_groups": 8} if detector == "atss" else {})}
    return build_model({"detector": detector, "nc": 3, "backbone": {"depth": 18, "pretrained": None},
                        "neck": {"out_channels": 32}, "head": head}, verbose=False)


def trainer_for(experiment: str, **overrides) -> UmopTrainer:
    """A trainer holding only the settings of `umop train cfg=<experiment>` (nothing built, nothing written)."""
    args = mode_args("train", {"cfg": experiment, **overrides})
    trainer = object.__new__(UmopTrainer)
    trainer.args = get_cfg(overrides={k: v for k, v in args.items() if k not in {"project"}})
    trainer.epochs = trainer.args.epochs
    return trainer


def optimizer_of(trainer: UmopTrainer, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer as BaseTrainer builds it at batch 16 (weight decay scaled by batch x accumulate / nbs)."""
    a = trainer.args
    accumulate = max(round(a.nbs / MMDET_BATCH), 1)
    return trainer.build_optimizer(model, name=a.optimizer, lr=a.lr0, momentum=a.momentum,
                                   decay=a.weight_decay * MMDET_BATCH * accumulate / a.nbs)


@pytest.mark.parametrize("experiment", PAPER)
def test_paper_yaml_resolves_to_mmdetection_sgd_on_every_parameter(experiment):
    trainer = trainer_for(experiment)
    model = tiny_dense(experiment.split("_")[0])
    optimizer = optimizer_of(trainer, model)
    assert type(optimizer) is torch.optim.SGD
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(p) for p in model.parameters()}  # norm weights, biases, Scales included
    assert all(not g["params"] for g in optimizer.param_groups if g["weight_decay"] == 0)
    for group in optimizer.param_groups:
        assert group["momentum"] == 0.9 and group["nesterov"] is False and group["dampening"] == 0
        # Ultralytics' loss is the batch mean x batch size: lr0 x (16 x gradient) and lr0 x decay are MMDetection's
        assert group["lr"] * MMDET_BATCH == pytest.approx(MMDET_LR)
        if group["params"]:
            assert group["lr"] * group["weight_decay"] == pytest.approx(MMDET_LR * MMDET_DECAY)


@pytest.mark.parametrize("experiment", PAPER)
def test_paper_yaml_warms_up_linearly_from_a_thousandth_of_lr_over_500_iterations(experiment):
    trainer = trainer_for(experiment)
    trainer.optimizer = optimizer_of(trainer, tiny_dense(experiment.split("_")[0]))
    trainer.lf = step_lr_lambda(trainer.args.lr_steps)
    torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, trainer.lf)  # sets initial_lr, as the trainer's scheduler
    trainer.train_loader, trainer.epoch = range(7330), 0  # COCO train2017 at batch 16
    assert trainer._get_warmup_iterations(7330) == 0  # Ultralytics' warmup is off: ours sets every group
    assert trainer.warmup_iterations(7330) == 500
    count_iterations(trainer)
    lrs = []
    for _ in range(502):
        linear_warmup(trainer)
        lrs.append([g["lr"] for g in trainer.optimizer.param_groups])  # every group, biases too
    lr0, groups = trainer.args.lr0, len(trainer.optimizer.param_groups)
    assert lrs[0] == pytest.approx([0.001 * lr0] * groups)
    assert lrs[250] == pytest.approx([(0.001 + 0.999 / 2) * lr0] * groups)
    assert lrs[500] == lrs[501] == pytest.approx([lr0] * groups)


@pytest.mark.parametrize("experiment", PAPER)
def test_paper_yaml_validates_and_keeps_the_last_weights_as_trained_in_fp32(experiment):
    args = trainer_for(experiment).args
    assert (args.ema, args.save_best, args.amp) == (False, False, False)
    assert (args.conf, args.max_det, args.nms_pre) == (0.05, 100, 1000)  # MMDetection's test_cfg


@pytest.mark.parametrize("experiment", YOLO)
def test_yolo_experiments_keep_ultralytics_optimisation(experiment):
    trainer = trainer_for(experiment, optimizer="SGD")  # their optimizer=auto picks AdamW or MuSGD by run length
    assert (trainer.args.warmup_ratio, trainer.args.ema, trainer.args.save_best) == (0.0, True, True)
    assert trainer._get_warmup_iterations(100) == round(min(trainer.args.warmup_epochs, trainer.epochs - 1) * 100)
    optimizer = optimizer_of(trainer, build_model("yolov8n.yaml", nc=3, verbose=False))
    groups = {g["param_group"]: g for g in optimizer.param_groups}
    assert groups["bn"]["params"] and groups["bias"]["params"]  # no decay on norm weights and biases
    assert groups["bn"]["weight_decay"] == groups["bias"]["weight_decay"] == 0 < groups["weight"]["weight_decay"]
    assert all(g["nesterov"] for g in optimizer.param_groups)


@pytest.mark.parametrize("ema", [True, False])
def test_ema_false_makes_every_ema_the_weights_as_trained(ema):
    trainer = trainer_for("atss_umop.yaml", ema=ema)
    model = tiny_dense("atss")
    trainer.ema = ModelEMA(model)  # as setup, resume and NaN recovery assign it
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    trainer.ema.update(model)
    same = all(torch.equal(a, b) for a, b in zip(trainer.ema.ema.parameters(), model.parameters()))
    assert same is not ema


@pytest.mark.parametrize("save_best, best", [(True, 0.5), (False, 0.3)])
def test_save_best_false_makes_the_last_epoch_the_best(save_best, best, monkeypatch):
    def validate(self):  # Ultralytics' bookkeeping of the best fitness
        fitness = next(fitnesses)
        self.best_fitness = fitness if self.best_fitness is None else max(self.best_fitness, fitness)
        return {}, fitness

    fitnesses = iter([0.5, 0.3])
    monkeypatch.setattr(DetectionTrainer, "validate", validate)
    trainer = trainer_for("atss_umop.yaml", save_best=save_best)
    trainer.best_fitness, trainer.tloss = None, None
    for _ in range(2):
        _, trainer.fitness = trainer.validate()
    assert trainer.best_fitness == best  # save_model writes best.pt when best_fitness == fitness


def test_epochs_override_scales_lr_steps_and_says_so(monkeypatch):
    said = []
    monkeypatch.setattr(LOGGER, "warning", said.append)
    assert mode_args("train", {"cfg": "atss_umop.yaml", "epochs": 24})["lr_steps"] == [16, 22]  # 1x -> 2x
    assert mode_args("train", {"cfg": "atss_umop_r101_dcn_ms.yaml", "epochs": 18})["lr_steps"] == [12, 16]
    assert said == ["epochs=24: lr_steps=[8, 11] of atss_umop.yaml (for 12 epochs) scaled to lr_steps=[16, 22], the "
                    "same fractions of training (give lr_steps= to choose)",
                    "epochs=18: lr_steps=[16, 22] of atss_umop_r101_dcn_ms.yaml (for 24 epochs) scaled to "
                    "lr_steps=[12, 16], the same fractions of training (give lr_steps= to choose)"]
    said.clear()
    assert mode_args("train", {"cfg": "atss_umop.yaml", "epochs": 24, "lr_steps": [20]})["lr_steps"] == [20]
    assert mode_args("train", {"cfg": "atss_umop.yaml", "epochs": 12})["lr_steps"] == [8, 11]
    assert "lr_steps" not in mode_args("train", {"cfg": "yolov8n_umop.yaml", "epochs": 3})
    assert said == []
    with pytest.raises(UserInputError) as error:
        mode_args("train", {"cfg": "atss_umop.yaml", "epochs": 2})
    assert str(error.value) == ("epochs=2: lr_steps=[8, 11] of atss_umop.yaml (for 12 epochs) scale to [1, 1], no step "
                                "schedule for 2 epochs: give lr_steps= too (lr_steps=[]: Ultralytics' lrf decay)")
