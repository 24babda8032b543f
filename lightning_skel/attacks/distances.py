"""The dynamic distance D(x, x') of METHOD.md section 2, built from small differentiable terms.

Every term compares per-entry kinematics of a clean clip and a perturbed one and returns ``(N,)``: the
mean over valid entries (never over the padded tensor) of ``relu(r - tau)``, so ``tau = 0`` gives the plain
mean ratio that the metrics report. The kinematics of a tensor are computed once and shared by all terms
(:class:`Kinematics`): the bone vectors serve the length and the angle terms, the velocity serves the speed
term, and the clean side is computed once per attack.

=========  ==================================================  ============================
term       per entry                                           entries
=========  ==================================================  ============================
bone       ``|l' - l| / (l + eps)``                             (N, T, B, M) valid frames
angle      ``|theta' - theta|``, theta = atan2(|u x v|, u.v)   (N, T, K, M) valid frames
speed      ``|v' - v| / (|v| + eps_v)``, v_t = x_{t+1} - x_t   (N, T-1, V, M) both frames valid
emotion    ``mean((phi(x') - phi(x))^2)``                      one per sample
l2         ``|x' - x|^2`` summed over valid entries             one per sample
=========  ==================================================  ============================
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import torch
from torch import Tensor, nn

from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.layouts import Layout, get_layout

BONE_EPS = 1e-3  # metres: bones are centimetres long at least; guards clips with missing joints
SPEED_EPS = 5e-3  # metres per frame (0.15 m/s at 30 fps): below this a joint counts as still


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over all non-batch dims of ``values`` where ``mask`` (broadcastable) is true: ``(N,)``."""
    m = mask.to(values.dtype).expand_as(values)
    dims = tuple(range(1, values.dim()))
    return (values * m).sum(dims) / m.sum(dims).clamp_min(1.0)


class Kinematics:
    """Lazily computed kinematics of ``x (N, C, T, V, M)`` on ``layout`` with validity ``mask
    (N, 1, T, 1, M)``. Each quantity is computed at most once and shared by every term that needs it."""

    def __init__(self, x: Tensor, layout: Layout, mask: Tensor) -> None:
        self.x, self.layout, self.mask = x, layout, mask

    @cached_property
    def bone_vectors(self) -> Tensor:  # (N, C, T, B, M)
        return F.bone_vectors(self.x, self.layout)

    @cached_property
    def bone_lengths(self) -> Tensor:  # (N, T, B, M)
        return F.safe_norm(self.bone_vectors, dim=1)

    @cached_property
    def bone_angles(self) -> Tensor:  # (N, T, K, M)
        return F.bone_angles(self.x, self.layout)

    @cached_property
    def velocity(self) -> Tensor:  # (N, C, T-1, V, M)
        return F.velocity(self.x)

    @cached_property
    def speed(self) -> Tensor:  # (N, T-1, V, M)
        return F.safe_norm(self.velocity, dim=1)

    @cached_property
    def acceleration(self) -> Tensor:  # (N, C, T-2, V, M)
        return F.acceleration(self.x)

    @cached_property
    def frame_mask(self) -> Tensor:  # (N, T, 1, M)
        return self.mask[:, 0]

    @cached_property
    def velocity_mask(self) -> Tensor:  # (N, T-1, 1, M)
        return F.temporal_mask(self.mask, 1)[:, 0]

    @cached_property
    def acceleration_mask(self) -> Tensor:  # (N, T-2, 1, M)
        return F.temporal_mask(self.mask, 2)[:, 0]

    def subset(self, idx: Tensor) -> Kinematics:
        """The same kinematics restricted to samples ``idx`` (cached values are sliced, not recomputed)."""
        out = Kinematics(self.x[idx], self.layout, self.mask[idx])
        for key, value in self.__dict__.items():
            if key not in ("x", "layout", "mask") and isinstance(value, Tensor):
                out.__dict__[key] = value[idx]
        return out


HINGE_MODES = ("mean", "entry")


