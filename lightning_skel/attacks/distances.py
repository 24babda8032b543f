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
from typing import ClassVar

import torch
from torch import Tensor, nn

from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.layouts import Layout, get_layout

BONE_EPS = 1e-3  # metres: bones are centimetres long at least; guards clips with missing joints
SPEED_EPS = 5e-3  # metres per frame (0.15 m/s at 30 fps): below this a joint counts as still


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over all non-batch dims of ``values`` where ``mask`` (broadcastable) is true: ``(N,)``.

    Example:

    >>> values = torch.tensor([[1.0, 2.0, 9.0], [4.0, 4.0, 4.0]])
    >>> masked_mean(values, torch.tensor([[True, True, False]]))
    tensor([1.5000, 4.0000])
    """
    m = mask.to(values.dtype).expand_as(values)
    dims = tuple(range(1, values.dim()))
    return (values * m).sum(dims) / m.sum(dims).clamp_min(1.0)


def _rows_of(value, idx: Tensor):
    """``value[idx]`` of a tensor, or of each tensor of a tuple."""
    return tuple(v[idx] for v in value) if isinstance(value, tuple) else value[idx]


def _cat_rows(a, b):
    """``a`` and ``b`` one after the other along dim 0: tensors, or tuples of tensors item by item."""
    if isinstance(a, tuple):
        return tuple(torch.cat([u, v]) for u, v in zip(a, b, strict=True))
    return torch.cat([a, b])


class Kinematics:
    """The kinematics of clips ``x (N, C, T, V, M)`` (metres) on ``layout`` with validity ``mask
    (N, 1, T, 1, M)`` (bool), each computed on first use and kept: the bone vectors serve the length and
    the angle terms, the velocity the speed term, and the clean side of an attack is computed once.

    Every value derived from the clips lives in one store, ``values`` (name to tensor, or tuple of
    tensors, each with one row per clip): the properties below put theirs there, and a distance term
    keeps what it reads of the clean side there too through :meth:`memo` (its entry weights, the emotion
    recognizer's features). :meth:`subset` and :meth:`append` take rows of the whole store, so the rows an
    attack keeps in flight reuse what was computed once for all clips.

    Arguments: ``x`` the clips, ``layout`` a :class:`~lightning_skel.skeleton.layouts.Layout`, ``mask`` the
    validity of each frame and person (``features.valid_mask``), ``values`` an existing store (default
    empty). A plain store and properties rather than ``functools.cached_property``, which takes a lock
    before Python 3.12 that torch.compile cannot trace (ADMM's compiled z step builds the perturbed side).

    Example:

    >>> import torch
    >>> from lightning_skel.skeleton import get_layout
    >>> from lightning_skel.skeleton.features import valid_mask
    >>> x = torch.randn(2, 3, 8, 25, 1)
    >>> kin = Kinematics(x, get_layout("ntu25"), valid_mask(x))
    >>> kin.bone_lengths.shape  # computed now and stored
    torch.Size([2, 8, 24, 1])
    >>> kin.subset(torch.tensor([1])).values["bone_lengths"].shape  # sliced, not recomputed
    torch.Size([1, 8, 24, 1])
    """

    def __init__(self, x: Tensor, layout: Layout, mask: Tensor, values: dict | None = None) -> None:
        self.x, self.layout, self.mask = x, layout, mask
        self.values: dict[str, Tensor | tuple[Tensor, ...]] = {} if values is None else values

    def memo(self, name: str, compute):
        """``values[name]``, computed by ``compute()`` and stored on first use."""
        if name not in self.values:
            self.values[name] = compute()
        return self.values[name]

    @property
    def bone_vectors(self) -> Tensor:  # (N, C, T, B, M)
        return self.memo("bone_vectors", lambda: F.bone_vectors(self.x, self.layout))

    @property
    def bone_lengths(self) -> Tensor:  # (N, T, B, M)
        return self.memo("bone_lengths", lambda: F.safe_norm(self.bone_vectors, dim=1))

    @property
    def triplet_bones(self) -> tuple[Tensor, Tensor]:  # u, v: (N, C, T, K, M) each
        return self.memo("triplet_bones", lambda: F.triplet_bones(self.x, self.layout))

    @property
    def triplet_cross(self) -> tuple[Tensor, ...]:  # u x v component by component: 3 or 1 of (N, T, K, M)
        return self.memo("triplet_cross", lambda: F.cross_components(*self.triplet_bones))

    @property
    def triplet_sin(self) -> Tensor:  # |u x v|: (N, T, K, M)
        return self.memo("triplet_sin", lambda: F.norm_of_components(self.triplet_cross))

    @property
    def triplet_cos(self) -> Tensor:  # u . v: (N, T, K, M)
        return self.memo("triplet_cos", lambda: (self.triplet_bones[0] * self.triplet_bones[1]).sum(1))

    @property
    def bone_angles(self) -> Tensor:  # (N, T, K, M): F.bone_angles, from the cached parts
        return self.memo("bone_angles", lambda: torch.atan2(self.triplet_sin, self.triplet_cos))

    @property
    def velocity(self) -> Tensor:  # (N, C, T-1, V, M)
        return self.memo("velocity", lambda: F.velocity(self.x))

    @property
    def speed(self) -> Tensor:  # (N, T-1, V, M)
        return self.memo("speed", lambda: F.safe_norm(self.velocity, dim=1))

    @property
    def acceleration(self) -> Tensor:  # (N, C, T-2, V, M)
        return self.memo("acceleration", lambda: F.acceleration(self.x))

    @property
    def frame_mask(self) -> Tensor:  # (N, T, 1, M)
        return self.memo("frame_mask", lambda: self.mask[:, 0])

    @property
    def velocity_mask(self) -> Tensor:  # (N, T-1, 1, M)
        return self.memo("velocity_mask", lambda: F.temporal_mask(self.mask, 1)[:, 0])

    @property
    def acceleration_mask(self) -> Tensor:  # (N, T-2, 1, M)
        return self.memo("acceleration_mask", lambda: F.temporal_mask(self.mask, 2)[:, 0])

    def subset(self, idx: Tensor) -> Kinematics:
        """The same kinematics restricted to clips ``idx`` (indices or a boolean mask): every stored value
        is sliced, not recomputed."""
        values = {k: _rows_of(v, idx) for k, v in self.values.items()}
        return Kinematics(self.x[idx], self.layout, self.mask[idx], values)

    def keep(self, rows: Tensor) -> Kinematics:
        """:meth:`subset`: the rows an attack keeps in flight (:class:`~lightning_skel.attacks.base.Rows`)."""
        return self.subset(rows)

    def append(self, other: Kinematics) -> Kinematics:
        """These clips followed by ``other``'s, with the values both have stored (the rows joining an
        attack's batch, :class:`~lightning_skel.attacks.base.Rows`)."""
        shared = [k for k in self.values if k in other.values]
        values = {k: _cat_rows(self.values[k], other.values[k]) for k in shared}
        return Kinematics(
            torch.cat([self.x, other.x]), self.layout, torch.cat([self.mask, other.mask]), values
        )


HINGE_MODES = ("mean", "entry")


class DistanceTerm(nn.Module):
    """A term of the dynamic distance D (docs/METHOD.md section 2): ``forward(clean, adv) -> (N,)`` compares
    the :class:`Kinematics` of clean clips and perturbed ones; ``value_and_grad(clean, adv)`` also gives its
    gradient with respect to ``adv.x``.

    Arguments: ``tau`` (default 0) the hinge threshold, in the term's per-entry unit (relative change, or
    radians for the angle term), ``>= 0``; ``hinge`` (default ``"mean"``) the reading of the hinge:
    ``"mean"``, ``relu(mean(r) - tau)``, the clip's mean ratio over its valid entries held within ``tau``;
    ``"entry"``, ``mean(relu(r - tau))``, every entry held within ``tau``. Liu et al. (arXiv 2406.19815)
    write ``g_c = relu(r_c - tau_c)`` with ``r_c`` per entry, then averaged; both readings are implemented,
    and docs/METHOD.md section 2 says why the default is ``mean``.

    The bone, angle, speed and l2 terms give their gradient in closed form (``value_and_row_grad``, tested
    equal to autograd's in tests/test_distance_grad.py), because an attack differentiates D on every step
    and autograd's graph for it is many small kernels (benchmarks/distance_grad.py, docs/RESULTS.md); other
    terms fall back to autograd. ``value_and_row_grad`` gives the gradient on the clips whose hinge is
    open only (:func:`active_rows`), which :class:`DynamicDistance` accumulates. A term whose class sets
    ``network`` is computed by a network of its own (:class:`EmotionDistance`): an attack evaluates it
    apart from the other terms' arithmetic, and every ``every`` steps only (``every = 1``: each step).

    Shapes: ``clean.x``, ``adv.x`` ``(N, C, T, V, M)`` in metres; the value ``(N,)``.

    Example:

    >>> import torch
    >>> from lightning_skel.skeleton import get_layout
    >>> from lightning_skel.skeleton.features import valid_mask
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(2, 3, 8, 25, 1, dtype=torch.float64)
    >>> clean = Kinematics(x, get_layout("ntu25"), valid_mask(x))
    >>> adv = Kinematics(1.1 * x, clean.layout, clean.mask)  # every bone 10 % longer
    >>> value, grad = BoneLength(tau=0.01).value_and_grad(clean, adv)
    >>> value.shape, grad.shape
    (torch.Size([2]), torch.Size([2, 3, 8, 25, 1]))
    """

    name: str = ""
    network: ClassVar[bool] = False  # computed by a network of its own, apart from the other terms
    every: int = 1  # steps between an attack's evaluations of a network term's gradient

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
        """Compute and store now what this term reads of the clean side (by comparing it with itself), so
        that every :meth:`Kinematics.subset` an attack takes later slices it instead of recomputing it."""
        self(clean, clean)

    def entry_weights(self, clean: Kinematics, r: Tensor, mask: Tensor) -> Tensor:
        """``mask / count``, broadcastable to the entries ``r``: the masked mean over valid entries as a
        weighted sum (each clip's weights sum to 1, or to 0 without valid entries). Stored with the clean
        side (:meth:`Kinematics.memo`)."""

        def compute() -> Tensor:
            m = mask.to(r.dtype)
            count = m.expand_as(r).flatten(1).sum(1).clamp_min(1.0)
            return m / count.view((-1,) + (1,) * (m.dim() - 1))

        return clean.memo(f"entry_weights_{self.name}", compute)

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
        return self.reduce(r, self.entry_weights(clean, r, mask))[0]

    def value_and_grad(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        """The term ``(N,)`` and its gradient with respect to ``adv.x``."""
        value, rows, g = self.value_and_row_grad(clean, adv)
        if rows is None:
            return value, g
        return value, adv.x.new_zeros(adv.x.shape).index_copy_(0, rows, g)

    def value_and_row_grad(
        self, clean: Kinematics, adv: Kinematics, gather_rows: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """The term ``(N,)``, and its gradient with respect to ``adv.x`` on the clips ``rows`` where it can
        be non-zero (``None``: every clip; the others' gradient is 0). ``gather_rows=False`` computes every
        clip (:func:`active_rows`). Here by autograd on a detached copy of ``adv.x``, every clip (terms with
        a closed form override this)."""
        x = adv.x.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self(clean, Kinematics(x, adv.layout, adv.mask))
            (g,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), None, g


def active_rows(slope: Tensor, gather_rows: bool = True) -> Tensor | None:
    """The clips where a term's derivative ``slope`` (from :meth:`DistanceTerm.reduce`) is not zero
    everywhere, as indices, or ``None`` for every clip.

    A hinge closes the gradient of every clip whose term is within its threshold, and the closed forms
    then compute the rest of the chain rule on the open clips only: with ADMM's defaults most clips' angle
    hinge is closed in most z steps (benchmarks/hinge_activity.py, docs/RESULTS.md). Every clip is
    computed (``None``) on a GPU, where finding the rows makes the host wait for the device, which costs
    more than the arithmetic it saves, and where ``gather_rows`` is false: code traced by torch.compile
    passes that, its graph being unable to depend on the data. Either way the values are the same: the
    gathered rows' arithmetic is the full one's, row by row.

    Example:

    >>> slope = torch.tensor([[0.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    >>> active_rows(slope)
    tensor([1])
    >>> active_rows(slope, gather_rows=False) is None  # every clip
    True
    """
    if not gather_rows or slope.device.type != "cpu":
        return None
    active = slope.flatten(1).ne(0).any(1)
    if bool(active.all()):
        return None
    return active.nonzero().squeeze(1)


def _picker(rows: Tensor | None):
    """``t -> t[rows]`` (the identity for ``rows=None``): the open clips of each factor of a gradient."""
    return (lambda t: t) if rows is None else (lambda t: t.index_select(0, rows))


class BoneLength(DistanceTerm):
    """The bone-length term (Zheng et al., arXiv 2005.07151; Liu et al., arXiv 2406.19815): per bone and
    valid frame ``r = |l' - l| / (l + BONE_EPS)``, the relative change of its length ``l`` (metres),
    hinged at ``tau`` (relative change, default 0; DynamicDistance's default 0.01). Entries
    ``(N, T, B, M)``; the value ``(N,)``. Arguments as :class:`DistanceTerm`: ``tau`` (relative change,
    default 0) and ``hinge`` (``"mean"`` or ``"entry"``, default ``"mean"``).

    Example:

    >>> import torch
    >>> from lightning_skel.skeleton import get_layout
    >>> from lightning_skel.skeleton.features import valid_mask
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(2, 3, 8, 25, 1, dtype=torch.float64)
    >>> clean = Kinematics(x, get_layout("ntu25"), valid_mask(x))
    >>> adv = Kinematics(1.1 * x, clean.layout, clean.mask)  # every bone 10 % longer
    >>> value = BoneLength(tau=0.01)(clean, adv)  # the mean relative change, less tau
    >>> torch.allclose(value, torch.full_like(value, 0.1 - 0.01), atol=1e-3)  # 0.1 l / (l + BONE_EPS) - tau
    True
    """

    name = "bone"

    def _ratio(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor, Tensor]:
        diff = adv.bone_lengths - clean.bone_lengths
        scale = clean.bone_lengths + BONE_EPS
        return diff.abs() / scale, diff, scale

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        return self._ratio(clean, adv)[0], clean.frame_mask

    def value_and_row_grad(
        self, clean: Kinematics, adv: Kinematics, gather_rows: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        r, diff, scale = self._ratio(clean, adv)
        value, slope = self.reduce(r, self.entry_weights(clean, r, clean.frame_mask), slope=True)
        rows = active_rows(slope, gather_rows)
        pick = _picker(rows)
        # d|l' - l| / (l + eps) = sign(l' - l) / (l + eps) dl', and dl' = (b' / l') . db'
        coef = pick(slope) * torch.sign(pick(diff)) / (pick(scale) * pick(adv.bone_lengths))
        g = F.differences_adjoint(coef.unsqueeze(1) * pick(adv.bone_vectors), adv.layout, "bone")
        return value, rows, g


class BoneAngle(DistanceTerm):
    """The bone-angle term (Zheng et al., arXiv 2005.07151; Liu et al., arXiv 2406.19815): per angle triplet
    (parent, joint, child) and valid frame ``r = |theta' - theta|`` in radians, ``theta = atan2(|u x v|,
    u . v)`` in ``[0, pi]`` between the bones ``u = x[parent] - x[joint]`` and ``v = x[child] - x[joint]``
    (2D clips: the scalar cross product), hinged at ``tau`` (radians, default 0; DynamicDistance's default
    0.05). Entries ``(N, T, K, M)``; the value ``(N,)``. Arguments as :class:`DistanceTerm`: ``tau``
    (radians, default 0) and ``hinge`` (``"mean"`` or ``"entry"``, default ``"mean"``).

    Example:

    >>> import torch
    >>> from lightning_skel.skeleton import get_layout
    >>> from lightning_skel.skeleton.features import valid_mask
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(2, 3, 8, 25, 1, dtype=torch.float64)
    >>> clean = Kinematics(x, get_layout("ntu25"), valid_mask(x))
    >>> adv = Kinematics(1.1 * x, clean.layout, clean.mask)  # every bone 10 % longer
    >>> BoneAngle(tau=0.05)(clean, adv)  # a scaling keeps every angle
    tensor([0., 0.], dtype=torch.float64)
    """

    name = "angle"

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        return (adv.bone_angles - clean.bone_angles).abs(), clean.frame_mask

    def value_and_row_grad(
        self, clean: Kinematics, adv: Kinematics, gather_rows: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        diff = adv.bone_angles - clean.bone_angles
        r = diff.abs()
        value, slope = self.reduce(r, self.entry_weights(clean, r, clean.frame_mask), slope=True)
        rows = active_rows(slope, gather_rows)
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
    """The joint-speed term (Zheng et al., arXiv 2005.07151; Liu et al., arXiv 2406.19815): per joint and
    pair of valid consecutive frames ``r = (|v' - v| - 1e-6) / (|v| + SPEED_EPS)``, the change of the
    velocity ``v_t = x_{t+1} - x_t`` (metres per frame) relative to the clean speed (the ``1e-6``, the safe
    norm of a zero vector, makes ``r`` exactly 0 when ``v' = v``), hinged at ``tau`` (relative change,
    default 0; DynamicDistance's default 0.1). Entries ``(N, T-1, V, M)``; the value ``(N,)``. Arguments
    as :class:`DistanceTerm`: ``tau`` (relative change, default 0) and ``hinge`` (``"mean"`` or
    ``"entry"``, default ``"mean"``).

    Example:

    >>> import torch
    >>> from lightning_skel.skeleton import get_layout
    >>> from lightning_skel.skeleton.features import valid_mask
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(2, 3, 8, 25, 1, dtype=torch.float64)
    >>> clean = Kinematics(x, get_layout("ntu25"), valid_mask(x))
    >>> adv = Kinematics(1.1 * x, clean.layout, clean.mask)  # every bone 10 % longer
    >>> value, grad = JointSpeed(tau=0.05).value_and_grad(clean, adv)  # speeds 10 % up, tau 5 %
    >>> bool((value > 0).all()), grad.shape
    (True, torch.Size([2, 3, 8, 25, 1]))
    """

    name = "speed"

    def _ratio(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dv = adv.velocity - clean.velocity
        norm = F.safe_norm(dv, dim=1)
        scale = clean.speed + SPEED_EPS
        return (norm - F.SAFE_NORM_AT_ZERO) / scale, dv, norm, scale  # exactly 0 when equal

    def entries(self, clean: Kinematics, adv: Kinematics) -> tuple[Tensor, Tensor]:
        return self._ratio(clean, adv)[0], clean.velocity_mask

    def value_and_row_grad(
        self, clean: Kinematics, adv: Kinematics, gather_rows: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        r, dv, norm, scale = self._ratio(clean, adv)
        value, slope = self.reduce(r, self.entry_weights(clean, r, clean.velocity_mask), slope=True)
        rows = active_rows(slope, gather_rows)
        pick = _picker(rows)
        coef = pick(slope) / (pick(scale) * pick(norm))
        return value, rows, F.velocity_adjoint(coef.unsqueeze(1) * pick(dv))


class L2(DistanceTerm):
    """The squared l2 distance ``|x' - x|^2`` (square metres) summed over the valid entries of
    ``(N, C, T, V, M)``: a soft term, with no threshold. The value ``(N,)``. Arguments as
    :class:`DistanceTerm`, accepted for a uniform constructor and without effect: ``tau`` (default 0) and
    ``hinge`` (default ``"mean"``); the term has no hinge.

    Example:

    >>> import torch
    >>> from lightning_skel.skeleton import get_layout
    >>> from lightning_skel.skeleton.features import valid_mask
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(2, 3, 8, 25, 1, dtype=torch.float64)
    >>> clean = Kinematics(x, get_layout("ntu25"), valid_mask(x))
    >>> adv = Kinematics(1.1 * x, clean.layout, clean.mask)  # every bone 10 % longer
    >>> torch.allclose(L2()(clean, adv), (0.1 * x).pow(2).flatten(1).sum(1))
    True
    """

    name = "l2"

    def prepare(self, clean: Kinematics) -> None:
        """Nothing to store: the term reads the clean clips and their mask only."""

    def _diff(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        return (adv.x - clean.x) * clean.mask.to(adv.x.dtype)

    def forward(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        return self._diff(clean, adv).pow(2).flatten(1).sum(1)

    def value_and_row_grad(
        self, clean: Kinematics, adv: Kinematics, gather_rows: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        d = self._diff(clean, adv)
        return d.pow(2).flatten(1).sum(1), None, 2 * d


class EmotionDistance(DistanceTerm):
    """The emotion term of Liu et al. (arXiv 2406.19815): ``d_E = mean_k (phi_k(x') - phi_k(x))^2``, phi
    the frozen emotion recognizer's penultimate features (docs/METHOD.md section 7); no threshold, one
    value per clip ``(N,)``, its gradient by autograd through the recognizer.

    Arguments: ``emotion_model`` an ``nn.Module`` with ``forward_features(x (N, C, T, V, M)) -> (N, F)``
    (its parameters are frozen here); ``every`` (default 1, ``>= 1``) how often an attack recomputes the
    term's gradient, in its steps: ``k > 1`` linearises the term, the gradient recomputed every k steps and
    reused in between (:meth:`DynamicDistance.network_grad`). A network term (:class:`DistanceTerm`): ADMM
    runs the recognizer apart from the compiled arithmetic of the other terms.

    Example:

    >>> import torch
    >>> from lightning_skel.skeleton import get_layout
    >>> from lightning_skel.skeleton.features import valid_mask
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(2, 3, 8, 25, 1, dtype=torch.float64)
    >>> clean = Kinematics(x, get_layout("ntu25"), valid_mask(x))
    >>> adv = Kinematics(1.1 * x, clean.layout, clean.mask)  # every bone 10 % longer
    >>> class Features(torch.nn.Module):  # a stand-in recognizer: phi = the first 4 coordinates
    ...     def forward_features(self, x):
    ...         return x.flatten(1)[:, :4]
    >>> term = EmotionDistance(Features(), every=5)
    >>> term(clean, Kinematics(x + 1, clean.layout, clean.mask))  # each feature moved by 1
    tensor([1., 1.], dtype=torch.float64)
    """

    name = "emotion"
    network = True

    def __init__(self, emotion_model: nn.Module, every: int = 1) -> None:
        super().__init__(0.0)
        _check_every("every", every)
        self.emotion_model = emotion_model
        self.every = every
        for p in self.emotion_model.parameters():
            p.requires_grad_(False)

    def phi(self, x: Tensor) -> Tensor:
        return self.emotion_model.forward_features(x)

    def prepare(self, clean: Kinematics) -> None:
        self.reference(clean)

    def reference(self, clean: Kinematics) -> Tensor:
        """phi of the clean clips, computed once and stored with their kinematics (and so with every
        :meth:`Kinematics.subset` taken afterwards)."""

        def compute() -> Tensor:
            with torch.no_grad():
                return self.phi(clean.x)

        return clean.memo("phi", compute)

    def forward(self, clean: Kinematics, adv: Kinematics) -> Tensor:
        return (self.phi(adv.x) - self.reference(clean)).pow(2).mean(1)


HINGED = ("bone", "angle", "speed")
DEFAULT_TAU = {"bone": 0.01, "angle": 0.05, "speed": 0.1}


def _check_every(name: str, every) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {every!r}")


class DynamicDistance(nn.Module):
    """The dynamic distance of Liu et al. (arXiv 2406.19815), on the bone, angle and speed constraints of
    Zheng et al. (arXiv 2005.07151), as docs/METHOD.md section 2 states it:

        D(x, x') = sum_c w_c g_c + w_E d_E + w_2 l2       (c over bone, angle, speed)

    with ``g_c`` the hinged terms (:class:`BoneLength`, :class:`BoneAngle`, :class:`JointSpeed`), ``d_E``
    the emotion term (:class:`EmotionDistance`) and ``l2`` (:class:`L2`). Terms whose weight is 0 are not
    computed.

    Arguments:
        layout: the skeleton layout (name or :class:`~lightning_skel.skeleton.layouts.Layout`).
        weights: each term's weight ``>= 0`` by name (default bone, angle, speed 1; emotion, l2 0; l2 in
            1/m^2); an unknown name is an error listing the known ones.
        tau: the hinge thresholds (default bone 0.01 and speed 0.1, relative changes; angle 0.05 rad).
        emotion_model: the emotion recognizer (``forward_features``); needed for a positive emotion weight.
        hinge: ``"mean"`` (default) or ``"entry"``, the hinges' reading (:class:`DistanceTerm`).
        emotion_every: the emotion term's ``every`` (default 1, exact): an attack recomputes its gradient
            every this many steps and reuses it in between (:meth:`network_grad`).

    ``forward(clean, adv)`` returns the total ``(N,)`` and each computed term ``(N,)`` by name;
    :meth:`value_and_grad` adds the gradient with respect to ``adv.x`` ``(N, C, T, V, M)``;
    :meth:`hinges_zero` says which clips satisfy every hinged constraint. The terms computed by a network
    of their own (:attr:`network`, the emotion term) have their own entry points, :meth:`network_grad` and
    :meth:`network_at`, so that an attack runs them apart from the other terms' (compiled) arithmetic
    without naming them.

    Example:

    >>> import torch
    >>> from lightning_skel.skeleton.features import valid_mask
    >>> x = torch.randn(2, 3, 8, 25, 1, dtype=torch.float64)
    >>> dist = DynamicDistance("ntu25", weights={"l2": 0.5})
    >>> clean = dist.reference(x, valid_mask(x))  # the clean side, computed once
    >>> total, parts, grad = dist.value_and_grad(clean, dist.kinematics(1.1 * x, clean.mask))
    >>> list(parts), total.shape, grad.shape
    (['bone', 'angle', 'speed', 'l2'], torch.Size([2]), torch.Size([2, 3, 8, 25, 1]))
    """

    def __init__(
        self,
        layout: str | Layout,
        weights: Mapping[str, float] | None = None,
        tau: Mapping[str, float] | None = None,
        emotion_model: nn.Module | None = None,
        hinge: str = "mean",
        emotion_every: int = 1,
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
        _check_every("emotion_every", emotion_every)
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
            terms["emotion"] = EmotionDistance(emotion_model, emotion_every)
        self.terms = nn.ModuleDict(terms)

    @property
    def active(self) -> list[str]:
        """The terms of positive weight, in the order the total adds them."""
        return [k for k, w in self.weights.items() if w > 0]

    @property
    def network(self) -> list[str]:
        """The active terms computed by a network of their own (:attr:`DistanceTerm.network`)."""
        return [k for k in self.active if self.terms[k].network]

    @property
    def every(self) -> int:
        """The network terms' ``every`` (1 without network terms): steps between their gradients."""
        return max((self.terms[k].every for k in self.network), default=1)

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
        self, clean: Kinematics, adv: Kinematics, skip: tuple[str, ...] = (), gather_rows: bool = True
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """As :meth:`forward`, with the gradient of the total with respect to ``adv.x``; ``gather_rows``
        as :func:`active_rows` (false where torch.compile traces the call)."""
        parts, grad = {}, torch.zeros_like(adv.x)
        for k in self.active:
            if k not in skip:
                parts[k], rows, g = self.terms[k].value_and_row_grad(clean, adv, gather_rows)
                if rows is None:
                    grad.add_(g, alpha=self.weights[k])
                elif rows.numel():
                    grad.index_add_(0, rows, g, alpha=self.weights[k])
        return self._total(parts, adv), parts, grad

    def network_value_and_grad(self, clean: Kinematics, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The network terms at clips ``x`` ``(n, C, T, V, M)`` of the rows ``clean``: their values ``(n,)``
        by name, and the gradient of their weighted sum with respect to ``x``, made contiguous (a network's
        input gradient can come in any memory layout, and a compiled step would take each as another
        graph)."""
        values, grad = {}, None
        for k in self.network:
            values[k], g = self.terms[k].value_and_grad(clean, self.kinematics(x, clean.mask))
            g = self.weights[k] * g
            grad = g if grad is None else grad + g
        return values, grad.contiguous()

    def network_grad(
        self, step: int, clean: Kinematics, delta: Tensor, carried: Tensor | None
    ) -> Tensor | None:
        """The network terms' weighted gradient for step ``step`` (from 0) of a block of steps on the
        perturbations ``delta`` of the clips ``clean``: recomputed at ``clean.x + delta`` at every step
        (``every = 1``), or, linearised, at steps ``every, 2 every, ...``; in between, and at step 0 of a
        linearised block, ``carried`` (the gradient taken where the block starts, :meth:`network_at`). None
        without network terms."""
        if not self.network or (step % self.every or (step == 0 and self.every > 1)):
            return carried
        return self.network_value_and_grad(clean, clean.x + delta)[1]

    def network_at(self, clean: Kinematics, x: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        """The network terms' values ``(n,)`` at candidates ``x`` (for :meth:`forward`'s ``known``) and,
        when they are linearised (``every > 1``), their weighted gradient there, which starts the next
        block of steps from these candidates (else None)."""
        if not self.network:
            return {}, None
        if self.every > 1:
            return self.network_value_and_grad(clean, x)
        with torch.no_grad():
            adv = self.kinematics(x, clean.mask)
            return {k: self.terms[k](clean, adv) for k in self.network}, None

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
