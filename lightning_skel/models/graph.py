"""Graph operations of the skeleton GCNs, derived from a :class:`~lightning_skel.skeleton.layouts.Layout`.

No edge list is written here: every matrix comes from the layout's bone tree, so ST-GCN, 2s-AGCN and the
emotion recognizer see exactly the topology the bone modality, the attack distances and the plots see.

Convention: ``A[i, j]`` (or ``A[k, i, j]``) is the weight of joint ``j`` in the update of joint ``i``, so a
graph convolution of ``x: (N, C, T, V)`` is ``einsum("nctj,ij->ncti", x, A)`` and rows sum to one after
normalisation (a mean over neighbours). The official ST-GCN / 2s-AGCN code stores the transpose
(``x @ A``, columns normalised); the two are the same operator.
"""

from __future__ import annotations

import numpy as np

from lightning_skel.skeleton.layouts import Layout, get_layout

PARTITION_NORMALIZE = ("whole", "subset")


def hop_distance(layout: Layout | str) -> np.ndarray:
    """Shortest-path hop counts ``(V, V)`` int64 over the bone tree (0 on the diagonal)."""
    layout = get_layout(layout)
    v = layout.num_joints
    reach = np.eye(v, dtype=bool)
    dist = np.where(reach, 0, -1).astype(np.int64)
    step = layout.adjacency > 0
    # Breadth first over all joints at once: hop d reaches whatever hop d-1 reached, one edge further.
    for d in range(1, v):
        reach_next = reach | ((reach.astype(np.int64) @ step.astype(np.int64)) > 0)
        dist[reach_next & ~reach] = d
        if reach_next.all():
            break
        reach = reach_next
    return dist


def root_distance(layout: Layout | str, center: int | str | None = None) -> np.ndarray:
    """Hops ``(V,)`` from every joint to ``center`` (a joint index or name; default the tree's root)."""
    layout = get_layout(layout)
    return hop_distance(layout)[_center_index(layout, center)]


def normalized_adjacency(
    layout: Layout | str, self_loops: bool = True, symmetric: bool = False
) -> np.ndarray:
    """Normalised bone-graph adjacency ``(V, V)`` float32: ``D^-1 (A + I)`` (rows are means over the
    neighbourhood), or ``D^-1/2 (A + I) D^-1/2`` with ``symmetric`` (Kipf & Welling)."""
    layout = get_layout(layout)
    a = layout.adjacency.astype(np.float64)
    if self_loops:
        a = a + np.eye(layout.num_joints)
    deg = a.sum(1)
    inv = np.where(deg > 0, 1.0 / np.where(deg > 0, deg, 1.0), 0.0)
    if symmetric:
        s = np.sqrt(inv)
        return (s[:, None] * a * s[None, :]).astype(np.float32)
    return (inv[:, None] * a).astype(np.float32)


def spatial_partition(
    layout: Layout | str, center: int | str | None = None, normalize: str = "whole"
) -> np.ndarray:
    """ST-GCN's spatial configuration partitioning (Yan et al., AAAI 2018, section 3.3) as ``(3, V, V)``
    float32: subset 0 the joint itself, subset 1 its centripetal neighbours (one hop closer to ``center``,
    the body's centre of gravity), subset 2 its centrifugal neighbours (one hop farther).

    ``center`` is a joint index or name, default the layout's root. The official ST-GCN / 2s-AGCN graphs
    use the neck / spine-shoulder as centre; pass ``center="spine_shoulder"`` on ``ntu25`` to reproduce them.

    ``normalize="whole"`` (ST-GCN): the adjacency with self-loops is row-normalised first, then split, so the
    three subsets sum to :func:`normalized_adjacency`. ``normalize="subset"`` (2s-AGCN's
    ``graph/tools.py``): the self subset is the identity and each neighbour subset is row-normalised on its
    own.
    """
    if normalize not in PARTITION_NORMALIZE:
        raise ValueError(f"normalize must be one of {PARTITION_NORMALIZE}, got {normalize!r}")
    layout = get_layout(layout)
    hops = hop_distance(layout)
    r = hops[_center_index(layout, center)]  # (V,) hops of each joint to the centre
    neighbour = hops == 1
    closer = neighbour & (r[None, :] < r[:, None])  # j one hop closer to the centre than i
    farther = neighbour & (r[None, :] > r[:, None])
    eye = np.eye(layout.num_joints, dtype=bool)
    masks = np.stack([eye, closer, farther]).astype(np.float64)  # (3, V, V)
    if normalize == "whole":
        parts = normalized_adjacency(layout, self_loops=True).astype(np.float64)[None] * masks
    else:
        deg = masks.sum(2, keepdims=True)
        parts = masks / np.where(deg > 0, deg, 1.0)
    return parts.astype(np.float32)


def _center_index(layout: Layout, center: int | str | None) -> int:
    if center is None:
        return layout.root
    if isinstance(center, str):
        return layout.index(center)
    if not 0 <= center < layout.num_joints:
        raise ValueError(
            f"center must be a joint of {layout.name!r} (0..{layout.num_joints - 1}), got {center}"
        )
    return int(center)
