"""SMART (Wang, He, Peng, Shao, Yang, Zhou, Hogg, "Understanding the Robustness of Skeleton-based Action
Recognition under Adversarial Attack", CVPR 2021), as the authors' code defines it (docs/METHOD.md section 4).

Gradient descent on ``x'`` from ``x``: the classification gradient and the perceptual gradient are each
scaled to unit L2 norm in every frame and mixed by ``cw``; a clip's update is rescaled when its L2 norm
exceeds ``clip``; a clip stops once it is fooled. ``x (N, C, T, V, M)`` in metres.

``loss="authors"`` (default) is the authors' perceptual loss, sums over entries:

    rw * sum w_v |x' - x|^2 + (1 - rw) * (blw * sum (l' - l)^2 + (1 - blw) * sum |a' - a|^2)

with joint weights ``w_v`` (:func:`joint_weights`: the midline joints double) and the acceleration ``a``
the second difference over ``dt^2``, ``dt = 1/30`` s. ``loss="balanced"`` is the project's earlier
reading: the same three terms as means over valid entries, uniform joint weights, acceleration per frame^2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult, is_success
from lightning_skel.attacks.distances import Kinematics, masked_mean
from lightning_skel.skeleton.layouts import Layout, get_layout
from lightning_skel.utils import check_params

LOSSES = ("authors", "balanced")
# The authors' perceptual loss (SMARTAttacker.perceptualLoss, accLoss): joint weights 0.02, doubled on the
# spine, and the acceleration over dt^2 with dt = 1/30 s.
JOINT_WEIGHT = 0.02
SPINE_WEIGHT = 0.04
DT = 1 / 30


def spine_joints(layout: str | Layout) -> tuple[int, ...]:
    """The joints SMART's loss weights double: those of the body's midline, named neither ``left_*`` nor
    ``right_*`` (spine, neck, head).

    In the authors' 25-joint HDM05 skeleton the doubled joints (indices 10 to 14) are the root and the chain
    above it to the head, exactly its joints of neither side; the same rule names ``spine_base``,
    ``spine_mid``, ``spine_shoulder``, ``neck`` and ``head`` on ``ntu25``, ``hip_center``, ``spine``,
    ``shoulder_center`` and ``head`` on ``kinect20``, ``nose`` and ``neck`` on ``openpose18``, ``nose`` on
    ``coco17``.

    Example:

    >>> spine_joints("kinect20")
    (0, 1, 2, 3)
    """
    layout = get_layout(layout)
    return tuple(
        j for j, name in enumerate(layout.joint_names) if not {"left", "right"} & set(name.split("_"))
    )


def joint_weights(layout: str | Layout, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``(V,)`` SMART's joint weights on ``layout``: ``SPINE_WEIGHT`` (0.04) on :func:`spine_joints`,
    ``JOINT_WEIGHT`` (0.02) elsewhere, as the authors' ``perceptualLoss`` weights their skeleton.

    Example:

    >>> w = joint_weights("kinect20")
    >>> w.shape, (w > 0.03).nonzero().flatten().tolist()  # the spine joints weigh double
    (torch.Size([20]), [0, 1, 2, 3])
    """
    layout = get_layout(layout)
    w = torch.full((layout.num_joints,), JOINT_WEIGHT, dtype=dtype, device=device)
    w[list(spine_joints(layout))] = SPINE_WEIGHT
    return w


def per_frame_unit(g: Tensor) -> Tensor:
    """``g (N, C, T, V, M)`` scaled to unit L2 norm in every frame (over C, V and M); a frame whose gradient is
    exactly zero stays zero.

    The norm is taken of ``g`` divided by its largest magnitude in the frame, so that a gradient of 1e-20
    (a softmax saturated at 1.0 in float32), whose squares underflow, still comes out of unit norm: the
    authors divide by ``norm + 1e-18``, which holds down to gradients of about 1e-18 only.

    Example:

    >>> _ = torch.manual_seed(0)
    >>> g = torch.randn(2, 3, 4, 5, 1)
    >>> g[:, :, 0] = 0  # a frame without gradient
    >>> per_frame_unit(1e-20 * g).pow(2).sum((1, 3, 4)).round().int().tolist()  # squared norm per frame
    [[0, 1, 1, 1], [0, 1, 1, 1]]
    """
    scale = g.abs().amax((1, 3, 4), keepdim=True)
    u = g / torch.where(scale > 0, scale, torch.ones_like(scale))
    # >= 1 where the frame is not zero (its largest entry is 1), 0 where it is
    norm = u.pow(2).sum((1, 3, 4), keepdim=True).sqrt()
    return u / norm.clamp_min(1.0)


def clip_update(step: Tensor, bound: float) -> Tensor:
    """``step (N, ...)`` with every sample whose L2 norm exceeds ``bound`` rescaled to norm ``bound`` (its
    direction kept), as the authors' ``attack`` does with ``clippingThreshold``.

    Example:

    >>> clip_update(torch.tensor([[3.0, 4.0], [0.3, 0.4]]), 1.0)  # norms 5 and 0.5
    tensor([[0.6000, 0.8000],
            [0.3000, 0.4000]])
    """
    norm = step.flatten(1).norm(dim=1).view((-1,) + (1,) * (step.dim() - 1))
    return step * (bound / norm.clamp_min(bound))


