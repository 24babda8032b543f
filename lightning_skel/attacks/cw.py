"""C&W-L2 (Carlini and Wagner, S&P 2017) on skeletons (docs/METHOD.md section 4): :class:`CWAttack`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    BatchAdam,
    CSearch,
    Rows,
    Tally,
    is_success,
    margin_loss,
)
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params


@dataclass(eq=False)
class CWRows(Rows):
    """The state of C&W's runs in flight, one row per run (:class:`~lightning_skel.attacks.base.Rows`):
    the row's clean clip ``x`` ``(n, C, T, V, M)``, validity ``mask`` ``(n, 1, T, 1, M)`` (float), label
    ``y`` and ``target`` ``(n,)`` (None untargeted), the perturbation with its Adam state ``opt`` and the
    run's steps ``it`` ``(n,)``; first the scheduler's fields: ``sample`` ``(n,)`` long, ``c`` ``(n,)`` the
    row's weight of the margin loss (m^2/logit) and ``fooled`` ``(n,)`` bool.

    Example:

    >>> x = torch.zeros(2, 3, 8, 25, 1)
    >>> fresh = dict(fooled=torch.zeros(2, dtype=torch.bool), mask=torch.ones(2, 1, 8, 1, 1), target=None)
    >>> rows = CWRows(torch.tensor([0, 1]), torch.ones(2), x=x, y=torch.tensor([3, 4]), **fresh,
    ...               opt=BatchAdam(torch.zeros_like(x), 1e-3), it=torch.zeros(2, dtype=torch.long))
    >>> rows.keep(torch.tensor([False, True]))  # the first run ended
    >>> rows.sample, rows.y
    (tensor([1]), tensor([4]))
    """

    x: Tensor
    mask: Tensor
    y: Tensor
    target: Tensor | None
    opt: BatchAdam
    it: Tensor


@ATTACKS.register("cw")
class CWAttack(Attack):
    """C&W-L2 (Carlini and Wagner, "Towards Evaluating the Robustness of Neural Networks", S&P 2017) on
    skeletons, docs/METHOD.md section 4: Adam on ``x' = x + delta`` from ``delta = 0`` minimising
    ``|delta|^2 + c * L_cls(x + delta)`` with the margin loss of confidence ``kappa``; each step a fooling
    iterate closer than the clip's best becomes it. Coordinates are unbounded (no tanh change of
    variables: skeletons have no box).

    Arguments:
        model: the classifier (``nn.Module``, ``(N, C, T, V, M)`` to logits ``(N, K)``).
        layout: the skeleton layout (name or ``Layout``).
        targeted: seek the target label instead of any wrong one. Default False.
        c: the starting weight of the margin loss (m^2/logit, ``> 0``). Default 1.
        kappa: the margin loss's confidence (logits, ``>= 0``). Default 0.
        lr: Adam's step (metres, ``> 0``). Default 1e-3.
        steps: Adam steps per round (``>= 1``). Default 100.
        binary_search_steps: rounds per clip of the search over c (``>= 1``; 1: no search), each from
            ``delta = 0``, shared with ADMM (:class:`~lightning_skel.attacks.base.CSearch`, no upper
            bound). Default 1.
        early_stop: stop a round once its iterate fools the classifier with a margin loss of 0. Default
            False.

    Shapes: ``x (N, C, T, V, M)`` in metres, ``y``, ``lengths``, ``target`` ``(N,)``. The result's
    ``extras``: ``l2`` the best fooling ``|delta|^2`` (m^2; inf if never fooled). A clip never fooled
    gets the last iterate of its last round.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = CWAttack(model, "ntu25", c=5.0, lr=0.01, steps=10, binary_search_steps=2)(x, y)
    >>> res.extras["l2"].shape, int(res.grad_evals.max())  # two rounds of 10 steps
    (torch.Size([4]), 20)
    """

    name = "cw"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        c: float = 1.0,
        kappa: float = 0.0,
        lr: float = 1e-3,
        steps: int = 100,
        binary_search_steps: int = 1,
        early_stop: bool = False,
    ) -> None:
        super().__init__(model, layout, targeted)
        check_params("cw", {
            "c": (c, c > 0, "> 0"),
            "lr": (lr, lr > 0, "> 0"),
            "steps": (steps, steps >= 1, ">= 1"),
            "binary_search_steps": (binary_search_steps, binary_search_steps >= 1, ">= 1"),
            "kappa": (kappa, kappa >= 0, ">= 0"),
            "early_stop": (early_stop, isinstance(early_stop, bool), "true or false"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.c, self.kappa, self.lr, self.steps = float(c), float(kappa), float(lr), int(steps)
        self.binary_search_steps, self.early_stop = int(binary_search_steps), early_stop

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        """Every round of every clip's search over c, all clips' runs in flight at once
        (:meth:`~lightning_skel.attacks.base.Attack.stream`): a clip's next round starts as its last ends."""
        maskf = self.mask(x, lengths).to(x.dtype)
        tally = Tally(x)
        search = CSearch(x.shape[0], self.c, self.binary_search_steps, like=x)

        def start(samples: Tensor, c: Tensor) -> CWRows:
            xs = x[samples]
            return CWRows(
                sample=samples, c=c, fooled=torch.zeros_like(samples, dtype=torch.bool), x=xs,
                mask=maskf[samples], y=y[samples], target=None if target is None else target[samples],
                opt=BatchAdam(torch.zeros_like(xs), self.lr), it=torch.zeros_like(samples),
            )  # fmt: skip

        self.stream(search, None, start, lambda rows: self._step(rows, tally))
        return self.result(tally.x_adv(), y, target, tally.grad_evals, l2=tally.best_d)

    def _step(self, s: CWRows, tally: Tally) -> Tensor:
        """One Adam step of every row, its iterate checked by the logits of its gradient pass; returns the
        runs that ended ``(n,)`` (their last iterates recorded in ``tally``)."""
        d = s.opt.param.detach().requires_grad_(True)
        logits = self.classify(s.x + d, s.sample)
        l2 = d.pow(2).flatten(1).sum(1)
        loss = l2 + s.c * margin_loss(logits, s.y, s.target, self.kappa)
        g = self.input_grad(loss, d)
        tally.grad_evals[s.sample] += 1
        with torch.no_grad():  # the logits belong to the current iterate x + d
            ok = is_success(logits.argmax(1), s.y, s.target)
            tally.offer(s.sample, s.x + d.detach(), l2.detach(), ok)
            s.fooled |= ok
        s.opt.step(slice(None), g, s.mask)
        s.it += 1
        ended = s.it >= self.steps
        if self.early_stop:  # fooled with no margin left to gain in the loss
            ended |= ok & (loss.detach() <= l2.detach())
        if bool(ended.any()):
            tally.end(s.sample[ended], (s.x + s.opt.param)[ended])
        return ended
