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

# The graph a model is built on: the layout's bone tree, or the official NTU RGB+D graph of the model's
# reference code (``ntu25`` only), which a published checkpoint was trained with.
GRAPHS = ("layout", "official_ntu")

# The NTU RGB+D edges of the official ST-GCN and 2s-AGCN code, as (joint, neighbour) names of ``ntu25``. They
# differ from ``ntu25``'s bones at the hands: there the tip hangs on the thumb and the thumb on the hand,
# where ``ntu25`` hangs the tip on the hand and the thumb on the wrist. Both graphs are centred on
# ``spine_shoulder``.
OFFICIAL_NTU_EDGES = (
    ("spine_base", "spine_mid"),
    ("spine_mid", "spine_shoulder"),
    ("neck", "spine_shoulder"),
    ("head", "neck"),
    ("left_shoulder", "spine_shoulder"),
    ("left_elbow", "left_shoulder"),
    ("left_wrist", "left_elbow"),
    ("left_hand", "left_wrist"),
    ("right_shoulder", "spine_shoulder"),
    ("right_elbow", "right_shoulder"),
    ("right_wrist", "right_elbow"),
    ("right_hand", "right_wrist"),
    ("left_hip", "spine_base"),
    ("left_knee", "left_hip"),
    ("left_ankle", "left_knee"),
    ("left_foot", "left_ankle"),
    ("right_hip", "spine_base"),
    ("right_knee", "right_hip"),
    ("right_ankle", "right_knee"),
    ("right_foot", "right_ankle"),
    ("left_hand_tip", "left_thumb"),
    ("left_thumb", "left_hand"),
    ("right_hand_tip", "right_thumb"),
    ("right_thumb", "right_hand"),
)
OFFICIAL_NTU_CENTER = "spine_shoulder"


def official_ntu_adjacency() -> np.ndarray:
    """The official NTU graph's symmetric 0/1 adjacency ``(25, 25)``, no self-loops."""
    layout = get_layout("ntu25")
    a = np.zeros((layout.num_joints, layout.num_joints), dtype=np.float32)
    i = [layout.index(u) for u, _ in OFFICIAL_NTU_EDGES]
    j = [layout.index(w) for _, w in OFFICIAL_NTU_EDGES]
    a[i, j] = a[j, i] = 1.0
    return a


def official_ntu_partition(model: str, layout: Layout | str, graph_center: str | None = None) -> np.ndarray:
    """The fixed ``(3, V, V)`` partition the official code of ``model`` (``"stgcn"`` or ``"agcn"``) builds on
    :data:`OFFICIAL_NTU_EDGES`, centred on ``spine_shoulder``: 2s-AGCN's ``tools.py`` partition (self,
    centripetal, centrifugal, each subset normalised on its own) and ST-GCN's ``graph.py`` one, which is not
    the paper's (below). ``layout`` must be ``ntu25``, and ``graph_center`` unset (the centre is fixed)."""
    layout = get_layout(layout)
    if layout.name != "ntu25":
        raise ValueError(
            f"graph='official_ntu' is the NTU RGB+D graph: it needs layout 'ntu25', got {layout.name!r}"
        )
    if graph_center is not None:
        raise ValueError(
            f"graph='official_ntu' is centred on {OFFICIAL_NTU_CENTER!r}; graph_center must be unset"
        )
    adjacency, center = official_ntu_adjacency(), layout.index(OFFICIAL_NTU_CENTER)
    if model != "stgcn":
        return _partition(adjacency, center, "subset")
    # ST-GCN's graph.py measures the distance to the centre only up to max_hop = 1 (farther joints are at
    # infinity, all equally far), and puts a neighbour j of joint i in subset 1 when j is at least as far
    # from the centre as i, in subset 2 when it is closer; every subset keeps the whole-graph normalisation.
    hops = _hops(adjacency)
    r = np.where(hops[center] <= 1, hops[center], np.inf)
    neighbour = hops == 1
    eye = np.eye(adjacency.shape[0], dtype=bool)
    masks = np.stack([eye, neighbour & (r[None, :] >= r[:, None]), neighbour & (r[None, :] < r[:, None])])
    a = (adjacency > 0) | eye
    return ((a / a.sum(1, keepdims=True))[None] * masks).astype(np.float32)


def hop_distance(layout: Layout | str) -> np.ndarray:
    """Shortest-path hop counts ``(V, V)`` int64 over the bone tree (0 on the diagonal)."""
    return _hops(get_layout(layout).adjacency)


def _hops(adjacency: np.ndarray) -> np.ndarray:
    """Shortest-path hop counts ``(V, V)`` int64 over a symmetric adjacency (-1 where unreachable)."""
    v = adjacency.shape[0]
    reach = np.eye(v, dtype=bool)
    dist = np.where(reach, 0, -1).astype(np.int64)
    step = adjacency > 0
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
    return _partition(layout.adjacency, _center_index(layout, center), normalize)


def _partition(adjacency: np.ndarray, center: int, normalize: str) -> np.ndarray:
    """:func:`spatial_partition` of a symmetric 0/1 adjacency ``(V, V)`` around joint ``center``."""
    hops = _hops(adjacency)
    r = hops[center]  # (V,) hops of each joint to the centre
    neighbour = hops == 1
    closer = neighbour & (r[None, :] < r[:, None])  # j one hop closer to the centre than i
    farther = neighbour & (r[None, :] > r[:, None])
    eye = np.eye(adjacency.shape[0], dtype=bool)
    masks = np.stack([eye, closer, farther]).astype(np.float64)  # (3, V, V)
    if normalize == "whole":
        a = (adjacency > 0) | eye
        parts = (a / a.sum(1, keepdims=True))[None] * masks
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