@ATTACKS.register("smart")
class SMARTAttack(Attack):
    """SMART (Wang et al., CVPR 2021): perceptually constrained gradient descent on the joint positions.

    Each step, for the clips not yet fooled: the gradients of the classification loss (``-CE(Z, y)``, or
    ``CE(Z, t)`` targeted) and of the perceptual loss (module docstring) are each scaled to unit norm per
    frame, mixed as ``lr * (cw * g_cls + (1 - cw) * g_per)``, rescaled to L2 norm ``clip`` per clip where
    larger, masked and subtracted. A clip whose logits show it fooled is not moved and leaves the loop.

    Arguments:
        model (nn.Module): the classifier, ``x (N, C, T, V, M) -> logits (N, K)``.
        layout (str | Layout): the skeleton layout of ``x`` (bones, midline joints).
        targeted (bool): seek the target label instead of any wrong one. Default: False.
        lr (float): step size of the mixed unit gradients, metres per frame. Default: 0.01 (the authors').
        steps (int): steps at most. Default: 200 (the authors' ``epochs``).
        cw (float): weight of the classification gradient in the mix, in [0, 1]. Default: 0.6.
        rw (float): weight of the joint term of the perceptual loss, in [0, 1]. Default: 0.4.
        blw (float): weight of the bone-length term against acceleration, in [0, 1]. Default: 0.7.
        clip (float): bound of a clip's update L2 norm, metres. Default: 100 (the authors' default, which
            never binds: a step moves each frame by at most ``lr``).
        loss (str): ``"authors"`` (summed terms, midline joints weighted double, acceleration over dt^2)
            or ``"balanced"`` (means over valid entries, uniform weights, acceleration per frame^2).
            Default: ``"authors"``.

    Shapes: ``x (N, C, T, V, M)``, ``y (N,)``; the result's ``grad_evals`` counts one classifier forward and
    backward per step (the perceptual gradient does not use the classifier).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = SMARTAttack(model, "ntu25", steps=5)(x, y)
    >>> tuple(res.x_adv.shape), int(res.grad_evals.max()) <= 5
    ((4, 3, 8, 25, 1), True)
    """

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
        clip: float = 100.0,
        loss: str = "authors",
    ) -> None:
        super().__init__(model, layout, targeted)
        check_params("smart", {
            **{key: (value, 0 <= value <= 1, "in [0, 1]") for key, value in (("cw", cw), ("rw", rw), ("blw", blw))},
            "lr": (lr, lr > 0, "> 0"),
            "steps": (steps, steps >= 1, ">= 1"),
            "clip": (clip, clip > 0, "> 0 (metres)"),
            "loss": (loss, loss in LOSSES, f"one of {LOSSES}"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.lr, self.steps, self.cw, self.rw, self.blw = float(lr), int(steps), cw, rw, blw
        self.clip, self.loss = float(clip), loss
        self._weights: dict[tuple, Tensor] = {}  # joint_weights per (dtype, device), built once

    def perceptual_loss(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        """``(N,)``: ``rw * joint + (1 - rw) * (blw * bone + (1 - blw) * acceleration)``, each term as
        ``loss`` says (module docstring), over the valid entries of ``clean``."""
        if self.loss == "balanced":
            joint = masked_mean((adv.x - clean.x).pow(2).sum(1, keepdim=True), clean.mask)
            bone = masked_mean((adv.bone_lengths - clean.bone_lengths).pow(2), clean.frame_mask)
            acc = masked_mean((adv.acceleration - clean.acceleration).pow(2).sum(1), clean.acceleration_mask)
        else:
            key = (adv.x.dtype, adv.x.device)
            if key not in self._weights:
                self._weights[key] = joint_weights(self.layout, *key).view(1, 1, -1, 1)  # over (N, T, V, M)
            w = self._weights[key]
            sq = (adv.x - clean.x).pow(2).sum(1) * clean.frame_mask  # (N, T, V, M)
            joint = (sq * w).sum((1, 2, 3))
            bone = ((adv.bone_lengths - clean.bone_lengths).pow(2) * clean.frame_mask).sum((1, 2, 3))
            da = (adv.acceleration - clean.acceleration).pow(2).sum(1) * clean.acceleration_mask
            acc = da.sum((1, 2, 3)) / DT**4  # |a' - a|^2 with a = second difference / dt^2
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
            step = self.lr * (self.cw * per_frame_unit(g_cls) + (1 - self.cw) * per_frame_unit(g_per))
            step = clip_update(step * maskf[active], self.clip)
            keep = (~done).to(x.dtype).view(-1, 1, 1, 1, 1)  # samples already fooled are not moved
            x_adv[active] = xa.detach() - step * keep
            active = active[~done]
            self.clips_done(int(done.sum()))
        return self.result(x_adv, y, target, grad_evals)
