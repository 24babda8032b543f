"""Kinematic features of skeleton sequences and their normalisation.

All functions take ``x: (N, C, T, V, M)`` tensors (C coordinates, T frames, V joints, M persons), read the
topology from a :class:`~lightning_skel.skeleton.layouts.Layout`, are differentiable, and are vectorised
over samples, frames, joints and persons.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from lightning_skel.skeleton.layouts import GAIT16_JOINTS, Layout, get_layout

_EPS = 1e-12
SAFE_NORM_AT_ZERO = _EPS**0.5  # safe_norm of a zero vector


@functools.lru_cache(maxsize=64)
def _indices(layout_name: str, kind: str, device: torch.device) -> tuple[Tensor, ...]:
    """The layout's bone or triplet index arrays as tensors on ``device``, built once per device."""
    arrays = getattr(get_layout(layout_name), kind)
    return tuple(torch.as_tensor(a, dtype=torch.long, device=device) for a in arrays)


def safe_norm(v: Tensor, dim: int, eps: float = _EPS) -> Tensor:
    """Euclidean norm of ``v`` along ``dim`` with a finite gradient at zero: ``sqrt(sum v^2 + eps)``, with
    ``eps`` 1e-12 by default.

    Example:
        >>> safe_norm(torch.tensor([[3.0, 4.0], [0.0, 0.0]]), dim=1)  # sqrt(eps) at zero
        tensor([5.0000e+00, 1.0000e-06])
    """
    return torch.sqrt((v * v).sum(dim) + eps)


_MATRICES: dict[tuple, Tensor] = {}


