"""The ADMM attack with the dynamic distance (METHOD.md section 3).

Liu, Xu, Zheng, "Emotion Loss Attacking: Adversarial Attack Perception for Skeleton based on
Multi-dimensional Features" (arXiv 2406.19815), on the ADMM framework of Zhao et al. 2018 and the bone /
angle / speed constraints of Zheng et al. (arXiv 2005.07151). Finds ``x' = x + delta`` that the classifier
gets wrong (or labels as a target) with the smallest dynamic distance ``D(x, x')``:

    delta <- argmin c * L_cls(x + delta) + rho/2 |delta - z + u|^2      (I_delta Adam steps, warm start)
    z     <- argmin D(x, x + z)          + rho/2 |delta - z + u|^2      (I_z Adam steps, warm start)
    u     <- u + delta - z

The candidate after each outer step is ``x + z``; per sample the successful candidate with the smallest D
is kept, and a sample stops once it has one whose hinge terms are all zero, or (with ``patience``) once it
has been fooled and its best D has not fallen by more than ``min_improvement`` (relative) for ``patience``
outer steps: the hinges of a fooling candidate are often not all reachable, and without this a fooled
sample spends every remaining step polishing D. ``rho`` follows residual
balancing (Boyd et al. 2011, section 3.4.1). ``c`` is fixed, grows for samples not yet fooled
(``c_growth``), or is searched per sample over ``binary_search_steps`` rounds as in C&W.

The emotion term needs the emotion recognizer's forward and backward on every z step, which can cost more
than the classifier's. ``emotion_every = k > 1`` linearises it: its gradient is recomputed every k z steps
and reused in between, and the one that starts a z block is taken where the previous candidate was scored
(that candidate is where the block starts), so ``k = z_steps`` runs the recognizer once per outer step
instead of ``z_steps + 1`` times. A stale gradient can overshoot when the emotion weight dominates D.

Shapes: ``x (N, C, T, V, M)``; every per-sample quantity ``(N,)``. Only the samples still being attacked go
through the networks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult, BatchAdam, is_success, margin_loss
from lightning_skel.attacks.distances import DynamicDistance, Kinematics
from lightning_skel.skeleton.layouts import Layout


def _norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1)


@ATTACKS.register("admm")
class ADMMAttack(Attack):
    name = "admm"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        emotion_model: nn.Module | None = None,
        weights: Mapping[str, float] | None = None,
        tau: Mapping[str, float] | None = None,
        hinge: str = "mean",
        c: float = 1.0,
        c_growth: float = 1.0,
        c_max: float = 1e4,
        binary_search_steps: int = 1,
        kappa: float = 1.0,
        rho: float = 1.0,
        lr: float = 1e-3,
        lr_z: float | None = None,
        max_iter: int = 100,
        delta_steps: int = 5,
        z_steps: int = 5,
        balance: float = 10.0,
        early_stop: bool = True,
        patience: int | None = None,
        min_improvement: float = 0.01,
        emotion_every: int = 1,
    ) -> None:
        super().__init__(model, layout, targeted)
        rules = {
            "c": (c, c > 0, "> 0"),
            "c_growth": (c_growth, c_growth >= 1, ">= 1"),
            "binary_search_steps": (binary_search_steps, binary_search_steps >= 1, ">= 1"),
            "kappa": (kappa, kappa >= 0, ">= 0"),
            "rho": (rho, rho > 0, "> 0"),
            "lr": (lr, lr > 0, "> 0"),
            "max_iter": (max_iter, max_iter >= 1, ">= 1"),
            "delta_steps": (delta_steps, delta_steps >= 1, ">= 1"),
            "z_steps": (z_steps, z_steps >= 1, ">= 1"),
            "balance": (balance, balance > 1, "> 1"),
            "patience": (patience, patience is None or patience >= 1, ">= 1 or null"),
            "min_improvement": (min_improvement, min_improvement >= 0, ">= 0"),
            "emotion_every": (emotion_every, emotion_every >= 1, ">= 1"),
        }
        bad = [f"{k} must be {rule}, got {value}" for k, (value, ok, rule) in rules.items() if not ok]
        if bad:
            raise ValueError(f"admm: invalid hyper-parameter(s): {'; '.join(bad)}")
        self.distance = DynamicDistance(self.layout, weights, tau, emotion_model, hinge)
        self.c, self.c_growth, self.c_max = float(c), float(c_growth), float(c_max)
        self.binary_search_steps = int(binary_search_steps)
        self.kappa, self.rho0 = float(kappa), float(rho)
        self.lr, self.lr_z = float(lr), float(lr_z if lr_z is not None else lr)
        self.max_iter, self.delta_steps, self.z_steps = int(max_iter), int(delta_steps), int(z_steps)
        self.balance, self.early_stop = float(balance), bool(early_stop)
        self.patience, self.min_improvement = patience, float(min_improvement)
        self.emotion_every = int(emotion_every)

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        n = x.shape[0]
        dev = x.device
        mask = self.mask(x, lengths)
        clean = self.distance.reference(x, mask)
        best_x = x.clone()
        best_d = torch.full((n,), float("inf"), device=dev)
        success = torch.zeros(n, dtype=torch.bool, device=dev)
        counts = {k: torch.zeros(n, dtype=torch.long, device=dev) for k in ("grad", "forward", "iter")}
        counts["first"] = torch.full((n,), -1, dtype=torch.long, device=dev)  # grad evals at first success
        c = torch.full((n,), self.c, device=dev)
        lo = torch.zeros(n, device=dev)
        hi = torch.full((n,), float("inf"), device=dev)
        last = x.clone()
        for _ in range(self.binary_search_steps):
            fooled, last = self._run(x, y, target, mask, clean, c, best_x, best_d, success, counts)
            # C&W-style search: shrink c where this round succeeded, grow it where it did not
            hi = torch.where(fooled, torch.minimum(hi, c), hi)
            lo = torch.where(fooled, lo, torch.maximum(lo, c))
            c = torch.where(torch.isinf(hi), c * 10, (lo + hi) / 2).clamp_max(self.c_max)
        x_adv = torch.where(success.view(-1, 1, 1, 1, 1), best_x, last)
        return self.result(
            x_adv, y, target, counts["grad"], counts["forward"] + 1, counts["iter"],
            distance=best_d, grad_evals_to_success=counts["first"],
        )  # fmt: skip

    def _run(self, x, y, target, mask, clean: Kinematics, c0, best_x, best_d, success, counts):
        """One ADMM run from delta = z = u = 0; updates best_x, best_d, success, counts in place and
        returns (succeeded in this run, last candidate)."""
        n = x.shape[0]
        dev = x.device
        maskf = mask.to(x.dtype)
        delta = torch.zeros_like(x)
        z = torch.zeros_like(x)
        u = torch.zeros_like(x)
        rho = torch.full((n,), self.rho0, device=dev)
        c = c0.clone()
        opt_delta = BatchAdam(delta, self.lr)
        opt_z = BatchAdam(z, self.lr_z)
        # linearised emotion term: its gradient is recomputed every `emotion_every` z steps and reused in
        # between; the one at the start of a z block comes from the previous candidate's evaluation (the z
        # block starts where that candidate is), and at z = 0 it is exactly 0 (d_E is a squared difference)
        lazy_emotion = self.emotion_every > 1 and "emotion" in self.distance.active
        g_emotion = torch.zeros_like(x) if lazy_emotion else None
        w_emotion = self.distance.weights["emotion"]
        skip = ("emotion",) if lazy_emotion else ()  # the z steps' exact terms
        fooled = torch.zeros(n, dtype=torch.bool, device=dev)
        stale = torch.zeros(n, dtype=torch.long, device=dev)  # outer steps since D last improved enough
        active = torch.arange(n, device=dev)
        for _ in range(self.max_iter):
            if active.numel() == 0:
                break
            # every sample still active (most of a run): views instead of gathered copies
            idx = slice(None) if active.numel() == n else active
            xi, mi = x[idx], maskf[idx]
            t_i = None if target is None else target[idx]
            r5 = rho[idx].view(-1, 1, 1, 1, 1)
            # delta block: c * L_cls + rho/2 |delta - z + u|^2 (the quadratic's gradient is analytic)
            for _ in range(self.delta_steps):
                d = delta[idx].requires_grad_(True)
                loss = margin_loss(self.model(xi + d), y[idx], t_i, self.kappa)
                g = self.input_grad(c[idx] * loss, d) + r5 * (d.detach() - z[idx] + u[idx])
                opt_delta.step(idx, g, mi)
            counts["grad"][idx] += self.delta_steps
            # z block: D(x, x + z) + rho/2 |delta - z + u|^2
            clean_i = clean.subset(idx)
            z_prev = z[idx].clone()
            for step in range(self.z_steps):
                zz = z[idx].requires_grad_(True)
                adv = self.distance.kinematics(xi + zz, clean_i.mask)
                total, _ = self.distance(clean_i, adv, skip)
                g = self.input_grad(total, zz)
                if lazy_emotion:
                    if step and step % self.emotion_every == 0:
                        emotion = w_emotion * self.distance.terms["emotion"](clean_i, adv)
                        g_emotion[idx] = self.input_grad(emotion, zz)
                    g = g + g_emotion[idx]
                opt_z.step(idx, g + r5 * (zz.detach() - delta[idx] - u[idx]), mi)
            u[idx] += delta[idx] - z[idx]
            # residual balancing of rho, with the scaled dual rescaled to match
            r = _norm(delta[idx] - z[idx])
            s = rho[idx] * _norm(z[idx] - z_prev)
            up = r > self.balance * s
            down = s > self.balance * r
            factor = torch.where(up, 2.0, torch.where(down, 0.5, 1.0))
            rho[idx] = rho[idx] * factor
            u[idx] = u[idx] / factor.view(-1, 1, 1, 1, 1)
            # candidate x + z: keep the successful one with the smallest D
            zc = z[idx].requires_grad_(lazy_emotion)
            cand = (xi + zc).detach()
            with torch.no_grad():
                ok = is_success(self.model(cand).argmax(1), y[idx], t_i)
            # D of the candidate; linearised, also the emotion gradient there, which starts the next z block
            with torch.set_grad_enabled(lazy_emotion):
                total, parts = self.distance(clean_i, self.distance.kinematics(xi + zc, clean_i.mask))
            if lazy_emotion:
                g_emotion[idx] = self.input_grad(w_emotion * parts["emotion"], zc)
                total, parts = total.detach(), {k: v.detach() for k, v in parts.items()}
            counts["forward"][idx] += 1
            counts["iter"][idx] += 1
            old = best_d[idx]
            better = ok & (total < old)
            improved = better & (torch.isinf(old) | (old - total > self.min_improvement * old))
            best_d[idx] = torch.where(better, total, best_d[idx])
            best_x[idx] = torch.where(better.view(-1, 1, 1, 1, 1), cand, best_x[idx])
            first = ok & (counts["first"][idx] < 0)
            counts["first"][idx] = torch.where(first, counts["grad"][idx], counts["first"][idx])
            success[idx] |= ok
            fooled[idx] |= ok
            # c schedule: samples not yet fooled weigh the classification loss more
            c[idx] = torch.where(fooled[idx], c[idx], (c[idx] * self.c_growth).clamp_max(self.c_max))
            if self.early_stop:
                finished = ok & self.distance.hinges_zero(total, parts)
                if self.patience is not None:
                    stale[idx] = torch.where(improved, 0, stale[idx] + fooled[idx].long())
                    finished |= fooled[idx] & (stale[idx] >= self.patience)
                active = active[~finished]
        last = x + z
        return fooled, last
