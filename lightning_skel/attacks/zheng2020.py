"""The augmented-Lagrangian attack of Zheng et al., "Towards Understanding the Adversarial Vulnerability of
Skeleton-based Action Recognition" (arXiv 2005.07151), as the authors' code runs it (docs/METHOD.md
section 4).

One variable ``x'``, started at ``x``. Each outer step runs ``inner_steps`` Adam steps (one optimiser for the
whole attack) on

    L_cls(x') + sum_c mean_e (lambda_c,e * g_c,e + beta / 2 * g_c,e^2)

and then raises every multiplier, ``lambda_c,e += beta * g_c,e``. The constraints ``g_c,e >= 0`` are per entry
``e``, hinged at a threshold ``tau_c``:

=====  =============================================================================  =================
c      ``g`` per entry                                                               entries
=====  =============================================================================  =================
bone   ``relu(|l' - l| / (l + 1e-5) - tau)``                                         (N, T, B, M)
angle  ``relu(|d_p| / (|u| + 1e-5) + |d_c| / (|v| + 1e-5) + |d_j| (1 / (|u| + 1e-5)   (N, T, K, M)
       + 1 / (|v| + 1e-5)) - tau)``: the joints' displacements ``d = x' - x`` of a
       triplet (parent, joint, child) over its clean bones ``u``, ``v`` (the authors'
       proxy); ``angle="exact"``: ``relu(|theta' - theta| - tau)``, theta in radians
speed  ``relu(|v' - v| / (|v| + 1e-4) - tau)``, ``v_t = x_{t+1} - x_t``                 (N, T-1, V, M)
=====  =============================================================================  =================

``L_cls`` is the margin loss of confidence ``kappa`` untargeted and the cross-entropy of the target
targeted, as the authors' ``admm_attack.py`` has them. The bones and triplets are the layout's. The result
is the last iterate. ``x (N, C, T, V, M)`` in metres.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult, BatchAdam, margin_loss
from lightning_skel.attacks.distances import Kinematics
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params

TAU = {"bone": 0.01, "angle": 0.1, "speed": 0.1}  # the authors' epsilons of the three constraints
ANGLES = ("proxy", "exact")
LENGTH_EPS = 1e-5  # metres: the authors' guard of a clean bone length (NTU_ADMM_ATTACK)
SPEED_EPS = 1e-4  # metres per frame: their guard of a clean speed


def _gap(a: Tensor, b: Tensor) -> Tensor:
    """``|a - b|`` along dim 1 (the coordinates), exactly 0 where ``a == b``, with a finite gradient there."""
    return F.safe_norm(a - b, dim=1) - F.SAFE_NORM_AT_ZERO


@ATTACKS.register("zheng2020")
class Zheng2020Attack(Attack):
    """Zheng et al. 2020 (arXiv 2005.07151): Adam on ``x'`` under an augmented Lagrangian of per-entry
    bone-length, joint-angle and speed constraints (module docstring).

    Arguments:
        model (nn.Module): the classifier, ``x (N, C, T, V, M) -> logits (N, K)``.
        layout (str | Layout): the skeleton layout of ``x``: its bones and angle triplets.
        targeted (bool): seek the target label (cross-entropy of the target) instead of any wrong one (margin
            loss). Default: False.
        max_iter (int): outer steps, after each of which the multipliers rise. Default: 100.
        inner_steps (int): Adam steps per outer step. Default: 10.
        lr (float): Adam step, metres. Default: 1e-3.
        beta (float): penalty weight of the augmented Lagrangian and step of the multipliers. Default: 1.
        kappa (float): confidence of the untargeted margin loss, logits. Default: 1.
        tau (Mapping[str, float] | None): thresholds ``bone`` (relative length change), ``angle`` (the proxy,
            or radians with ``angle="exact"``) and ``speed`` (relative speed change); keys left out keep
            their defaults. Default: None (0.01, 0.1, 0.1).
        angle (str): ``"proxy"``, the authors' displacement proxy of a joint angle, or ``"exact"``, the angle
            itself (``features.bone_angles``). Default: ``"proxy"``.

    Shapes: ``x (N, C, T, V, M)``, ``y (N,)``; every clip spends ``max_iter * inner_steps`` classifier
    forward and backward passes (``grad_evals``) over ``max_iter`` outer steps (``iterations``).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = Zheng2020Attack(model, "ntu25", max_iter=2, inner_steps=3)(x, y)
    >>> tuple(res.x_adv.shape), int(res.grad_evals.max()) <= 6
    ((4, 3, 8, 25, 1), True)
    """

    name = "zheng2020"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        max_iter: int = 100,
        inner_steps: int = 10,
        lr: float = 1e-3,
        beta: float = 1.0,
        kappa: float = 1.0,
        tau: Mapping[str, float] | None = None,
        angle: str = "proxy",
    ) -> None:
        super().__init__(model, layout, targeted)
        tau = dict(tau or {})
        unknown = sorted(set(tau) - set(TAU))
        full = {**TAU, **{k: v for k, v in tau.items() if k in TAU}}
        check_params("zheng2020", {
            "max_iter": (max_iter, max_iter >= 1, ">= 1"),
            "inner_steps": (inner_steps, inner_steps >= 1, ">= 1"),
            "lr": (lr, lr > 0, "> 0 (metres)"),
            "beta": (beta, beta > 0, "> 0"),
            "kappa": (kappa, kappa >= 0, ">= 0"),
            "tau": (unknown, not unknown, f"keyed by {sorted(TAU)} only"),
            **{f"tau.{k}": (v, v >= 0, ">= 0") for k, v in full.items()},
            "angle": (angle, angle in ANGLES, f"one of {ANGLES}"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.max_iter, self.inner_steps, self.lr = int(max_iter), int(inner_steps), float(lr)
        self.beta, self.kappa, self.angle = float(beta), float(kappa), angle
        self.tau = {k: float(v) for k, v in full.items()}

    def constraints(self, clean: Kinematics, adv: Kinematics) -> dict[str, Tensor]:
        """The constraint values ``g >= 0`` of ``adv`` against ``clean``, per entry (module docstring), zero
        on invalid entries: ``bone (N, T, B, M)``, ``angle (N, T, K, M)``, ``speed (N, T-1, V, M)``. What they
        read of the clean side is computed once and cached on ``clean``."""
        tau, ref = self.tau, self._reference(clean)
        rel = (adv.bone_lengths - clean.bone_lengths).abs() * ref["inv_length"]
        bone = torch.relu(rel - tau["bone"]) * clean.frame_mask
        if self.angle == "exact":
            proxy = (adv.bone_angles - clean.bone_angles).abs()
        else:
            p, j, c = ref["triplets"]
            moved = _gap(adv.x, clean.x)  # (N, T, V, M): each joint's displacement
            inv_u, inv_v = ref["inv_u"], ref["inv_v"]
            proxy = moved[:, :, p] * inv_u + moved[:, :, c] * inv_v + moved[:, :, j] * (inv_u + inv_v)
        angle = torch.relu(proxy - tau["angle"]) * clean.frame_mask
        rel_v = _gap(adv.velocity, clean.velocity) * ref["inv_speed"]
        speed = torch.relu(rel_v - tau["speed"]) * clean.velocity_mask
        return {"bone": bone, "angle": angle, "speed": speed}

    @torch.no_grad()
    def _reference(self, clean: Kinematics) -> dict:
        """The clean side's guarded inverse lengths and speeds (stored on ``clean`` as a tuple of per-clip
        tensors, so that a subset of it slices them) and the triplet indices."""

        def compute() -> tuple[Tensor, ...]:
            u, v = clean.triplet_bones
            return (
                1 / (clean.bone_lengths + LENGTH_EPS),  # (N, T, B, M)
                1 / (u.norm(dim=1) + LENGTH_EPS),  # (N, T, K, M)
                1 / (v.norm(dim=1) + LENGTH_EPS),
                1 / (clean.velocity.norm(dim=1) + SPEED_EPS),  # (N, T-1, V, M)
            )

        inv_length, inv_u, inv_v, inv_speed = clean.memo("zheng2020_inverses", compute)
        triplets = tuple(torch.as_tensor(i, device=clean.x.device) for i in self.layout.triplet_index)
        return {"inv_length": inv_length, "inv_u": inv_u, "inv_v": inv_v, "inv_speed": inv_speed,
                "triplets": triplets}  # fmt: skip

    def lagrangian(self, g: dict[str, Tensor], lam: dict[str, Tensor], counts: dict[str, Tensor]) -> Tensor:
        """``(N,)``: ``sum_c mean_e (lambda_c,e * g_c,e + beta / 2 * g_c,e^2)``, each mean over the ``counts[c]
        (N,)`` valid entries of its constraint (``g`` is zero on the others)."""
        total = 0
        for key, gc in g.items():
            terms = lam[key] * gc + 0.5 * self.beta * gc * gc
            total = total + terms.flatten(1).sum(1) / counts[key]
        return total

    def raise_multipliers(self, g: dict[str, Tensor], lam: dict[str, Tensor]) -> dict[str, Tensor]:
        """The multipliers after an outer step: ``lambda_c + beta * g_c`` for every constraint ``c``."""
        return {key: lam[key] + self.beta * gc for key, gc in g.items()}

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        n = x.shape[0]
        mask = self.mask(x, lengths)
        maskf = mask.to(x.dtype)
        clean = Kinematics(x, self.layout, mask)
        with torch.no_grad():
            g0 = self.constraints(clean, clean)
        lam = {key: torch.zeros_like(g) for key, g in g0.items()}
        # each constraint's valid entries per clip, counted once: its penalty is their mean
        valid = {"bone": clean.frame_mask, "angle": clean.frame_mask, "speed": clean.velocity_mask}
        counts = {
            key: valid[key].to(x.dtype).expand_as(g).flatten(1).sum(1).clamp_min(1) for key, g in g0.items()
        }
        x_adv = x.clone()
        opt = BatchAdam(x_adv, self.lr)
        for _ in range(self.max_iter):
            for _ in range(self.inner_steps):
                xa = x_adv.detach().requires_grad_(True)
                logits = self.classify(xa)
                if target is None:
                    cls = margin_loss(logits, y, None, self.kappa)
                else:
                    cls = nn.functional.cross_entropy(logits, target, reduction="none")
                g = self.constraints(clean, Kinematics(xa, self.layout, mask))
                opt.step(slice(None), self.input_grad(cls + self.lagrangian(g, lam, counts), xa), maskf)
            with torch.no_grad():
                g = self.constraints(clean, Kinematics(x_adv, self.layout, mask))
                lam = self.raise_multipliers(g, lam)
        grad_evals = torch.full((n,), self.max_iter * self.inner_steps, dtype=torch.long, device=x.device)
        iterations = torch.full((n,), self.max_iter, dtype=torch.long, device=x.device)
        return self.result(x_adv, y, target, grad_evals, iterations=iterations)
