"""PFL's single-label path, for targets with at most one class above 0 per anchor (TaskAlignedAssigner, MaxIoU and
ATSS targets): each anchor's one candidate positive (`top_class`), and the loss of every entry with its gradient in
closed form, in one pass (`SingleLabelFocal`). Same values as `forms.focal_loss` through autograd."""

from __future__ import annotations

import torch
from torch import Tensor

from umop_yolo.pfl.forms import entry_loss_and_grad, negative_weight

BLOCK = 1 << 16  # entries per block of `SingleLabelFocal` on the CPU: its temporaries (~1 MiB) fit in L2


def top_class(targets: Tensor) -> tuple[Tensor, Tensor]:
    """Each anchor's largest target (fp32) and its class, (..., A, 1) each, for targets with at most one class above 0
    per anchor; anchors without one get class 0. Up to 128 classes the class is the fp32 dot product with
    (0, 1, ..., C - 1) over the row's sum: one term is nonzero, so rounding recovers c even from a bf16 or TF32 matmul
    (error <= c 2^-8 < 0.5), in two vectorised passes where max's arg-reduction is a scalar loop (half the CPU time)."""
    t = targets.detach().float()
    if t.shape[-1] > 128:
        return t.max(-1, keepdim=True)
    top = t.sum(-1, keepdim=True)
    dot = t @ torch.arange(t.shape[-1], dtype=t.dtype, device=t.device)
    return top, dot.unsqueeze(-1).div_(top).nan_to_num_(0.0).round_().long()


def _negatives(x: Tensor, gamma: Tensor, log_w: Tensor, loss: Tensor, grad: Tensor) -> None:
    """Every entry of `x` scored as a negative (t = 0), written into `loss` and `grad`: loss w p^gamma softplus(x),
    gradient w p^gamma (p + gamma softplus(x) (1 - p)), w = exp(log_w); two sigmoids, one log and two exp (vectorised;
    no log1p or fractional pow), finite for any x. 1 - p is sigmoid(-x): formed from p, it loses its digits as p nears
    1, where softplus(x) is large (x ~ 14.7, gamma = 2.5: gradient within 1.6e-5 of float64's, 3.8e-6 with it)."""
    log_p = x.abs().sigmoid_().log_()  # log sigmoid(|x|), in [-log 2, 0]
    softplus = x.clamp_min(0).sub_(log_p)  # -log(1 - p)
    p = torch.exp(torch.sub(x, softplus, out=log_p), out=grad)
    weight = log_p.mul_(gamma).add_(log_w).exp_()  # w p^gamma
    torch.mul(weight, softplus, out=loss)
    softplus.mul_(x.neg().sigmoid_())  # softplus (1 - p)
    p.addcmul_(softplus, gamma).mul_(weight)


class SingleLabelFocal(torch.autograd.Function):
    """`focal_loss` x `scale` for targets with at most one positive class per anchor, at `index` (logit `x_i`, target
    `t_i`), its gradient formed in the forward pass; gamma, alpha, scale: (A, 1) per anchor.

    Every entry is first scored as a negative (`_negatives`), on the CPU in blocks of anchors whose temporaries stay in
    the cache (one pass over memory instead of one per operation). The one entry per anchor that may be positive is
    then overwritten with the general form (`entry_loss_and_grad`). Backward is one multiply.
    """

    @staticmethod
    def forward(ctx, x: Tensor, x_i: Tensor, t_i: Tensor, index: Tensor, gamma: Tensor, alpha: Tensor, scale: Tensor,
                form: str) -> Tensor:
        log_w = (negative_weight(alpha, form) * scale).log()
        loss_i, grad_i = entry_loss_and_grad(x_i, t_i, gamma, alpha, form)
        loss_i, grad_i = loss_i.mul_(scale), grad_i.mul_(scale)
        loss, grad = torch.empty_like(x), torch.empty_like(x)
        n = x.shape[-2]
        step = n if x.device.type != "cpu" else max(1, BLOCK * n // max(x.numel(), 1))
        for x_b, loss_b, grad_b, index_b, loss_ib, grad_ib, gamma_b, log_w_b in zip(
                *(v.split(step, -2) for v in (x, loss, grad, index, loss_i, grad_i, gamma, log_w))):
            _negatives(x_b, gamma_b, log_w_b, loss_b, grad_b)
            loss_b.scatter_(-1, index_b, loss_ib)  # while the block is in the cache
            grad_b.scatter_(-1, index_b, grad_ib)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None, None, None, None, None, None, None
