"""Affective gait features (STEP, Bhattacharya et al., AAAI 2020, section 3: posture and movement features) on
normalised ``gait16`` sequences, vectorised and differentiable.

The emotion recognizer (docs/METHOD.md section 7) sees a skeleton of any layout as :func:`normalized_gait16`: the
first person mapped onto ``gait16``, centred on its root at the first valid frame, turned to the canonical
facing (+z, y up) and scaled to unit skeletal height. :func:`affective_features` reads such a tensor, so its
distances, areas, speeds and accelerations are in body heights (per frame), and its angles in radians are
invariant to where the subject stands, which way it faces and how tall it is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_skel.skeleton.features import (
    _cross_norm,
    acceleration,
    angle_between,
    normalize,
    safe_norm,
    temporal_mask,
    to_gait16,
    valid_mask,
    velocity,
)
from lightning_skel.skeleton.layouts import GAIT16_JOINTS, Layout

_J = {name: i for i, name in enumerate(GAIT16_JOINTS)}


def _idx(*names: str) -> list[int]:
    return [_J[n] for n in names]


# (a, joint, b): the angle at `joint` between the directions to `a` and to `b`.
_ANGLES = (
    ("left_shoulder", "neck", "right_shoulder"),
    ("neck", "left_shoulder", "left_elbow"),
    ("neck", "right_shoulder", "right_elbow"),
    ("left_shoulder", "left_elbow", "left_hand"),
    ("right_shoulder", "right_elbow", "right_hand"),
    ("left_hip", "left_knee", "left_foot"),
    ("right_hip", "right_knee", "right_foot"),
    ("head", "neck", "spine"),
)
# (from, to): the angle of the segment from -> to with the vertical (+y).
_TILTS = (("root", "neck"), ("neck", "head"))
_DISTANCES = (
    ("left_hand", "spine"),
    ("right_hand", "spine"),
    ("left_hand", "right_hand"),
    ("left_foot", "right_foot"),
    ("left_hand", "root"),
    ("right_hand", "root"),
    ("left_foot", "root"),
    ("right_foot", "root"),
)
_TRIANGLES = (("left_hand", "neck", "right_hand"), ("left_foot", "root", "right_foot"))
_MOVING = ("head", "left_hand", "right_hand", "left_foot", "right_foot", "root")

AFFECTIVE_FEATURES: tuple[str, ...] = (
    "bbox_volume",
    *(f"angle_{j}_{a}_{b}" for a, j, b in _ANGLES),
    *(f"tilt_{a}_{b}" for a, b in _TILTS),
    *(f"dist_{a}_{b}" for a, b in _DISTANCES),
    *(f"area_{a}_{j}_{b}" for a, j, b in _TRIANGLES),
    "max_feet_apart",
    *(f"{stat}_{kind}_{j}" for kind in ("speed", "accel") for stat in ("mean", "max") for j in _MOVING),
)
"""Names of the columns of :func:`affective_features`, in order."""


def normalized_gait16(x: Tensor, layout: Layout | str, lengths: Tensor | None = None) -> Tensor:
    """The emotion recognizer's input: the first person of ``x`` mapped to ``gait16`` and normalised.

    Root-centred at the first valid frame, turned to the canonical facing, scaled to unit height.

    Args:
        x: ``(N, C, T, V, M)`` clips of ``layout``.
        layout: their skeleton layout.
        lengths: ``(N,)`` valid frames (default: the frames where the person is present).

    Returns:
        ``(N, C, T, 16, 1)``.

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> x = torch.from_numpy(generate(num_per_class=1, seed=0, frames=16, layout="kinect20")["x"])
        >>> normalized_gait16(x, "kinect20").shape
        torch.Size([12, 3, 16, 16, 1])
    """
    g = to_gait16(x[..., :1], layout)
    return normalize(g, "gait16", lengths, scale=True)


def _masked_mean(f: Tensor, m: Tensor) -> Tensor:
    """Mean over frames (dim 1) of ``f: (N, T, K)`` where ``m: (N, T)`` holds."""
    w = m.to(f.dtype).unsqueeze(-1)
    return (f * w).sum(1) / w.sum(1).clamp_min(1.0)


def _masked_max(f: Tensor, m: Tensor) -> Tensor:
    """Maximum over frames of a non-negative ``f: (N, T, K)`` where ``m`` holds (0 where none does)."""
    return (f * m.to(f.dtype).unsqueeze(-1)).amax(1)


def affective_features(g: Tensor, lengths: Tensor | None = None) -> Tensor:
    """STEP's affective features (Bhattacharya et al., AAAI 2020, section 3) of a normalised gait16 batch.

    Of the first person: ``(N, C, T, 16, M) -> (N, F)``, ``F = len(AFFECTIVE_FEATURES)`` (46), ``C`` 3 or 2.

    Posture, averaged over valid frames: the bounding-box volume (area in 2D); the angles at the neck
    between the shoulders, at each shoulder (neck-elbow), elbow and knee, at the neck between head and spine;
    the tilt of the trunk (root-neck) and of the head (neck-head) to the vertical; hand-spine, hand-hand,
    foot-foot, hand-root and foot-root distances; the hands-neck and feet-root triangle areas; and the
    largest distance between the feet over the clip (stride). Movement: the mean and the maximum over valid
    frames of the speed ``|x_{t+1} - x_t|`` and of the acceleration ``|x_{t+1} - 2 x_t + x_{t-1}|`` of the
    head, both hands, both feet and the root.

    Frames are valid where the first person is present and before ``lengths``; means are over valid frames
    only (docs/METHOD.md section 1), so padding does not dilute them. The columns are named by
    :data:`AFFECTIVE_FEATURES`.

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> x = torch.from_numpy(generate(num_per_class=1, seed=0, frames=16, layout="kinect20")["x"])
        >>> affective_features(normalized_gait16(x, "kinect20")).shape  # 12 clips, 46 features
        torch.Size([12, 46])
    """
    if g.shape[3] != len(GAIT16_JOINTS):
        raise ValueError(f"affective_features needs gait16 joints (V=16), got V={g.shape[3]}")
    g = g[..., :1]
    mask = valid_mask(g, lengths)  # (N, 1, T, 1, 1)
    m = mask[:, 0, :, 0, 0]  # (N, T)
    x = g[..., 0]  # (N, C, T, 16)

    def at(names: list[int]) -> Tensor:
        return x[:, :, :, names]  # (N, C, T, K)

    a, j, b = (_idx(*col) for col in zip(*_ANGLES, strict=True))
    angles = angle_between(at(a) - at(j), at(b) - at(j))  # (N, T, K)
    lo, hi = (_idx(*col) for col in zip(*_TILTS, strict=True))
    seg = at(hi) - at(lo)
    up = torch.zeros_like(seg)
    up[:, 1] = 1.0
    tilts = angle_between(seg, up)
    p, q = (_idx(*col) for col in zip(*_DISTANCES, strict=True))
    dists = safe_norm(at(p) - at(q), dim=1)
    a, j, b = (_idx(*col) for col in zip(*_TRIANGLES, strict=True))
    areas = 0.5 * _cross_norm(at(a) - at(j), at(b) - at(j))
    volume = (x.amax(3) - x.amin(3)).prod(1).unsqueeze(-1)  # (N, T, 1)
    posture = torch.cat([volume, angles, tilts, dists, areas], dim=-1)  # (N, T, 21)
    feet = dists[..., _DISTANCES.index(("left_foot", "right_foot"))].unsqueeze(-1)

    moving = _idx(*_MOVING)
    speed = safe_norm(velocity(g)[..., moving, 0], dim=1)  # (N, T-1, J)
    accel = safe_norm(acceleration(g)[..., moving, 0], dim=1)  # (N, T-2, J)
    m1 = temporal_mask(mask, 1)[:, 0, :, 0, 0]
    m2 = temporal_mask(mask, 2)[:, 0, :, 0, 0]
    return torch.cat(
        [
            _masked_mean(posture, m),
            _masked_max(feet, m),
            _masked_mean(speed, m1),
            _masked_max(speed, m1),
            _masked_mean(accel, m2),
            _masked_max(accel, m2),
        ],
        dim=1,
    )