class DistanceTerm(nn.Module):
    """A term of D: ``forward(clean, adv) -> (N,)``.

    ``hinge="mean"`` (default): ``relu(mean(r) - tau)``, the sample's mean ratio over valid entries held
    within ``tau``; ``hinge="entry"``: ``mean(relu(r - tau))``, every entry held within ``tau``. METHOD.md
    writes ``g_c = relu(r_c - tau_c)`` with ``r_c`` defined per entry and then averaged; both readings are
    implemented, and the benchmark (docs/RESULTS.md) reports why the default is ``mean``.
    """

    name: str = ""

    def __init__(self, tau: float = 0.0, hinge: str = "mean") -> None:
        super().__init__()
        if tau < 0:
            raise ValueError(f"{self.name} threshold tau must be >= 0, got {tau}")
        if hinge not in HINGE_MODES:
            raise ValueError(f"hinge must be one of {HINGE_MODES}, got {hinge!r}")
        self.tau = float(tau)
        self.hinge = hinge

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        """Per-entry ratios ``r`` and their validity mask (broadcastable)."""
        raise NotImplementedError

    @torch.no_grad()
    def prepare(self, clean: Kinematics) -> None:
        """Compute and cache now what this term reads of the clean side (by comparing it with itself), so
        that every :meth:`Kinematics.subset` an attack takes later slices it instead of recomputing it."""
        self.entries(clean, clean)

    def forward(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        r, mask = self.entries(clean, adv)
        if self.hinge == "entry":
            return masked_mean(torch.relu(r - self.tau) if self.tau else r, mask)
        return torch.relu(masked_mean(r, mask) - self.tau)


class BoneLength(DistanceTerm):
    name = "bone"

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        return (adv.bone_lengths - clean.bone_lengths).abs() / (
            clean.bone_lengths + BONE_EPS
        ), clean.frame_mask


class BoneAngle(DistanceTerm):
    name = "angle"

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        return (adv.bone_angles - clean.bone_angles).abs(), clean.frame_mask


class JointSpeed(DistanceTerm):
    name = "speed"

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        diff = F.safe_norm(adv.velocity - clean.velocity, dim=1) - F.SAFE_NORM_AT_ZERO  # exactly 0 when equal
        return diff / (clean.speed + SPEED_EPS), clean.velocity_mask


class L2(DistanceTerm):
    """``|x' - x|^2`` summed over valid entries (a soft term: no threshold)."""

    name = "l2"

    def prepare(self, clean: Kinematics) -> None:
        """Nothing to cache: the term reads the clean clips and their mask only."""

    def forward(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        d = (adv.x - clean.x) * clean.mask.to(adv.x.dtype)
        return d.pow(2).flatten(1).sum(1)


class EmotionDistance(DistanceTerm):
    """``mean((phi(x') - phi(x))^2)`` with phi the frozen emotion recognizer's penultimate features."""

    name = "emotion"

    def __init__(self, emotion_model: nn.Module) -> None:
        super().__init__(0.0)
        self.emotion_model = emotion_model
        for p in self.emotion_model.parameters():
            p.requires_grad_(False)

    def phi(self, x: Tensor) -> Tensor:
        return self.emotion_model.forward_features(x)

    def prepare(self, clean: Kinematics) -> None:
        self.reference(clean)

    def reference(self, clean: Kinematics) -> Tensor:
        """phi of the clean clips, computed once and cached with their kinematics (and so with every
        :meth:`Kinematics.subset` taken afterwards)."""
        ref = clean.__dict__.get("phi")
        if ref is None:
            with torch.no_grad():
                ref = clean.__dict__["phi"] = self.phi(clean.x)
        return ref

    def forward(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        return (self.phi(adv.x) - self.reference(clean)).pow(2).mean(1)


HINGED = ("bone", "angle", "speed")
DEFAULT_TAU = {"bone": 0.01, "angle": 0.05, "speed": 0.1}


class DynamicDistance(nn.Module):
    """``D(x, x') = sum_c w_c mean(relu(r_c - tau_c)) + w_E d_E + w_2 l2`` (c over bone, angle, speed).

    Terms whose weight is 0 are not computed. ``forward`` returns the total ``(N,)`` and each computed
    term ``(N,)`` by name; :meth:`hinges_zero` says which samples satisfy every hinged constraint.
    """

    def __init__(
        self,
        layout: str | Layout,
        weights: Mapping[str, float] | None = None,
        tau: Mapping[str, float] | None = None,
        emotion_model: nn.Module | None = None,
        hinge: str = "mean",
    ) -> None:
        super().__init__()
        self.layout = get_layout(layout)
        self.weights = {"bone": 1.0, "angle": 1.0, "speed": 1.0, "emotion": 0.0, "l2": 0.0, **(weights or {})}
        unknown = sorted(set(self.weights) - {*HINGED, "emotion", "l2"})
        if unknown:
            raise KeyError(f"unknown distance term(s) {unknown}; known: {[*HINGED, 'emotion', 'l2']}")
        for k, w in self.weights.items():
            if w < 0:
                raise ValueError(f"distance weight {k} must be >= 0, got {w}")
        taus = {**DEFAULT_TAU, **(tau or {})}
        if self.weights["emotion"] > 0 and emotion_model is None:
            raise ValueError(
                "the emotion term has a positive weight but no emotion recognizer was given "
                "(attack.py: emotion_ckpt=PATH; the API: emotion_model=...)"
            )
        terms: dict[str, DistanceTerm] = {
            "bone": BoneLength(taus["bone"], hinge),
            "angle": BoneAngle(taus["angle"], hinge),
            "speed": JointSpeed(taus["speed"], hinge),
            "l2": L2(),
        }
        if emotion_model is not None:
            terms["emotion"] = EmotionDistance(emotion_model)
        self.terms = nn.ModuleDict(terms)

    @property
    def active(self) -> list[str]:
        return [k for k, w in self.weights.items() if w > 0]

    def kinematics(self, x: Tensor, mask: Tensor) -> Kinematics:
        return Kinematics(x, self.layout, mask)

    def reference(self, x: Tensor, mask: Tensor) -> Kinematics:
        """The clean side's kinematics with everything the active terms read computed now, so that the
        subsets an attack takes step after step slice them instead of recomputing them."""
        clean = self.kinematics(x, mask)
        for term in self.active:
            self.terms[term].prepare(clean)
        return clean

    def forward(
        self, clean: Kinematics, adv: Kinematics, skip: tuple[str, ...] = ()
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted total and each active term, leaving out the terms named in ``skip``."""
        parts = {k: self.terms[k](clean, adv) for k in self.active if k not in skip}
        total = sum((self.weights[k] * v for k, v in parts.items()), torch.zeros_like(adv.x[:, 0, 0, 0, 0]))
        return total, parts

    @staticmethod
    def hinges_zero(total: Tensor, parts: Mapping[str, Tensor]) -> Tensor:
        """``(N,)`` bool: every active hinged term is exactly zero (all its entries within tau)."""
        ok = torch.ones_like(total, dtype=torch.bool)
        for k in HINGED:
            if k in parts:
                ok = ok & (parts[k] <= 0)
        return ok
