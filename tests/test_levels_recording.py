"""The per-level recording of the stock YOLO loss (umop=false) is cheap and records what it always recorded: positives
(anchors with a target above 0 in some class) and loss shares per level, bit for bit as the dense `(t > 0).any(-1)`
over the targets gave them, including where TAL's fg_mask holds an anchor whose target score is 0."""

from types import SimpleNamespace

import torch
from torch.overrides import TorchFunctionMode
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.tal import TaskAlignedAssigner, make_anchors

from umop_yolo.engine.loss import LevelSplitDetectionLoss, LevelwiseBCE
from umop_yolo.engine.model import UmopDetectionModel


def old_recording(loss: torch.Tensor, targets: torch.Tensor, sizes: list[int]) -> dict[str, torch.Tensor]:
    """What `LevelwiseBCE` recorded before: a dense `(t > 0).any(-1)` per level."""
    normalizer = targets.float().sum().clamp_min(1.0)
    parts = zip(loss.split(sizes, 1), targets.split(sizes, 1))
    level_loss, num_pos = zip(*[(x.float().sum(), (t > 0).any(-1).sum()) for x, t in parts])
    return {"num_pos": torch.stack(num_pos).float(), "loss": torch.stack(level_loss) / normalizer}


def recorded(logits: torch.Tensor, targets: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, dict]:
    bce = LevelwiseBCE()
    bce.level_sizes = sizes
    return bce(logits, targets), bce.last_stats


def assert_same_as_before(logits: torch.Tensor, targets: torch.Tensor, sizes: list[int]) -> None:
    loss, stats = recorded(logits, targets, sizes)
    want = old_recording(loss, targets, sizes)
    assert torch.equal(stats["num_pos"], want["num_pos"]) and torch.equal(stats["loss"], want["loss"])
    assert stats["num_samples"].tolist() == [n * len(logits) for n in sizes]


def test_training_step_records_what_the_dense_count_recorded():
    """A real forward pass and TAL assignment of YOLOv8n, 80 classes: the recording equals the old one exactly."""
    torch.manual_seed(0)
    model = UmopDetectionModel("yolov8n.yaml", nc=80, verbose=False)
    model.args = SimpleNamespace(**{**DEFAULT_CFG_DICT, "umop": False})
    criterion = model.criterion = model.init_criterion()
    assert type(criterion) is LevelSplitDetectionLoss
    seen = {}

    class Seeing(LevelwiseBCE):
        def __call__(self, logits, targets):
            seen.update(x=logits.detach(), t=targets)
            return super().__call__(logits, targets)

    criterion.bce = Seeing()
    g = torch.Generator().manual_seed(0)
    sizes = torch.rand(12, 2, generator=g) * 0.6 + 0.03
    batch = {"img": torch.rand(3, 3, 128, 128, generator=g), "batch_idx": torch.arange(3.0).repeat_interleave(4),
             "cls": torch.randint(0, 80, (12, 1), generator=g).float(),
             "bboxes": torch.cat([sizes / 2 + torch.rand(12, 2, generator=g) * (1 - sizes), sizes], 1)}
    model.loss(batch)
    assert criterion.last_stats["num_pos"].sum() > 0
    assert_same_as_before(seen["x"], seen["t"], criterion.bce.level_sizes)


def test_a_tal_positive_with_target_zero_is_not_counted():
    """TAL's top-k can pick an anchor inside a box whose predicted box misses it (CIoU clamped to 0): it is in fg_mask
    but its target score is 0, so the loss trains it as a negative; the recording does not count it (fg_mask would)."""
    assigner = TaskAlignedAssigner(topk=10, num_classes=2, alpha=0.5, beta=6.0)
    anchors, _ = make_anchors([torch.zeros(1, 1, 8, 8)], torch.tensor([8.0]), 0.5)
    gt = torch.tensor([[[8.0, 8.0, 40.0, 40.0]]])  # 16 anchor centres inside
    boxes = torch.tensor([50.0, 50.0, 60.0, 60.0]).repeat(1, 64, 1)  # every predicted box misses the gt ...
    boxes[0, [9, 18, 27]] = gt[0, 0]  # ... but three
    scores = torch.rand(1, 64, 2, generator=torch.Generator().manual_seed(0))
    *_, targets, fg_mask, _ = assigner(scores, boxes, anchors * 8, torch.zeros(1, 1, 1), gt, torch.ones(1, 1, 1))
    assert fg_mask.sum() > (targets > 0).any(-1).sum() == 3  # fg_mask holds zero-target anchors
    logits = torch.randn(1, 64, 2)
    assert_same_as_before(logits, targets, [48, 16])
    _, stats = recorded(logits, targets, [48, 16])
    assert stats["num_pos"].sum() == 3


def test_recording_makes_no_per_class_temporary():
    """The recording reads the (B, A, C) targets into one value per anchor: besides the BCE itself, no new tensor has
    more than B x A entries (the old `t > 0` built a (B, A_l, C) mask per level)."""

    class LargeStorages(TorchFunctionMode):
        def __init__(self, limit: int, known: set[int]) -> None:
            super().__init__()
            self.limit, self.known, self.ops = limit, known, []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.numel() > self.limit:
                ptr = out.untyped_storage().data_ptr()
                if ptr not in self.known:
                    self.known.add(ptr)
                    self.ops.append(getattr(func, "__name__", str(func)))
            return out

    targets = torch.zeros(2, 336, 80)
    targets[0, 5, 3] = 0.7
    logits = torch.randn(2, 336, 80)
    bce = LevelwiseBCE()
    bce.level_sizes = [256, 64, 16]
    inputs = {targets.untyped_storage().data_ptr(), logits.untyped_storage().data_ptr()}
    with LargeStorages(2 * 336, inputs) as mode:
        bce(logits, targets)
    assert mode.ops == ["binary_cross_entropy_with_logits"]
