"""Auto-PGD (Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020) in an L-infinity or L2 ball in metres (docs/METHOD.md section 4).

APGD-CE ascends the cross-entropy, APGD-DLR the difference-of-logits ratio; targeted, APGD ascends
``-CE(f(x'), t)`` or the targeted DLR loss, and ``n_target_classes`` gives APGD-T, the untargeted attack
that runs the targeted DLR loss towards each of the clean clip's next most likely classes in turn. The step
size follows the paper's schedule: it starts at ``2 eps`` and, at the checkpoints ``w_j``, halves when the
loss rose in at most a fraction ``rho`` of the steps since the last checkpoint, or when neither the step
nor the best loss changed since then; each halving restarts the clip from its best point. The balls, their
projections and the gradient's normalisation are over the valid entries only (``Attack.mask``): padding
frames and absent persons are never perturbed. ``x (N, C, T, V, M)`` in metres.

The ball helpers (:func:`ball_norm`, :func:`ball_unit`, :func:`ball_project`, :func:`ball_start`) serve the
Square attack too.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params

log = logging.getLogger(__name__)

NORMS = ("linf", "l2")
LOSSES = ("ce", "dlr")


def _rows(v: Tensor, like: Tensor) -> Tensor:
    """A per-sample ``(N,)`` value shaped to broadcast over ``like (N, ...)``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def ball_norm(d: Tensor, norm: str) -> Tensor:
    """``(N,)``: the L-infinity or L2 norm of each sample of ``d (N, ...)``.

    Example:

    >>> d = torch.tensor([[3.0, -4.0], [1.0, 0.0]])
    >>> ball_norm(d, "linf").tolist(), ball_norm(d, "l2").tolist()
    ([4.0, 1.0], [5.0, 1.0])
    """
    flat = d.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.pow(2).sum(1).sqrt()


def ball_unit(d: Tensor, norm: str) -> Tensor:
    """``d`` scaled to unit norm per sample (a zero sample stays zero).

    Example:

    >>> u = ball_unit(torch.tensor([[3.0, 4.0], [0.0, 0.0]]), "l2")
    >>> ball_norm(u, "l2").round().int().tolist()
    [1, 0]
    """
    return d / (_rows(ball_norm(d, norm), d) + 1e-12)


def ball_project(d: Tensor, eps: float, norm: str) -> Tensor:
    """The projection of the perturbations ``d (N, ...)`` onto the ball of radius ``eps``. Entries that are
    zero stay zero, so a masked perturbation stays masked and its norm is over the valid entries.

    Example:

    >>> d = torch.tensor([[3.0, 4.0], [0.5, 0.0]])
    >>> ball_project(d, 1.0, "linf").tolist()
    [[1.0, 1.0], [0.5, 0.0]]
    >>> (10 * ball_norm(ball_project(d, 1.0, "l2"), "l2")).round().int().tolist()  # norms 5 and 0.5
    [10, 5]
    """
    if norm == "linf":
        return d.clamp(-eps, eps)
    size = ball_norm(d, "l2")
    return ball_unit(d, "l2") * _rows(size.clamp(max=eps), d)


