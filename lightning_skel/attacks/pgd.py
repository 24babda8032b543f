"""I-FGSM and PGD under an L-infinity bound in metres (docs/METHOD.md section 4).

Kurakin et al. 2017 (I-FGSM) and Madry et al. 2018 (PGD): signed-gradient steps on the cross-entropy,
projected back into ``|x' - x|_inf <= eps``; PGD starts from a uniform random point in the ball. No [0, 1]
clamp: skeletons are not images. ``x (N, C, T, V, M)`` in metres.

``loss="kl"`` ascends ``KL(f(x) || f(x'))`` instead, the clean prediction ``f(x)`` taken once in eval mode:
TRADES' inner maximisation (Zhang et al. 2019), which needs no label. Both serve as the inner step of the
reference defenses (``ClassificationSystem(robust_training=...)``), with ``seed=None`` so that every
training batch draws a fresh random start from torch's generator.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult, is_success
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params

LOSSES = ("ce", "kl")


@ATTACKS.register("pgd")
class PGDAttack(Attack):
    """PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018) under
    an L-infinity bound in metres, docs/METHOD.md section 4: signed-gradient steps on the cross-entropy
    (or, ``loss="kl"``, on TRADES' ``KL(f(x) || f(x'))``), each projected back into ``|x' - x|_inf <= eps``,
    from a uniform random point of the ball. The result is the last iterate.

    Arguments:
        model: the classifier (``nn.Module``, ``(N, C, T, V, M)`` to logits ``(N, K)``).
        layout: the skeleton layout (name or ``Layout``).
        targeted: descend the target's cross-entropy instead of ascending the label's. Default False.
        eps: the radius of the L-infinity ball (metres, ``> 0``). Default 0.02.
        alpha: the step per iteration (metres, ``> 0``; None: ``eps / 10``). Default None.
        steps: iterations (``>= 1``). Default 20.
        random_start: start from a uniform random point of the ball (None: the class's own default, true
            for PGD, false for I-FGSM). Default None.
        early_stop: a clip leaves the loop once the logits of a step show it fooled (that step's update is
            still applied). Default False.
        seed: the seed of the random start's CPU generator (None: torch's global generator, a fresh start
            per call). Default 0.
        loss: ``"ce"`` (cross-entropy) or ``"kl"`` (TRADES' inner maximisation, untargeted only, Zhang et
            al. 2019). Default "ce".

    Shapes: ``x (N, C, T, V, M)`` in metres, ``y``, ``lengths``, ``target`` ``(N,)``.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = PGDAttack(model, "ntu25", eps=0.02, steps=5)(x, y)
    >>> bool((res.x_adv - x).abs().max() <= 0.02 + 1e-6)
    True
    """

    name = "pgd"
    random_start_default = True

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        eps: float = 0.02,
        alpha: float | None = None,
        steps: int = 20,
        random_start: bool | None = None,
        early_stop: bool = False,
        seed: int | None = 0,
        loss: str = "ce",
    ) -> None:
        super().__init__(model, layout, targeted)
        check_params(self.name, {
            "eps": (eps, eps > 0, "> 0 (metres)"),
            "alpha": (alpha, alpha is None or alpha > 0, "> 0 or null (eps / 10)"),
            "steps": (steps, steps >= 1, ">= 1"),
            "loss": (loss, loss in LOSSES and not (loss == "kl" and targeted),
                     f"one of {LOSSES} ('kl' untargeted only)"),
            "random_start": (random_start, random_start is None or isinstance(random_start, bool),
                             "true, false or null"),
            "early_stop": (early_stop, isinstance(early_stop, bool), "true or false"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.eps = float(eps)
        self.alpha = float(alpha) if alpha is not None else self.eps / 10
        self.steps = int(steps)
        self.random_start = self.random_start_default if random_start is None else random_start
        self.early_stop = early_stop
        self.seed, self.loss = seed, loss

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        n = x.shape[0]
        maskf = self.mask(x, lengths).to(x.dtype)
        delta = torch.zeros_like(x)
        if self.random_start:
            gen = None if self.seed is None else torch.Generator(device="cpu").manual_seed(self.seed)
            delta = (2 * torch.rand(x.shape, generator=gen) - 1).to(x) * self.eps * maskf
        grad_evals = torch.zeros(n, dtype=torch.long, device=x.device)
        active = torch.arange(n, device=x.device)
        sign = -1.0 if target is not None else 1.0  # targeted: descend the target's cross-entropy
        label = y if target is None else target
        if self.loss == "kl":
            with torch.no_grad():
                clean = self.classify(x).log_softmax(1)
        for _ in range(self.steps):
            if active.numel() == 0:
                break
            d = delta[active].requires_grad_(True)
            logits = self.classify(x[active] + d, active)
            if self.loss == "kl":
                loss = nn.functional.kl_div(
                    logits.log_softmax(1), clean[active], reduction="none", log_target=True
                ).sum(1)
            else:
                loss = nn.functional.cross_entropy(logits, label[active], reduction="none")
            g = self.input_grad(loss, d)
            grad_evals[active] += 1
            step = sign * self.alpha * g.sign() * maskf[active]
            delta[active] = (d.detach() + step).clamp(-self.eps, self.eps)
            if self.early_stop:
                with torch.no_grad():
                    # the logits were of the previous iterate; a sample that was already fooled stops
                    done = is_success(logits.argmax(1), y[active], None if target is None else target[active])
                active = active[~done]
                self.clips_done(int(done.sum()))
        return self.result(x + delta, y, target, grad_evals)


@ATTACKS.register("ifgsm")
class IFGSMAttack(PGDAttack):
    """I-FGSM (Kurakin et al., "Adversarial Examples in the Physical World", ICLR 2017 workshop): PGD
    (:class:`PGDAttack`) without the random start, in the L-infinity ball of ``eps`` metres.

    Arguments:
        model: the classifier (``nn.Module``, ``(N, C, T, V, M)`` to logits ``(N, K)``).
        layout: the skeleton layout (name or ``Layout``).
        targeted: descend the target's cross-entropy instead of ascending the label's. Default False.
        eps: the radius of the L-infinity ball (metres, ``> 0``). Default 0.02.
        alpha: the step per iteration (metres, ``> 0``; None: ``eps / 10``). Default None.
        steps: iterations (``>= 1``). Default 20.
        random_start: start from a uniform random point of the ball (None: false). Default None.
        early_stop: a clip leaves the loop once the logits of a step show it fooled. Default False.
        seed: the seed of a random start's CPU generator (None: torch's global generator). Default 0.
        loss: ``"ce"`` or ``"kl"`` (untargeted only), as PGD's. Default "ce".

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = IFGSMAttack(model, "ntu25", eps=0.02, steps=5)(x, y)
    >>> int(res.grad_evals.max())
    5
    """

    name = "ifgsm"
    random_start_default = False
