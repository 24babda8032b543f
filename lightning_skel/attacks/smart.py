"""SMART (Wang et al., "Understanding the Robustness of Skeleton-based Action Recognition under
Adversarial Attack", CVPR 2021), as docs/METHOD.md section 4 states it.

Gradient descent on ``x'`` with the classification gradient and the perceptual gradient each L2-normalised
per frame and mixed by ``cw``; perceptual loss ``rw * joint l2 + (1 - rw) * (blw * bone-length loss +
(1 - blw) * acceleration loss)``; per-sample update clipping; a sample stops once it is fooled. Joint
weights are uniform. ``x (N, C, T, V, M)`` in metres.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult, is_success
from lightning_skel.attacks.distances import Kinematics, masked_mean
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params


def _per_frame_unit(g: Tensor) -> Tensor:
    """Scale ``g (N, C, T, V, M)`` to unit L2 norm in every frame (over C, V, M)."""
    norm = g.pow(2).sum((1, 3, 4), keepdim=True).sqrt()
    return g / norm.clamp_min(1e-12)


@ATTACKS.register("smart")
class SMARTAttack(Attack):
    name = "smart"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        lr: float = 0.01,
        steps: int = 200,
        cw: float = 0.6,
        rw: float = 0.4,
        blw: float = 0.7,
        clip: float = 0.01,
    ) -> None:
        super().__init__(model, layout, targeted)
        check_params("smart", {
            **{key: (value, 0 <= value <= 1, "in [0, 1]") for key, value in (("cw", cw), ("rw", rw), ("blw", blw))},
            "lr": (lr, lr > 0, "> 0"),
            "steps": (steps, steps >= 1, ">= 1"),
            "clip": (clip, clip > 0, "> 0 (metres)"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.lr, self.steps, self.cw, self.rw, self.blw, self.clip = (
            float(lr),
            int(steps),
            cw,
            rw,
            blw,
            float(clip),
        )

    def perceptual_loss(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        """``(N,)``: rw * joint l2 + (1 - rw) * (blw * bone-length loss + (1 - blw) * acceleration loss)."""
        joint = masked_mean((adv.x - clean.x).pow(2).sum(1, keepdim=True), clean.mask)
        bone = masked_mean((adv.bone_lengths - clean.bone_lengths).pow(2), clean.frame_mask)
        acc = masked_mean((adv.acceleration - clean.acceleration).pow(2).sum(1), clean.acceleration_mask)
        return self.rw * joint + (1 - self.rw) * (self.blw * bone + (1 - self.blw) * acc)

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        n = x.shape[0]
        mask = self.mask(x, lengths)
        maskf = mask.to(x.dtype)
        clean = Kinematics(x, self.layout, mask)
        x_adv = x.clone()
        grad_evals = torch.zeros(n, dtype=torch.long, device=x.device)
        active = torch.arange(n, device=x.device)
        for _ in range(self.steps):
            if active.numel() == 0:
                break
            xa = x_adv[active].requires_grad_(True)
            logits = self.classify(xa, active)
            t_a = None if target is None else target[active]
            with torch.no_grad():
                done = is_success(logits.argmax(1), y[active], t_a)
            ce = nn.functional.cross_entropy(logits, y[active] if t_a is None else t_a, reduction="none")
            cls = -ce if t_a is None else ce  # descend: raise the true class's loss or lower the target's
            g_cls = self.input_grad(cls, xa)
            grad_evals[active] += 1
            per = self.perceptual_loss(clean.subset(active), Kinematics(xa, self.layout, mask[active]))
            g_per = self.input_grad(per, xa)
            step = self.lr * (self.cw * _per_frame_unit(g_cls) + (1 - self.cw) * _per_frame_unit(g_per))
            step = step.clamp(-self.clip, self.clip) * maskf[active]
            keep = (~done).to(x.dtype).view(-1, 1, 1, 1, 1)  # samples already fooled are not moved
            x_adv[active] = xa.detach() - step * keep
            active = active[~done]
            self.clips_done(int(done.sum()))
        return self.result(x_adv, y, target, grad_evals)
