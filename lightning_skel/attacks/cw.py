"""C&W-L2 (Carlini and Wagner, S&P 2017) on skeletons (docs/METHOD.md section 4).

Adam on ``x' = x + delta`` minimising ``|x' - x|^2 + c * L_cls`` with the margin loss of confidence
``kappa``; optional per-sample binary search over ``c``. Coordinates are unbounded (no tanh change of
variables: skeletons have no box). ``x (N, C, T, V, M)`` in metres.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult, BatchAdam, is_success, margin_loss
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params


@ATTACKS.register("cw")
class CWAttack(Attack):
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
        n, dev = x.shape[0], x.device
        maskf = self.mask(x, lengths).to(x.dtype)
        c = torch.full((n,), self.c, device=dev)
        lo, hi = torch.zeros(n, device=dev), torch.full((n,), float("inf"), device=dev)
        best_x, best_l2 = x.clone(), torch.full((n,), float("inf"), device=dev)
        grad_evals = torch.zeros(n, dtype=torch.long, device=dev)
        for _ in range(self.binary_search_steps):
            delta = torch.zeros_like(x)
            opt = BatchAdam(delta, self.lr)
            fooled = torch.zeros(n, dtype=torch.bool, device=dev)
            active = torch.arange(n, device=dev)
            for _ in range(self.steps):
                if active.numel() == 0:
                    break
                d = delta[active].requires_grad_(True)
                logits = self.classify(x[active] + d, active)
                t_a = None if target is None else target[active]
                l2 = d.pow(2).flatten(1).sum(1)
                loss = l2 + c[active] * margin_loss(logits, y[active], t_a, self.kappa)
                g = self.input_grad(loss, d)
                grad_evals[active] += 1
                with torch.no_grad():  # the logits belong to the current iterate x + d
                    ok = is_success(logits.argmax(1), y[active], t_a)
                    better = ok & (l2 < best_l2[active])
                    best_l2[active] = torch.where(better, l2.detach(), best_l2[active])
                    best_x[active] = torch.where(
                        better.view(-1, 1, 1, 1, 1), x[active] + d.detach(), best_x[active]
                    )
                    fooled[active] |= ok
                opt.step(active, g, maskf[active])
                if self.early_stop:  # stop once fooled with no margin left to gain in the loss
                    active = active[~(ok & (loss.detach() <= l2.detach()))]
            hi = torch.where(fooled, torch.minimum(hi, c), hi)
            lo = torch.where(fooled, lo, torch.maximum(lo, c))
            c = torch.where(torch.isinf(hi), c * 10, (lo + hi) / 2)
        success_any = torch.isfinite(best_l2)
        x_adv = torch.where(success_any.view(-1, 1, 1, 1, 1), best_x, x + delta)
        return self.result(x_adv, y, target, grad_evals, l2=best_l2)