def ball_start(x: Tensor, maskf: Tensor, eps: float, norm: str, gen: torch.Generator | None) -> Tensor:
    """The authors' random start for ``x (N, C, T, V, M)``: a point on the sphere of radius ``eps`` over the
    valid entries ``maskf (N, 1, T, 1, M)``, from uniform noise scaled to L-infinity norm ``eps`` or Gaussian
    noise scaled to L2 norm ``eps``; drawn on the CPU from ``gen`` (None: torch's global generator).

    Example:

    >>> x, maskf = torch.zeros(2, 3, 4, 5, 1), torch.ones(2, 1, 4, 1, 1)
    >>> d = ball_start(x, maskf, 0.02, "l2", generator(0))
    >>> d.shape, torch.allclose(ball_norm(d, "l2"), torch.full((2,), 0.02))
    (torch.Size([2, 3, 4, 5, 1]), True)
    """
    if norm == "linf":
        noise = 2 * torch.rand(x.shape, generator=gen, dtype=x.dtype) - 1
    else:
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return eps * ball_unit(noise.to(x.device) * maskf, norm)


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """The untargeted DLR loss ``(N,)``: ``-(Z_y - max_{j!=y} Z_j) / (Z_pi1 - Z_pi3)``, with ``Z_pi`` the
    logits sorted in decreasing order (needs 3 classes or more).

    Example:

    >>> logits = torch.tensor([[4.0, 2.0, 0.0], [4.0, 2.0, 0.0]])
    >>> dlr_loss(logits, torch.tensor([0, 1])).tolist()  # right, then wrong
    [-0.5, 0.5]
    """
    top = logits.sort(1, descending=True).values
    own = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return -(own - other) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_loss_targeted(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """The targeted DLR loss ``(N,)``: ``-(Z_y - Z_t) / (Z_pi1 - (Z_pi3 + Z_pi4) / 2)`` (needs 4 classes or
    more).

    Example:

    >>> logits = torch.tensor([[4.0, 2.0, 1.0, -1.0]])
    >>> dlr_loss_targeted(logits, torch.tensor([0]), torch.tensor([1])).tolist()  # -(4 - 2) / (4 - 0)
    [-0.5]
    """
    top = logits.sort(1, descending=True).values
    own = logits.gather(1, y[:, None]).squeeze(1)
    aim = logits.gather(1, target[:, None]).squeeze(1)
    return -(own - aim) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed``, or None (torch's global generator) for ``seed=None``.

    Example:

    >>> generator(None) is None, torch.equal(torch.rand(3, generator=generator(0)), torch.rand(3, generator=generator(0)))
    (True, True)
    """
    return None if seed is None else torch.Generator(device="cpu").manual_seed(seed)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@ATTACKS.register("apgd")
class APGDAttack(Attack):
    """Auto-PGD (Croce and Hein, ICML 2020): APGD-CE, APGD-DLR, their targeted forms and APGD-T, in an
    L-infinity or L2 ball of radius ``eps`` metres around the clip, over its valid entries only
    (docs/METHOD.md section 4).

    Arguments:
        model (nn.Module): the classifier of raw coordinates ``(N, C, T, V, M)``.
        layout (str or Layout): the skeleton layout of the clips.
        targeted (bool): seek the given target labels (default false).
        norm (str): ``"linf"`` or ``"l2"``, the ball's norm over the valid entries (default ``"linf"``).
        eps (float): the ball's radius in metres (default 0.02; under ``l2`` the Euclidean norm of the whole
            clip's perturbation).
        n_iter (int): iterations per run, each one gradient evaluation (default 100).
        n_restarts (int): runs from a fresh random start for the clips not yet fooled (default 1).
        loss (str): ``"ce"`` (cross-entropy) or ``"dlr"`` (difference of logits ratio; 3 classes or more,
            targeted 4 or more) (default ``"ce"``).
        rho (float): the checkpoints' oscillation threshold: the step halves when the loss rose in at most
            this fraction of the steps since the last checkpoint (default 0.75).
        momentum (float): the weight of the new step against the last one, the paper's alpha (default 0.75).
        n_target_classes (int or None): APGD-T, untargeted only and with ``loss="dlr"``: run the targeted DLR
            loss towards the clean clip's 2nd, 3rd, ... most likely classes, this many of them (at most the
            number of classes - 1), on the clips still robust (default None: plain APGD).
        eot_iter (int): gradients averaged per step (expectation over transformation, for randomised
            models; default 1).
        seed (int or None): seed of the CPU generator of the random starts (default 0; None: torch's global
            generator).

    Shape:
        ``x (N, C, T, V, M)`` in metres, ``y (N,)``, ``lengths (N,)``, ``target (N,)`` if targeted; the
        result's ``x_adv`` is the input's shape. ``grad_evals`` counts ``(n_iter + 1) * eot_iter`` per run.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = APGDAttack(model, "ntu25", eps=0.02, n_iter=5, loss="dlr")(x, y)
    >>> tuple(res.x_adv.shape), bool((res.x_adv - x).abs().max() <= 0.02 + 1e-6)
    ((4, 3, 8, 25, 1), True)
    """

    name = "apgd"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        norm: str = "linf",
        eps: float = 0.02,
        n_iter: int = 100,
        n_restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        n_target_classes: int | None = None,
        eot_iter: int = 1,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, layout, targeted)
        apgd_t = n_target_classes is not None
        check_params(self.name, {
            "norm": (norm, norm in NORMS, f"one of {NORMS}"),
            "eps": (eps, eps > 0, "> 0 (metres)"),
            "n_iter": (n_iter, _is_int(n_iter) and n_iter >= 1, "an integer >= 1"),
            "n_restarts": (n_restarts, _is_int(n_restarts) and n_restarts >= 1, "an integer >= 1"),
            "loss": (loss, loss in LOSSES, f"one of {LOSSES}"),
            "rho": (rho, 0 < rho <= 1, "in (0, 1]"),
            "momentum": (momentum, 0 < momentum <= 1, "in (0, 1]"),
            "n_target_classes": (n_target_classes,
                                 not apgd_t or (_is_int(n_target_classes) and n_target_classes >= 1
                                                and loss == "dlr" and not targeted),
                                 "null, or an integer >= 1 with loss 'dlr' and targeted false (APGD-T)"),
            "eot_iter": (eot_iter, _is_int(eot_iter) and eot_iter >= 1, "an integer >= 1"),
            "seed": (seed, seed is None or _is_int(seed), "an integer or null"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.norm, self.eps, self.n_iter, self.n_restarts = norm, float(eps), n_iter, n_restarts
        self.loss, self.rho, self.momentum = loss, float(rho), float(momentum)
        self.n_target_classes, self.eot_iter, self.seed = n_target_classes, eot_iter, seed

    def checkpoints(self) -> list[int]:
        """The iterations after which the step size is checked: the paper's ``w_j = p_j * n_iter`` with
        ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, in the authors' whole numbers
        (gaps ``int(0.22 n_iter)``, then each ``int(0.03 n_iter)`` shorter, ``int(0.06 n_iter)`` at least; 1 at
        least): 22, 41, 57, 70, 80, 87, 93, 99 of 100 iterations."""
        gap = max(int(0.22 * self.n_iter), 1)
        smallest, decrease = max(int(0.06 * self.n_iter), 1), max(int(0.03 * self.n_iter), 1)
        out = [gap]
        while True:
            gap = max(gap - decrease, smallest)
            if out[-1] + gap > self.n_iter:
                return out
            out.append(out[-1] + gap)

    def loss_fn(self, logits: Tensor, y: Tensor, aim: Tensor | None) -> Tensor:
        """The loss ``(n,)`` the attack ascends: towards ``aim`` (the target) when given."""
        classes = logits.shape[1]
        if self.loss == "dlr" and classes < (3 if aim is None else 4):
            kind = "the DLR loss needs 3" if aim is None else "the targeted DLR loss (APGD-T) needs 4"
            raise ValueError(f"{self.name}: {kind} classes or more; the model has {classes}")
        if self.loss == "ce":
            if aim is None:
                return nn.functional.cross_entropy(logits, y, reduction="none")
            return -nn.functional.cross_entropy(logits, aim, reduction="none")
        return dlr_loss(logits, y) if aim is None else dlr_loss_targeted(logits, y, aim)

    def _gradient(
        self, x: Tensor, delta: Tensor, maskf: Tensor, rows: Tensor, y: Tensor, aim: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Logits, loss and the masked input gradient at ``x + delta``, averaged over ``eot_iter`` passes."""
        g = torch.zeros_like(delta)
        for _ in range(self.eot_iter):
            d = delta.detach().requires_grad_(True)
            logits = self.classify(x + d, rows)
            loss = self.loss_fn(logits, y, aim)
            g += self.input_grad(loss, d)
        return logits.detach(), loss.detach(), g * (maskf / self.eot_iter)

    def run(
        self,
        x: Tensor,
        maskf: Tensor,
        rows: Tensor,
        y: Tensor,
        aim: Tensor | None,
        success_label: Tensor,
        gen: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One APGD run from a random start on the call's clips ``rows``. ``aim``: the loss's target (None:
        untargeted); fooled: a label other than ``success_label`` (untargeted, APGD-T), or it (targeted).
        Returns the perturbation ``(n, C, T, V, M)`` (the last fooling iterate, else the highest-loss one),
        whether it fooled, the best loss and the last step size (metres)."""
        n, eps, norm = x.shape[0], self.eps, self.norm
        view = (-1, 1, 1, 1, 1)

        def fooled_by(logits: Tensor) -> Tensor:
            pred = logits.argmax(1)
            return pred == success_label if self.targeted else pred != success_label

        delta = ball_start(x, maskf, eps, norm, gen)
        logits, loss, g = self._gradient(x, delta, maskf, rows, y, aim)
        fooled = fooled_by(logits)
        adv = delta.clone()  # the last fooling iterate (the start until one fools)
        best, g_best, loss_best = delta.clone(), g.clone(), loss.clone()
        history = loss.new_empty(self.n_iter + 1, n)  # the loss at every iterate, the start's first
        history[0] = loss
        step = torch.full((n,), 2 * eps, dtype=x.dtype, device=x.device)
        delta_old = delta
        best_at_check = loss_best.clone()
        halved = torch.ones(n, dtype=torch.bool, device=x.device)  # no "unchanged step" at the first check
        checks = self.checkpoints()
        previous = dict(zip(checks, [0, *checks[:-1]], strict=True))  # each checkpoint -> the one before
        for i in range(self.n_iter):
            with torch.no_grad():
                moment = delta - delta_old
                delta_old = delta
                a = self.momentum if i > 0 else 1.0
                direction = g.sign() if norm == "linf" else ball_unit(g, norm)
                z = ball_project(delta + step.view(view) * direction, eps, norm)
                delta = ball_project(delta + a * (z - delta) + (1 - a) * moment, eps, norm)
            logits, loss, g = self._gradient(x, delta, maskf, rows, y, aim)
            with torch.no_grad():
                now = fooled_by(logits)
                adv = torch.where(now.view(view), delta, adv)
                fooled |= now
                history[i + 1] = loss
                better = loss > loss_best
                best = torch.where(better.view(view), delta, best)
                g_best = torch.where(better.view(view), g, g_best)
                loss_best = torch.where(better, loss, loss_best)
                if i + 1 in previous:  # a checkpoint: the paper's two conditions since the last one
                    halved = self._halve(history, previous[i + 1], i + 1, halved, best_at_check, loss_best)
                    best_at_check = loss_best.clone()
                    step = torch.where(halved, step / 2, step)
                    delta = torch.where(halved.view(view), best, delta)
                    g = torch.where(halved.view(view), g_best, g)
        return torch.where(fooled.view(view), adv, best), fooled, loss_best, step

    def _halve(
        self, history: Tensor, start: int, end: int, halved: Tensor, best_at_check: Tensor, loss_best: Tensor
    ) -> Tensor:
        """``(n,)``: the clips whose step halves at checkpoint ``end`` (the last one at ``start``): the loss
        rose at most ``rho`` of the iterations since, or the step was not halved last time and the best loss
        has not risen since (Croce & Hein 2020, section 3.2)."""
        rises = (history[start + 1 : end + 1] > history[start:end]).sum(0)
        oscillating = rises <= (end - start) * self.rho
        stalled = ~halved & (best_at_check >= loss_best)
        return oscillating | stalled

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        n, dev = x.shape[0], x.device
        maskf = self.mask(x, lengths).to(x.dtype)
        gen = generator(self.seed)
        delta = torch.zeros_like(x)
        fooled = torch.zeros(n, dtype=torch.bool, device=dev)
        grad_evals = torch.zeros(n, dtype=torch.long, device=dev)
        forward_evals = torch.zeros_like(grad_evals)
        runs = torch.zeros_like(grad_evals)
        best_loss = torch.full((n,), float("nan"), dtype=x.dtype, device=dev)
        step = torch.full_like(best_loss, float("nan"))
        if self.n_target_classes is not None:  # APGD-T: the clean clip's next most likely classes
            with torch.no_grad():
                ranked = self.classify(x).argsort(1, descending=True)
            forward_evals += 1
            k = min(self.n_target_classes, ranked.shape[1] - 1)
            if k < self.n_target_classes:
                log.debug("%s: %d target classes asked, %d possible", self.name, self.n_target_classes, k)
            aims = [ranked[:, r] for r in range(1, k + 1)]
        else:
            aims = [target]
        success_label = y if target is None else target
        for aim in aims:
            for _ in range(self.n_restarts):
                rows = (~fooled).nonzero().squeeze(1)
                if rows.numel() == 0:
                    break
                d, ok, loss, last_step = self.run(
                    x[rows], maskf[rows], rows, y[rows], None if aim is None else aim[rows],
                    success_label[rows], gen,
                )  # fmt: skip
                delta[rows], best_loss[rows], step[rows] = d, loss, last_step
                grad_evals[rows] += (self.n_iter + 1) * self.eot_iter
                runs[rows] += 1
                fooled[rows] = ok
                self.clips_done(int(ok.sum()))
        return self.result(
            x + delta,
            y,
            target,
            grad_evals,
            forward_evals,
            iterations=runs * self.n_iter,
            best_loss=best_loss,
            step=step,
        )
