"""The dynamic distance D(x, x') of docs/METHOD.md section 2, built from small differentiable terms.

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


class cached_property:
    """``functools.cached_property`` without the lock it takes before Python 3.12 (which 3.12 removed):
    torch.compile cannot trace a lock, and a compiled ADMM z block reads these properties."""

    def __init__(self, fn) -> None:
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


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
    def triplet_bones(self) -> tuple[Tensor, Tensor]:  # u, v: (N, C, T, K, M) each
        return F.triplet_bones(self.x, self.layout)

    @cached_property
    def triplet_cross(self) -> tuple[Tensor, ...]:  # u x v component by component: 3 or 1 of (N, T, K, M)
        return F.cross_components(*self.triplet_bones)

    @cached_property
    def triplet_sin(self) -> Tensor:  # |u x v|: (N, T, K, M)
        return F.norm_of_components(self.triplet_cross)

    @cached_property
    def triplet_cos(self) -> Tensor:  # u . v: (N, T, K, M)
        u, v = self.triplet_bones
        return (u * v).sum(1)

    @cached_property
    def bone_angles(self) -> Tensor:  # (N, T, K, M): F.bone_angles, from the cached parts
        return torch.atan2(self.triplet_sin, self.triplet_cos)

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
            if key in ("x", "layout", "mask"):
                continue
            if isinstance(value, Tensor):
                out.__dict__[key] = value[idx]
            elif isinstance(value, tuple) and all(isinstance(v, Tensor) for v in value):
                out.__dict__[key] = tuple(v[idx] for v in value)
        return out


HINGE_MODES = ("mean", "entry")


class DistanceTerm(nn.Module):
    """A term of D: ``forward(clean, adv) -> (N,)``; ``value_and_grad(clean, adv)`` also gives its gradient
    with respect to ``adv.x``.

    ``hinge="mean"`` (default): ``relu(mean(r) - tau)``, the sample's mean ratio over valid entries held
    within ``tau``; ``hinge="entry"``: ``mean(relu(r - tau))``, every entry held within ``tau``. The paper
    writes ``g_c = relu(r_c - tau_c)`` with ``r_c`` defined per entry and then averaged; both readings are
    implemented, and docs/METHOD.md section 2 says why the default is ``mean``.

    The bone, angle, speed and l2 terms give their gradient in closed form. ADMM differentiates D on every z
    step, and autograd's graph for it is about 120 small kernels whose fixed cost weighs most once few clips
    are still being attacked: the closed forms are 1.6x faster on 2 UTD-sized clips and 1.3x on 32
    (benchmarks/distance_grad.py, one CPU thread) and are tested equal to autograd's
    (tests/test_distance_grad.py). Other terms fall back to autograd. ``value_and_row_grad`` gives the
    gradient on the samples whose hinge is open only (:func:`active_rows`), which the total accumulates.
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
        self(clean, clean)

    def weights(self, clean: Kinematics, r: Tensor, mask: Tensor) -> Tensor:
        """``mask / count``, broadcastable to ``r``: the masked mean over valid entries as a weighted sum
        (the weights of each sample sum to 1, or to 0 without valid entries). Cached with the clean side."""
        key = f"weights_{self.name}"
        w = clean.__dict__.get(key)
        if w is None:
            m = mask.to(r.dtype)
            count = m.expand_as(r).flatten(1).sum(1).clamp_min(1.0)
            w = clean.__dict__[key] = m / count.view((-1,) + (1,) * (m.dim() - 1))
        return w

    def reduce(self, r: Tensor, w: Tensor, slope: bool = False) -> tuple[Tensor, Tensor | None]:
        """The term ``(N,)`` from its entries ``r`` and weights ``w``, and (``slope=True``) its derivative
        with respect to every entry."""
        dims = tuple(range(1, r.dim()))
        if self.hinge == "entry":
            if not self.tau:
                return (r * w).sum(dims), (w.expand_as(r) if slope else None)
            return (torch.relu(r - self.tau) * w).sum(dims), (w * (r > self.tau) if slope else None)
        mean = (r * w).sum(dims)
        value = torch.relu(mean - self.tau)
        if not slope:
            return value, None
        return value, w * (mean > self.tau).to(r.dtype).view((-1,) + (1,) * (r.dim() - 1))

    def forward(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        r, mask = self.entries(clean, adv)
        return self.reduce(r, self.weights(clean, r, mask))[0]

    def value_and_grad(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        """The term ``(N,)`` and its gradient with respect to ``adv.x``."""
        value, rows, g = self.value_and_row_grad(clean, adv)
        if rows is None:
            return value, g
        return value, adv.x.new_zeros(adv.x.shape).index_copy_(0, rows, g)

    def value_and_row_grad(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor | None, Tensor]:
        """The term ``(N,)``, and its gradient with respect to ``adv.x`` on the samples ``rows`` where it can
        be non-zero (``None``: every sample; the others' gradient is 0); here by autograd on a detached copy
        of ``adv.x``, every sample (terms with a closed form override this)."""
        x = adv.x.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self(clean, Kinematics(x, adv.layout, adv.mask))
            (g,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), None, g


def active_rows(slope: Tensor) -> Tensor | None:
    """The samples where a term's derivative ``slope`` (from :meth:`DistanceTerm.reduce`) is not zero
    everywhere, as indices, or ``None`` when that is every sample.

    A hinge closes the gradient of every sample whose term is within its threshold, and the closed forms
    then compute the rest of the chain rule on the open samples only: with ADMM's defaults on UTD-MHAD
    against HCN the angle hinge is open for 2 % of the clips in the z steps (and for none in 79 % of the
    steps), the bone hinge for half (benchmarks/hinge_activity.py). On a GPU every sample is computed:
    finding the rows makes the host wait for the device, which costs more there than the arithmetic it
    saves; so is it inside torch.compile, whose graph cannot depend on the data."""
    if slope.device.type != "cpu" or torch.compiler.is_compiling():  # compiled: no data-dependent graph
        return None
    active = slope.flatten(1).ne(0).any(1)
    if bool(active.all()):
        return None
    return active.nonzero().squeeze(1)


def _picker(rows: Tensor | None):
    """``t -> t[rows]`` (the identity for ``rows=None``): the open samples of each factor of a gradient."""
    return (lambda t: t) if rows is None else (lambda t: t.index_select(0, rows))


class BoneLength(DistanceTerm):
    name = "bone"

    def _ratio(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor, Tensor]:
        diff = adv.bone_lengths - clean.bone_lengths
        scale = clean.bone_lengths + BONE_EPS
        return diff.abs() / scale, diff, scale

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        return self._ratio(clean, adv)[0], clean.frame_mask

    def value_and_row_grad(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor | None, Tensor]:
        r, diff, scale = self._ratio(clean, adv)
        value, slope = self.reduce(r, self.weights(clean, r, clean.frame_mask), slope=True)
        rows = active_rows(slope)
        pick = _picker(rows)
        # d|l' - l| / (l + eps) = sign(l' - l) / (l + eps) dl', and dl' = (b' / l') . db'
        coef = pick(slope) * torch.sign(pick(diff)) / (pick(scale) * pick(adv.bone_lengths))
        g = F.differences_adjoint(coef.unsqueeze(1) * pick(adv.bone_vectors), adv.layout, "bone")
        return value, rows, g


class BoneAngle(DistanceTerm):
    name = "angle"

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        return (adv.bone_angles - clean.bone_angles).abs(), clean.frame_mask

    def value_and_row_grad(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor | None, Tensor]:
        diff = adv.bone_angles - clean.bone_angles
        r = diff.abs()
        value, slope = self.reduce(r, self.weights(clean, r, clean.frame_mask), slope=True)
        rows = active_rows(slope)
        pick = _picker(rows)
        # theta = atan2(s, c), s = |u x v|, c = u . v: dtheta = (c ds - s dc) / (s^2 + c^2), dc = v.du + u.dv,
        # ds = ((v x w) . du + (w x u) . dv) / s with w = u x v (2D: w scalar, v x w -> w (v_y, -v_x))
        s, c = pick(adv.triplet_sin), pick(adv.triplet_cos)
        k = pick(slope) * torch.sign(pick(diff)) / (s * s + c * c)
        a, b = k * c / s, k * s
        u, v = (pick(t) for t in adv.triplet_bones)
        w = tuple(pick(t) for t in adv.triplet_cross)
        if len(w) == 3:
            vw = torch.stack(F.cross3(v.unbind(1), w), 1)
            wu = torch.stack(F.cross3(w, u.unbind(1)), 1)
        else:
            (w0,) = w
            vw = torch.stack([w0 * v[:, 1], -w0 * v[:, 0]], 1)
            wu = torch.stack([-w0 * u[:, 1], w0 * u[:, 0]], 1)
        a, b = a.unsqueeze(1), b.unsqueeze(1)
        g = torch.cat([a * vw - b * v, a * wu - b * u], dim=3)
        return value, rows, F.differences_adjoint(g, adv.layout, "triplet")


class JointSpeed(DistanceTerm):
    name = "speed"

    def _ratio(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dv = adv.velocity - clean.velocity
        norm = F.safe_norm(dv, dim=1)
        scale = clean.speed + SPEED_EPS
        return (norm - F.SAFE_NORM_AT_ZERO) / scale, dv, norm, scale  # exactly 0 when equal

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        return self._ratio(clean, adv)[0], clean.velocity_mask

    def value_and_row_grad(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor | None, Tensor]:
        r, dv, norm, scale = self._ratio(clean, adv)
        value, slope = self.reduce(r, self.weights(clean, r, clean.velocity_mask), slope=True)
        rows = active_rows(slope)
        pick = _picker(rows)
        coef = pick(slope) / (pick(scale) * pick(norm))
        return value, rows, F.velocity_adjoint(coef.unsqueeze(1) * pick(dv))


class L2(DistanceTerm):
    """``|x' - x|^2`` summed over valid entries (a soft term: no threshold)."""

    name = "l2"

    def prepare(self, clean: Kinematics) -> None:
        """Nothing to cache: the term reads the clean clips and their mask only."""

    def _diff(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        return (adv.x - clean.x) * clean.mask.to(adv.x.dtype)

    def forward(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        return self._diff(clean, adv).pow(2).flatten(1).sum(1)

    def value_and_row_grad(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor | None, Tensor]:
        d = self._diff(clean, adv)
        return d.pow(2).flatten(1).sum(1), None, 2 * d


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
        self,
        clean: Kinematics,
        adv: Kinematics,
        skip: tuple[str, ...] = (),
        known: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted total and each active term, leaving out the terms named in ``skip`` and taking
        those in ``known`` as given."""
        known = known or {}
        parts = {
            k: known[k] if k in known else self.terms[k](clean, adv) for k in self.active if k not in skip
        }
        return self._total(parts, adv), parts

    def value_and_grad(
        self, clean: Kinematics, adv: Kinematics, skip: tuple[str, ...] = ()
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """As :meth:`forward`, with the gradient of the total with respect to ``adv.x``."""
        parts, grad = {}, torch.zeros_like(adv.x)
        for k in self.active:
            if k not in skip:
                parts[k], rows, g = self.terms[k].value_and_row_grad(clean, adv)
                if rows is None:
                    grad.add_(g, alpha=self.weights[k])
                elif rows.numel():
                    grad.index_add_(0, rows, g, alpha=self.weights[k])
        return self._total(parts, adv), parts, grad

    def _total(self, parts: Mapping[str, Tensor], adv: Kinematics) -> Tensor:
        return sum((self.weights[k] * v for k, v in parts.items()), torch.zeros_like(adv.x[:, 0, 0, 0, 0]))

    @staticmethod
    def hinges_zero(total: Tensor, parts: Mapping[str, Tensor]) -> Tensor:
        """``(N,)`` bool: every active hinged term is exactly zero (all its entries within tau)."""
        ok = torch.ones_like(total, dtype=torch.bool)
        for k in HINGED:
            if k in parts:
                ok = ok & (parts[k] <= 0)
        return ok
