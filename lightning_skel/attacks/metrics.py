"""The metrics of docs/METHOD.md section 5: one definition, used by every attack, the logs, attack.py and the
benchmarks.

:func:`per_sample_metrics` gives every metric per clip ``(N,)``; :func:`attack_metrics` aggregates them.
Distances are computed over valid entries only, with the same terms (``tau = 0``) as the attack's
distance, so "delta_bone" here is exactly the attack's bone term without its threshold.

Aggregation: ``success_rate`` over the clips the clean model classified correctly; the perturbation
metrics (means, plus ``*_median``, the true median of :func:`median`) over the successful ones among
those; ``robust_accuracy`` over all clips; ``grad_evals`` and ``forward_evals`` means over successful clips
(``grad_evals_all``, ``forward_evals_all`` over attacked clips). Undefined values (an empty set) are NaN here and null in metrics.json.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import is_success
from lightning_skel.attacks.distances import BoneAngle, BoneLength, JointSpeed, Kinematics, masked_mean
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.layouts import Layout, get_layout

DISTANCE_METRICS = (
    "l2",
    "rms_mm",
    "linf_mm",
    "delta_bone",
    "delta_bone_mm",
    "delta_angle_deg",
    "delta_speed",
    "delta_speed_mm",
    "delta_acc_mm",
)
EMOTION_METRICS = ("emotion_distance", "emotion_kept")


@torch.no_grad()
def per_sample_metrics(
    x: Tensor,
    x_adv: Tensor,
    lengths: Tensor | None,
    layout: str | Layout,
    emotion_model: nn.Module | None = None,
) -> dict[str, Tensor]:
    """Every distance metric of section 5 (:data:`DISTANCE_METRICS`) for each clip, ``(N,)`` each (metres,
    millimetres, degrees, as the names say), between ``x`` and ``x_adv`` ``(N, C, T, V, M)`` in metres over
    their valid entries (``lengths (N,)`` frames, None: all). An ``emotion_model`` adds
    ``emotion_distance`` (mean squared feature change) and ``emotion_kept`` (1.0 where its label holds).

    Example:
        >>> rest = torch.as_tensor(get_layout("ntu25").rest_array).T  # (C, V), metres
        >>> x = rest.reshape(1, 3, 1, 25, 1).repeat(2, 1, 4, 1, 1)  # two still clips of 4 frames
        >>> x_adv = x.clone()
        >>> x_adv[0, 0, :, 3] += 0.01  # clip 0's head moves 1 cm along x in every frame
        >>> m = per_sample_metrics(x, x_adv, None, "ntu25")
        >>> m["linf_mm"], m["rms_mm"], m["delta_speed_mm"]
        (tensor([10.,  0.]), tensor([2., 0.]), tensor([0., 0.]))
    """
    layout = get_layout(layout)
    lengths = (
        torch.full((x.shape[0],), x.shape[2], device=x.device) if lengths is None else lengths.to(x.device)
    )
    mask = F.valid_mask(x, lengths)
    clean, adv = Kinematics(x, layout, mask), Kinematics(x_adv, layout, mask)
    diff = (x_adv - x) * mask.to(x.dtype)
    joint_disp2 = diff.pow(2).sum(1, keepdim=True)  # (N, 1, T, V, M)
    bone_r, bone_m = BoneLength().entries(clean, adv)
    angle_r, angle_m = BoneAngle().entries(clean, adv)
    speed_r, speed_m = JointSpeed().entries(clean, adv)
    out = {
        "l2": diff.flatten(1).norm(dim=1),
        "rms_mm": 1000 * masked_mean(joint_disp2, mask).sqrt(),
        "linf_mm": 1000 * diff.abs().flatten(1).amax(1),
        "delta_bone": masked_mean(bone_r, bone_m),
        "delta_bone_mm": 1000 * masked_mean((adv.bone_lengths - clean.bone_lengths).abs(), bone_m),
        "delta_angle_deg": masked_mean(angle_r, angle_m) * (180 / math.pi),
        "delta_speed": masked_mean(speed_r, speed_m),
        "delta_speed_mm": 1000
        * masked_mean(F.safe_norm(adv.velocity - clean.velocity, dim=1, eps=0.0), speed_m),
        "delta_acc_mm": 1000
        * masked_mean(
            F.safe_norm(adv.acceleration - clean.acceleration, dim=1, eps=0.0), clean.acceleration_mask
        ),
    }
    if emotion_model is not None:
        was_training = emotion_model.training
        emotion_model.eval()
        try:
            phi, phi_adv = emotion_model.forward_features(x), emotion_model.forward_features(x_adv)
            out["emotion_distance"] = (phi_adv - phi).pow(2).mean(1)
            out["emotion_kept"] = (emotion_model(x).argmax(1) == emotion_model(x_adv).argmax(1)).to(x.dtype)
        finally:
            emotion_model.train(was_training)
    return out


def _mean(v: Tensor, m: Tensor) -> float:
    return float(v[m].double().mean()) if m.any() else float("nan")


def median(values: Tensor | np.ndarray | Sequence[float]) -> float:
    """The median of every value, the mean of the two middle ones for an even count (``Tensor.median``
    would give the lower one); NaN for none. The one median of metrics.json, the report and the logs.

    Example:
        >>> median([4.0, 1.0, 3.0, 2.0]), median(torch.tensor([1.0, 5.0, 2.0])), median([])
        (2.5, 2.0, nan)
    """
    v = torch.as_tensor(values).detach().double().flatten()
    return float(v.quantile(0.5)) if v.numel() else float("nan")


def _median(v: Tensor, m: Tensor) -> float:
    return median(v[m])


def attack_metrics(
    x: Tensor,
    x_adv: Tensor,
    lengths: Tensor | None,
    layout: str | Layout,
    y: Tensor,
    pred_clean: Tensor,
    pred_adv: Tensor,
    target: Tensor | None = None,
    grad_evals: Tensor | None = None,
    emotion_model: nn.Module | None = None,
    per_sample: dict[str, Tensor] | None = None,
    budgets: Mapping[str, Sequence[float]] | None = None,
    forward_evals: Tensor | None = None,
) -> dict[str, float]:
    """Aggregate metrics of an attack on a batch (see the module docstring for what is averaged over
    what). ``target`` (or entries of -1) marks a targeted attack. ``per_sample`` may pass precomputed
    :func:`per_sample_metrics`. ``budgets`` maps distance metrics to sizes, e.g. ``{"linf_mm": [20]}``,
    and adds ``robust_accuracy_<metric>_le_<size>`` for each (:func:`robust_accuracy_within`).
    ``grad_evals`` and ``forward_evals``, ``(N,)`` the classifier passes each clip cost (an
    :class:`~lightning_skel.attacks.base.AttackResult`'s), add their means (a gradient-free attack such as
    Square spends forward passes only).

    Example:
        >>> x, y, pred_adv = torch.randn(4, 3, 8, 25, 1), torch.arange(4), torch.tensor([1, 1, 0, 0])
        >>> m = attack_metrics(x, x + 0.01, None, "ntu25", y, y % 3, pred_adv, budgets={"linf_mm": [5]})
        >>> m["num_success"], m["robust_accuracy"], m["robust_accuracy_linf_mm_le_5"], round(m["linf_mm"])
        (2, 0.25, 0.75, 10)
    """
    check_budgets(budgets)
    ps = (
        per_sample if per_sample is not None else per_sample_metrics(x, x_adv, lengths, layout, emotion_model)
    )
    correct = pred_clean == y
    success = is_success(pred_adv, y, target)
    attacked = correct
    won = attacked & success
    out: dict[str, float] = {
        "num_samples": int(y.numel()),
        "num_attacked": int(attacked.sum()),
        "num_success": int(won.sum()),
        "clean_accuracy": float(correct.double().mean()) if y.numel() else float("nan"),
        "success_rate": float(won.sum()) / max(int(attacked.sum()), 1) if attacked.any() else float("nan"),
        "robust_accuracy": float((pred_adv == y).double().mean()) if y.numel() else float("nan"),
    }
    for key, value in ps.items():
        out[key] = _mean(value, won)
        if key in DISTANCE_METRICS:
            out[f"{key}_median"] = _median(value, won)
    for key, evals in (("grad_evals", grad_evals), ("forward_evals", forward_evals)):
        if evals is not None:
            out[key] = _mean(evals.double(), won)
            out[f"{key}_all"] = _mean(evals.double(), attacked)
    for key, sizes in (budgets or {}).items():
        for b in sizes:
            out[f"robust_accuracy_{key}_le_{b:g}"] = robust_accuracy_within(
                y, pred_clean, pred_adv, ps[key], b
            )
    return out


def check_budgets(budgets: Mapping[str, Sequence[float]] | None, what: str = "budgets") -> None:
    """A clear error unless ``budgets`` maps metrics of :data:`DISTANCE_METRICS` to lists of sizes > 0.

    Example:
        >>> check_budgets({"linf_mm": [10, 20]})  # passes
        >>> check_budgets({"linf_mm": [0]})
        Traceback (most recent call last):
        ValueError: budgets.linf_mm: every size must be a number > 0, got [0]
    """
    for key, sizes in (budgets or {}).items():
        if key not in DISTANCE_METRICS:
            raise ValueError(f"{what}: {key!r} is not a distance metric; use one of {DISTANCE_METRICS}")
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
            raise ValueError(f"{what}.{key} must be a non-empty list of sizes, got {sizes!r}")
        bad = [b for b in sizes if not isinstance(b, (int, float)) or not b > 0]
        if bad:
            raise ValueError(f"{what}.{key}: every size must be a number > 0, got {bad}")


def robust_within(y: Tensor, pred_clean: Tensor, pred_adv: Tensor, size: Tensor, budget: float) -> Tensor:
    """``(N,)`` bool: the clip withstands an attack whose success counts only where its adversarial clip is
    within ``budget`` (``size`` per sample, e.g. ``rms_mm``, in the budget's unit): the clean model is right
    and the attack either failed or needed more than ``budget``.

    Example:
        >>> y, pred_clean = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 1])
        >>> pred_adv, rms_mm = torch.tensor([0, 1, 1, 1]), torch.tensor([5.0, 5.0, 30.0, 0.0])
        >>> robust_within(y, pred_clean, pred_adv, rms_mm, 20)  # clip 2 was fooled, but 30 mm away
        tensor([ True, False,  True, False])
    """
    return (pred_clean == y) & ~((pred_adv != y) & (size <= budget))


def robust_accuracy_within(
    y: Tensor, pred_clean: Tensor, pred_adv: Tensor, size: Tensor, budget: float
) -> float:
    """The fraction of clips :func:`robust_within` a budget. For a minimum-distance attack such as ADMM,
    which fools every clip given room, this is the robust accuracy at a perturbation size; swept over
    budgets it is the robust-accuracy curve.

    Example:
        >>> y, pred_clean = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 1])
        >>> pred_adv, rms_mm = torch.tensor([0, 1, 1, 1]), torch.tensor([5.0, 5.0, 30.0, 0.0])
        >>> [robust_accuracy_within(y, pred_clean, pred_adv, rms_mm, budget) for budget in (1, 20, 40)]
        [0.75, 0.5, 0.25]
    """
    robust = robust_within(y, pred_clean, pred_adv, size, budget)
    return float(robust.double().mean()) if y.numel() else float("nan")
