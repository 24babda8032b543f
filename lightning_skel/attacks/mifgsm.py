"""MI-FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018) in an L-infinity ball in
metres (docs/METHOD.md section 4).

Signed steps along an accumulated gradient: ``g <- mu * g + grad / mean|grad|``, the mean over the clip's
valid entries, then ``delta <- clamp(delta + alpha * sign(g), -eps, eps)``. The momentum stabilises the
direction, which is what makes the examples transfer; against an ensemble surrogate the model is the fusion
of several classifiers' logits (``attack.py ckpt=[A,B,C]``, :class:`~lightning_skel.models.ScoreFusion`),
as the paper ensembles logits. ``x (N, C, T, V, M)`` in metres.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params


@ATTACKS.register("mifgsm")
class MIFGSMAttack(Attack):
    """MI-FGSM (Dong et al., CVPR 2018): momentum iterative FGSM on the cross-entropy in the L-infinity ball
    of radius ``eps`` metres, over the valid entries only, from ``delta = 0``.

    Arguments:
        model (nn.Module): the classifier of raw coordinates ``(N, C, T, V, M)``; a transfer attack gives
            the surrogate, e.g. a :class:`~lightning_skel.models.ScoreFusion` of several.
        layout (str or Layout): the skeleton layout of the clips.
        targeted (bool): descend the target's cross-entropy instead (default false).
        eps (float): the ball's radius in metres (default 0.02).
        steps (int): iterations, each one gradient evaluation (default 10, the paper's T).
        alpha (float or None): the step in metres (default None: ``eps / steps``, the paper's).
        decay (float): the momentum's decay factor mu (default 1.0, the paper's).

    Shape:
        ``x (N, C, T, V, M)`` in metres, ``y (N,)``, ``lengths (N,)``, ``target (N,)`` if targeted; the
        result's ``x_adv`` is the input's shape.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = MIFGSMAttack(model, "ntu25", eps=0.02, steps=5)(x, y)
    >>> int(res.grad_evals.max()), bool((res.x_adv - x).abs().max() <= 0.02 + 1e-6)
    (5, True)
    """

    name = "mifgsm"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        eps: float = 0.02,
        steps: int = 10,
        alpha: float | None = None,
        decay: float = 1.0,
    ) -> None:
        super().__init__(model, layout, targeted)
        check_params(self.name, {
            "eps": (eps, eps > 0, "> 0 (metres)"),
            "steps": (steps, isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1,
                      "an integer >= 1"),
            "alpha": (alpha, alpha is None or alpha > 0, "> 0 or null (eps / steps)"),
            "decay": (decay, decay >= 0, ">= 0"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.eps, self.steps, self.decay = float(eps), steps, float(decay)
        self.alpha = self.eps / steps if alpha is None else float(alpha)

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        n = x.shape[0]
        maskf = self.mask(x, lengths).to(x.dtype)
        # valid entries per clip: the mask is (N, 1, T, 1, M), every coordinate of every joint counts
        count = (maskf.flatten(1).sum(1) * x.shape[1] * x.shape[3]).clamp_min(1).view(-1, 1, 1, 1, 1)
        sign = -1.0 if target is not None else 1.0  # targeted: descend the target's cross-entropy
        label = y if target is None else target
        delta = torch.zeros_like(x)
        momentum = torch.zeros_like(x)
        for _ in range(self.steps):
            d = delta.requires_grad_(True)
            loss = nn.functional.cross_entropy(self.classify(x + d), label, reduction="none")
            g = self.input_grad(loss, d) * maskf
            with torch.no_grad():
                mean_abs = g.abs().sum((1, 2, 3, 4), keepdim=True) / count
                momentum = self.decay * momentum + g / mean_abs.clamp_min(1e-12)
                delta = (d.detach() + sign * self.alpha * momentum.sign()).clamp(-self.eps, self.eps)
        grad_evals = torch.full((n,), self.steps, dtype=torch.long, device=x.device)
        return self.result(x + delta, y, target, grad_evals)