def _difference_matrix(layout_name: str, kind: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The matrix of :func:`_build_difference_matrix`, built once per layout, kind, device and dtype. A plain
    dict rather than ``functools.lru_cache``: torch.compile traces a dict lookup to the cached tensor, but
    traces through an lru_cache into the numpy that builds it, which splits the compiled graph."""
    key = (layout_name, kind, device, dtype)
    w = _MATRICES.get(key)
    if w is None:
        w = _MATRICES[key] = _build_difference_matrix(layout_name, kind, device, dtype)
    return w


def _build_difference_matrix(layout_name: str, kind: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(V, K)`` matrix ``W`` of 0 and +-1 with ``x @ W`` the joint differences of the layout: the bones
    ``x[child] - x[parent]`` (``kind="bone"``, K = B), the two bones of every triplet, ``x[parent] -
    x[joint]`` then ``x[child] - x[joint]`` (``kind="triplet"``, K = 2 x triplets), or the bone modality,
    column ``j`` the bone of joint ``j`` to its parent and zero at the root (``kind="joint_bone"``, K = V),
    the same on the tree of the official 2s-AGCN NTU graph for ``ntu25`` (``kind="joint_bone_agcn"``).

    Written as a product rather than indexing because its backward is a product too, where indexing's
    backward is a scatter-add: the attacks differentiate these on every step, and the product is the faster
    of the two on CPU (benchmarks/distance_grad.py, docs/RESULTS.md; the same values: one rounding per entry
    either way).
    """
    layout = get_layout(layout_name)
    if kind == "bone":
        child, parent = layout.bone_index
        plus, minus, cols, k = child, parent, np.arange(len(child)), len(child)
    elif kind == "triplet":
        p, j, c = layout.triplet_index
        plus, minus = np.concatenate([p, c]), np.concatenate([j, j])
        cols, k = np.arange(len(plus)), len(plus)
    elif kind in ("joint_bone", "joint_bone_agcn"):
        if kind == "joint_bone_agcn":
            # imported here: lightning_skel.models imports this module
            from lightning_skel.models.graph import official_ntu_graph

            layout = official_ntu_graph()
        child, parent = layout.bone_index
        plus, minus, cols, k = child, parent, child, layout.num_joints
    else:
        raise KeyError(f"unknown difference kind {kind!r}")
    w = np.zeros((layout.num_joints, k), dtype=np.float64)
    np.add.at(w, (plus, cols), 1.0)
    np.add.at(w, (minus, cols), -1.0)
    return torch.as_tensor(w, dtype=dtype, device=device)


def _differences(x: Tensor, layout: Layout | str, kind: str) -> Tensor:
    w = _difference_matrix(get_layout(layout).name, kind, x.device, x.dtype)
    return torch.einsum("nctvm,vk->nctkm", x, w)


def differences_adjoint(g: Tensor, layout: Layout | str, kind: str) -> Tensor:
    """The adjoint of the joint differences ``kind`` ("bone" or "triplet"): a gradient with respect to the
    differences ``(N, C, T, K, M)`` mapped to one with respect to the joints ``(N, C, T, V, M)``.

    Example:
        >>> x = torch.randn(2, 3, 4, 16, 1, dtype=torch.float64)
        >>> g = torch.randn(2, 3, 4, 15, 1, dtype=torch.float64)  # one value per bone
        >>> lhs = (bone_vectors(x, "gait16") * g).sum()
        >>> rhs = (x * differences_adjoint(g, "gait16", "bone")).sum()
        >>> bool(torch.isclose(lhs, rhs))  # <W x, g> = <x, W^T g>
        True
    """
    w = _difference_matrix(get_layout(layout).name, kind, g.device, g.dtype)
    return torch.einsum("nctkm,vk->nctvm", g, w)


def bone_vectors(x: Tensor, layout: Layout | str) -> Tensor:
    """``x[child] - x[parent]`` for every bone: ``(N, C, T, V, M) -> (N, C, T, B, M)``.

    Example:
        >>> x = torch.as_tensor(get_layout("gait16").rest_array).T.reshape(1, 3, 1, 16, 1)  # rest pose (m)
        >>> bone_vectors(x, "gait16")[0, :, 0, 0, 0]  # spine - root
        tensor([0.0000, 0.2300, 0.0000])
    """
    return _differences(x, layout, "bone")


def bone_lengths(x: Tensor, layout: Layout | str) -> Tensor:
    """The length of every bone of ``layout`` (``B`` of them, in joint order), in the units of ``x``:
    ``(N, C, T, V, M) -> (N, T, B, M)``. Never below ``sqrt(eps)`` (:func:`safe_norm`).

    Example:
        >>> x = torch.as_tensor(get_layout("gait16").rest_array).T.reshape(1, 3, 1, 16, 1)  # rest pose (m)
        >>> lengths = bone_lengths(x, "gait16")
        >>> lengths.shape, round(lengths[0, 0, 0, 0].item(), 2)  # (N, T, B, M); root-spine
        (torch.Size([1, 1, 15, 1]), 0.23)
    """
    return safe_norm(bone_vectors(x, layout), dim=1)


def cross3(a: tuple[Tensor, ...], b: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """The cross product ``a x b`` of 3D vectors given component by component: ``a`` and ``b`` are three
    tensors each (x, y, z, any one shape), and so is the result.

    Example:

    >>> u, v = torch.randn(2, 4, 3, 10, dtype=torch.float64)  # (N, C=3, K) each
    >>> w = torch.stack(cross3(u.unbind(1), v.unbind(1)), 1)
    >>> torch.allclose(w, torch.linalg.cross(u, v, dim=1))
    True
    """
    a0, a1, a2 = a
    b0, b1, b2 = b
    return a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0


def cross_components(u: Tensor, v: Tensor) -> tuple[Tensor, ...]:
    """The components of ``u x v`` along dim 1: three for 3D vectors, one (``u_x v_y - u_y v_x``) for 2D.

    Component by component: torch.cross copies its strided inputs, which doubles the cost of the angles'
    forward and backward (they run on every step of the attacks).

    Example:
        >>> u, v = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])  # (N, C)
        >>> cross_components(u, v)  # x, y, z of u x v
        (tensor([0.]), tensor([0.]), tensor([1.]))
        >>> cross_components(u[:, :2], v[:, :2])  # 2D: u_x v_y - u_y v_x
        (tensor([1.]),)
    """
    if u.shape[1] == 3:
        return cross3(u.unbind(1), v.unbind(1))
    if u.shape[1] == 2:
        return (u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0],)
    raise ValueError(f"bone angles need 2 or 3 coordinate channels, got C={u.shape[1]}")


def norm_of_components(w: tuple[Tensor, ...]) -> Tensor:
    """``sqrt(sum w_i^2 + eps)`` of a vector given component by component (as :func:`safe_norm`).

    Example:
        >>> round(norm_of_components((torch.tensor(3.0), torch.tensor(4.0))).item(), 4)
        5.0
    """
    sq = w[0] * w[0]
    for c in w[1:]:
        sq = sq + c * c
    return torch.sqrt(sq + _EPS)


def _cross_norm(u: Tensor, v: Tensor) -> Tensor:
    """``|u x v|`` along dim 1 for 3D vectors, ``|u_x v_y - u_y v_x|`` for 2D ones."""
    return norm_of_components(cross_components(u, v))


def triplet_bones(x: Tensor, layout: Layout | str) -> tuple[Tensor, Tensor]:
    """The two bones of every angle triplet, ``u = x[parent] - x[joint]`` and ``v = x[child] - x[joint]``:
    each ``(N, C, T, K, M)``.

    Example:
        >>> u, v = triplet_bones(torch.zeros(2, 3, 8, 16, 1), "gait16")
        >>> u.shape, len(get_layout("gait16").triplets)  # (N, C, T, K, M)
        (torch.Size([2, 3, 8, 12, 1]), 12)
    """
    u, v = _differences(x, layout, "triplet").chunk(2, dim=3)
    return u, v


def angle_between(u: Tensor, v: Tensor) -> Tensor:
    """Angle between vectors along dim 1, ``atan2(|u x v|, u . v)`` in ``[0, pi]`` (stable where acos is
    not, with finite gradients for collinear vectors).

    Example:
        >>> u, v = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])  # (N, C)
        >>> angle_between(u, v)  # pi / 2
        tensor([1.5708])
    """
    return torch.atan2(_cross_norm(u, v), (u * v).sum(1))


def bone_angles(x: Tensor, layout: Layout | str) -> Tensor:
    """Angle at each triplet's middle joint between its two bones, ``atan2(|u x v|, u . v)``: ``(N, T, K, M)``.

    ``u = x[parent] - x[joint]`` and ``v = x[child] - x[joint]``; radians in ``[0, pi]``.

    Example:
        >>> x = torch.as_tensor(get_layout("gait16").rest_array).T.reshape(1, 3, 1, 16, 1)  # rest pose (m)
        >>> angles = bone_angles(x, "gait16")
        >>> angles.shape, round(angles[0, 0, 0, 0].item(), 4)  # (N, T, K, M); root-spine-neck is straight
        (torch.Size([1, 1, 12, 1]), 3.1416)
    """
    return angle_between(*triplet_bones(x, layout))


def velocity(x: Tensor) -> Tensor:
    """``v_t = x_{t+1} - x_t``: ``(N, C, T, V, M) -> (N, C, T-1, V, M)``.

    Example:
        >>> x = torch.arange(4.0).view(1, 1, 4, 1, 1)  # one coordinate, 1 m per frame
        >>> velocity(x).flatten()
        tensor([1., 1., 1.])
    """
    return x[:, :, 1:] - x[:, :, :-1]


def velocity_adjoint(g: Tensor) -> Tensor:
    """The adjoint of :func:`velocity`: a gradient ``(N, C, T-1, V, M)`` with respect to the velocity mapped
    to one ``(N, C, T, V, M)`` with respect to the positions: ``g_{t-1} - g_t``, with ``g`` zero outside its
    frames (the first frame ``-g_0``, the last ``g_{T-2}``). One form for eager and compiled code:
    torch.compile fuses the concatenation into one pass, and its values are those of any other form (one
    subtraction or negation per entry).

    Example:
        >>> g = torch.ones(1, 1, 3, 1, 1)  # the gradient of sum(velocity(x)) = x_last - x_first
        >>> velocity_adjoint(g).flatten()
        tensor([-1.,  0.,  0.,  1.])
    """
    n, c, t, v, m = g.shape
    if t == 0:  # a one-frame clip has no velocity
        return g.new_zeros((n, c, 1, v, m))
    return torch.cat([-g[:, :, :1], g[:, :, :-1] - g[:, :, 1:], g[:, :, -1:]], 2)


def acceleration(x: Tensor) -> Tensor:
    """``a_t = x_{t+1} - 2 x_t + x_{t-1}``: ``(N, C, T, V, M) -> (N, C, T-2, V, M)``.

    Example:
        >>> x = (torch.arange(4.0) ** 2).view(1, 1, 4, 1, 1)
        >>> acceleration(x).flatten()
        tensor([2., 2.])
    """
    return x[:, :, 2:] - 2 * x[:, :, 1:-1] + x[:, :, :-2]


def valid_mask(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Boolean ``(N, 1, T, 1, M)``: frame before ``lengths`` and person present (some joint non-zero).

    Example:
        >>> x = torch.ones(2, 3, 4, 25, 2)
        >>> x[..., 1] = 0  # no second person
        >>> valid_mask(x, torch.tensor([4, 2]))[:, 0, :, 0]  # (N, T, M)
        tensor([[[ True, False],
                 [ True, False],
                 [ True, False],
                 [ True, False]],
        <BLANKLINE>
                [[ True, False],
                 [ True, False],
                 [False, False],
                 [False, False]]])
    """
    n, _, t, _, _ = x.shape
    present = (x != 0).any(dim=1, keepdim=True).any(dim=3, keepdim=True)  # (N, 1, T, 1, M)
    if lengths is None:
        return present
    frames = torch.arange(t, device=x.device).view(1, 1, t, 1, 1)
    return present & (frames < lengths.to(x.device).view(n, 1, 1, 1, 1))


def split_score(x: Tensor, score_channel: bool) -> tuple[Tensor, Tensor | None]:
    """Coordinates and keypoint scores of an input: with ``score_channel``, ``x (N, C + 1, T, V, M)`` holds
    C >= 2 coordinates then the score (the ST-GCN Kinetics input x, y, score), and the result is the views
    ``(N, C, T, V, M)`` and ``(N, 1, T, V, M)``; without it, ``(x, None)``. A ``ValueError`` names the
    shape when ``x`` cannot hold coordinates and a score.

    Example:
        >>> x = torch.rand(2, 3, 8, 18, 1)  # image x, y, then confidence
        >>> coords, score = split_score(x, True)
        >>> coords.shape, score.shape, torch.equal(join_score(coords, score), x)
        (torch.Size([2, 2, 8, 18, 1]), torch.Size([2, 1, 8, 18, 1]), True)
    """
    if not score_channel:
        return x, None
    if x.dim() != 5 or x.shape[1] < 3:
        raise ValueError(
            "an input with a score channel is (N, C + 1, T, V, M): C >= 2 coordinates, then the keypoint "
            f"score; got shape {tuple(x.shape)}"
        )
    return x[:, :-1], x[:, -1:]


def join_score(coords: Tensor, score: Tensor | None) -> Tensor:
    """The inverse of :func:`split_score`: ``coords (N, C, T, V, M)`` with ``score (N, 1, T, V, M)`` as the
    last channel, or ``coords`` itself when ``score`` is None.

    Example:
        >>> coords, score = torch.zeros(1, 2, 8, 18, 1), torch.ones(1, 1, 8, 18, 1)
        >>> join_score(coords, score).shape, join_score(coords, None) is coords
        (torch.Size([1, 3, 8, 18, 1]), True)
    """
    return coords if score is None else torch.cat([coords, score.to(coords.dtype)], dim=1)


def temporal_mask(mask: Tensor, order: int) -> Tensor:
    """Mask of finite differences of ``order`` (1: velocity, 2: acceleration): all frames involved valid.

    Example:
        >>> mask = torch.tensor([True, True, True, False]).view(1, 1, 4, 1, 1)  # (N, 1, T, 1, M)
        >>> temporal_mask(mask, 1).flatten(), temporal_mask(mask, 2).flatten()
        (tensor([ True,  True, False]), tensor([ True, False]))
    """
    out = mask
    for _ in range(order):
        out = out[:, :, 1:] & out[:, :, :-1]
    return out


def to_gait16(x: Tensor, layout: Layout | str) -> Tensor:
    """Map any layout onto the emotion recognizer's ``gait16``: ``(N, C, T, V, M) -> (N, C, T, 16, M)``.

    Example:
        >>> x = torch.zeros(2, 3, 8, 18, 1)
        >>> to_gait16(x, "openpose18").shape
        torch.Size([2, 3, 8, 16, 1])
    """
    layout = get_layout(layout)
    if layout.name == "gait16":
        return x
    w = torch.as_tensor(layout.gait16_matrix, dtype=x.dtype, device=x.device)
    return torch.einsum("gv,nctvm->nctgm", w, x)


_G = {name: i for i, name in enumerate(GAIT16_JOINTS)}


def _first_valid_frame(x: Tensor, mask: Tensor) -> Tensor:
    """Per sample, the first-person pose at its first valid frame: ``(N, C, V)``."""
    valid0 = mask[:, 0, :, 0, 0]  # (N, T)
    t0 = torch.where(
        valid0.any(1), valid0.float().argmax(1), torch.zeros_like(valid0[:, 0], dtype=torch.long)
    )
    idx = t0.view(-1, 1, 1, 1).expand(-1, x.shape[1], 1, x.shape[3])
    return x[..., 0].gather(2, idx).squeeze(2)


def skeletal_height(x: Tensor, layout: Layout | str, lengths: Tensor | None = None) -> Tensor:
    """Pose-independent body height ``(N,)`` of the first person: the sum of the bone lengths on the
    chain foot-knee-hip (averaged over both legs), root-spine-neck-head, measured on gait16 and averaged
    over valid frames.

    Example:
        >>> x = torch.as_tensor(get_layout("ntu25").rest_array).T.reshape(1, 3, 1, 25, 1)  # rest pose (m)
        >>> skeletal_height(x, "ntu25"), skeletal_height(2 * x, "ntu25")
        (tensor([1.5320]), tensor([3.0640]))
    """
    return _height(x, get_layout(layout), valid_mask(x, lengths))


def _height(x: Tensor, layout: Layout, mask: Tensor) -> Tensor:
    g = to_gait16(x, layout)[..., 0]  # (N, C, T, 16)

    def seg(a: str, b: str) -> Tensor:
        return safe_norm(g[:, :, :, _G[a]] - g[:, :, :, _G[b]], dim=1)  # (N, T)

    trunk = seg("root", "spine") + seg("spine", "neck") + seg("neck", "head")
    legs = 0.5 * (
        seg("left_hip", "left_knee")
        + seg("left_knee", "left_foot")
        + seg("right_hip", "right_knee")
        + seg("right_knee", "right_foot")
    )
    m = mask[:, 0, :, 0, 0].to(x.dtype)
    return ((trunk + legs) * m).sum(1) / m.sum(1).clamp_min(1.0)


def _normalize_rows(v: Tensor, fallback: Tensor) -> Tensor:
    n = safe_norm(v, dim=-1).unsqueeze(-1)
    return torch.where(n > 1e-6, v / n, fallback.expand_as(v))


def canonical_rotation(x: Tensor, layout: Layout | str, lengths: Tensor | None = None) -> Tensor:
    """Per-sample rotation ``(N, C, C)`` that turns the first person's first valid frame so that root->neck
    points along +y and right hip -> left hip along +x (the body faces +z). For 2D data the in-plane rotation
    that makes root->neck point along +y.

    Example:
        >>> x = torch.as_tensor(get_layout("ntu25").rest_array).T.reshape(1, 3, 1, 25, 1)  # faces +z
        >>> turn = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # 90 degrees about y
        >>> r = canonical_rotation(torch.einsum("ij,njtvm->nitvm", turn, x), "ntu25")  # (N, C, C)
        >>> torch.allclose(r[0] @ turn, torch.eye(3), atol=1e-6)  # turns it back
        True
    """
    layout = get_layout(layout)
    return _rotation(_first_pose_gait16(x, layout, valid_mask(x, lengths)))


def _first_pose_gait16(x: Tensor, layout: Layout, mask: Tensor) -> Tensor:
    """The first person's gait16 pose at each sample's first valid frame: ``(N, C, 16)``."""
    return to_gait16(_first_valid_frame(x, mask).unsqueeze(2).unsqueeze(-1), layout)[:, :, 0, :, 0]


def _rotation(g: Tensor) -> Tensor:
    """:func:`canonical_rotation` from first-frame gait16 poses ``g (N, C, 16)``."""
    up = g[:, :, _G["neck"]] - g[:, :, _G["root"]]
    c = g.shape[1]
    if c == 2:
        up = _normalize_rows(up, torch.tensor([0.0, 1.0], dtype=g.dtype, device=g.device))
        # rows: (x axis, y axis) = (perpendicular to up, up)
        return torch.stack([torch.stack([up[:, 1], -up[:, 0]], -1), up], dim=1)
    if c != 3:
        raise ValueError(f"canonical_rotation needs C=2 or C=3, got C={c}")
    ey = torch.tensor([0.0, 1.0, 0.0], dtype=g.dtype, device=g.device)
    ex = torch.tensor([1.0, 0.0, 0.0], dtype=g.dtype, device=g.device)
    up = _normalize_rows(up, ey)
    side = g[:, :, _G["left_hip"]] - g[:, :, _G["right_hip"]]
    side = side - (side * up).sum(-1, keepdim=True) * up
    side = _normalize_rows(side, ex)
    fwd = torch.cross(side, up, dim=-1)
    return torch.stack([side, up, fwd], dim=1)  # rows are the new axes


def normalize(
    x: Tensor,
    layout: Layout | str,
    lengths: Tensor | None = None,
    *,
    center: bool = True,
    rotate: bool = True,
    scale: bool = False,
) -> Tensor:
    """Centre on the first person's root at its first valid frame, rotate to face the canonical direction
    (:func:`canonical_rotation`), optionally scale to unit skeletal height. Padding and absent persons stay
    zero. One transform per sample, so the relative motion of the two persons is kept.

    Example:
        >>> x = torch.as_tensor(get_layout("ntu25").rest_array).T.reshape(1, 3, 1, 25, 1)  # rest pose (m)
        >>> out = normalize(x + torch.tensor([1.0, 0.0, 2.0]).view(1, 3, 1, 1, 1), "ntu25", scale=True)
        >>> out[0, :, 0, 0, 0].abs(), round(skeletal_height(out, "ntu25").item(), 4)  # root at 0, height 1
        (tensor([0., 0., 0.]), 1.0)
    """
    layout = get_layout(layout)
    mask = valid_mask(x, lengths)  # computed once and shared by the three steps
    g0 = _first_pose_gait16(x, layout, mask)
    out = x
    if center:
        out = out - g0[:, :, _G["root"]].view(x.shape[0], x.shape[1], 1, 1, 1)
    if rotate:
        out = torch.einsum("nij,njtvm->nitvm", _rotation(g0), out)
    if scale:
        h = _height(x, layout, mask).clamp_min(1e-6)
        out = out / h.view(-1, 1, 1, 1, 1)
    return out * mask.to(out.dtype)


MODALITIES = ("joint", "bone", "bone_agcn", "motion")


def check_modality(layout: Layout | str, modality: str) -> None:
    """Raise unless ``modality`` is one of :data:`MODALITIES` and defined on ``layout`` (``bone_agcn``:
    ``ntu25`` only).

    Example:
        >>> check_modality("kinect20", "bone")  # passes
        >>> check_modality("kinect20", "bone_agcn")
        Traceback (most recent call last):
        ValueError: modality 'bone_agcn' is 2s-AGCN's NTU RGB+D bone stream: layout must be 'ntu25', got ...
    """
    if modality not in MODALITIES:
        raise KeyError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    if modality == "bone_agcn" and get_layout(layout).name != "ntu25":
        raise ValueError(
            f"modality 'bone_agcn' is 2s-AGCN's NTU RGB+D bone stream: layout must be 'ntu25', got "
            f"{get_layout(layout).name!r}"
        )


def to_modality(x: Tensor, layout: Layout | str, modality: str) -> Tensor:
    """The input stream of a classifier, same shape as ``x``: ``joint`` (coordinates), ``bone`` (each
    joint's bone vector to its parent in the layout's tree, zero at the root), ``bone_agcn`` (2s-AGCN's
    ``gen_bone_data.py`` for ``ntu25``: the same on the official NTU graph's tree, rooted at the spine
    shoulder, where the hand tips hang from the thumbs) or ``motion`` (frame differences, zero in the last
    frame).

    Example:
        >>> x = torch.as_tensor(get_layout("gait16").rest_array).T.reshape(1, 3, 1, 16, 1)  # rest pose (m)
        >>> bone = to_modality(x, "gait16", "bone")  # the root's bone is zero, the spine's is spine - root
        >>> bone.shape, bone[0, :, 0, 1, 0]
        (torch.Size([1, 3, 1, 16, 1]), tensor([0.0000, 0.2300, 0.0000]))
    """
    check_modality(layout, modality)
    if modality == "joint":
        return x
    if modality == "motion":
        return torch.nn.functional.pad(velocity(x), (0, 0, 0, 0, 0, 1))
    return _differences(x, layout, "joint_bone" if modality == "bone" else "joint_bone_agcn")
