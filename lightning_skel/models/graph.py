"""Graph operations of the skeleton GCNs, derived from a :class:`~lightning_skel.skeleton.layouts.Layout`.

No edge list is written here: every matrix comes from the layout's bone tree, so ST-GCN, 2s-AGCN and the
emotion recognizer see exactly the topology the bone modality, the attack distances and the plots see. The one
exception is the graph the published NTU checkpoints were trained with (:func:`official_ntu_graph`), which
differs from ``ntu25``'s tree at the hands and is only used to import or reproduce those checkpoints.

Convention: ``A[i, j]`` (or ``A[k, i, j]``) is the weight of joint ``j`` in the update of joint ``i``, so a
graph convolution of ``x: (N, C, T, V)`` is ``einsum("nctj,ij->ncti", x, A)`` and rows sum to one after
normalisation (a mean over neighbours). The official ST-GCN / 2s-AGCN code stores the transpose
(``x @ A``, columns normalised); the two are the same operator.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np

from lightning_skel.skeleton.layouts import Layout, get_layout

PARTITION_NORMALIZE = ("whole", "subset")
# The graph a model is built on: the layout's bone tree, or the official NTU RGB+D graph of the model's
# reference code (``ntu25`` only), which a published checkpoint was trained with.
GRAPHS = ("layout", "official_ntu")

OFFICIAL_NTU_CENTER = "spine_shoulder"


def official_ntu_partition(model: str, layout: Layout | str, graph_center: str | None = None) -> np.ndarray:
    """The fixed partition the official code of ``model`` builds on :func:`official_ntu_graph`.

    Centred on ``spine_shoulder``. For ``"agcn"``: 2s-AGCN's ``graph/tools.py`` partition (self,
    centripetal, centrifugal, each subset normalised on its own). For ``"stgcn"``: ST-GCN's ``graph.py``
    one, which is not the paper's (see the code).

    Args:
        model: ``"stgcn"``, or any other name for 2s-AGCN's partition.
        layout: must be ``ntu25``.
        graph_center: must be ``None``: the centre is fixed.

    Returns:
        ``(3, V, V)`` float32, ``A[k, i, j]`` the weight of joint ``j`` in the update of ``i``.

    Example:
        >>> a = official_ntu_partition("agcn", "ntu25")
        >>> a.shape, float(a[0].trace())
        ((3, 25, 25), 25.0)
    """
    layout = get_layout(layout)
    if layout.name != "ntu25":
        raise ValueError(
            f"graph='official_ntu' is the NTU RGB+D graph: it needs layout 'ntu25', got {layout.name!r}"
        )
    if graph_center is not None:
        raise ValueError(
            f"graph='official_ntu' is centred on {OFFICIAL_NTU_CENTER!r}; graph_center must be unset"
        )
    adjacency, center = official_ntu_graph().adjacency, layout.index(OFFICIAL_NTU_CENTER)
    if model != "stgcn":
        return _partition(adjacency, center, "subset")
    # ST-GCN's graph.py measures the distance to the centre only up to max_hop = 1 (farther joints are at
    # infinity, all equally far), and puts a neighbour j of joint i in subset 1 when j is at least as far
    # from the centre as i, in subset 2 when it is closer; every subset keeps the whole-graph normalisation.
    h = hops(adjacency)
    r = np.where(h[center] <= 1, h[center], np.inf)
    neighbour = h == 1
    eye = np.eye(adjacency.shape[0], dtype=bool)
    masks = np.stack([eye, neighbour & (r[None, :] >= r[:, None]), neighbour & (r[None, :] < r[:, None])])
    a = (adjacency > 0) | eye
    return ((a / a.sum(1, keepdims=True))[None] * masks).astype(np.float32)


def hop_distance(layout: Layout | str) -> np.ndarray:
    """Shortest-path hop counts ``(V, V)`` int64 over the layout's bone tree (0 on the diagonal).

    Example:
        >>> hop_distance("kinect20")[0, :5]  # hip_center to hip_center, spine, shoulder_center, head, ...
        array([0, 1, 2, 3, 3])
    """
    return hops(get_layout(layout).adjacency)


def hops(adjacency: np.ndarray) -> np.ndarray:
    """Shortest-path hop counts ``(V, V)`` int64 over the graph of ``adjacency (V, V)``.

    Nonzero entries are edges. 0 on the diagonal, -1 between unconnected joints.

    Example:
        >>> hops(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]]))
        array([[ 0,  1, -1],
               [ 1,  0, -1],
               [-1, -1,  0]])
    """
    v = adjacency.shape[0]
    reach = np.eye(v, dtype=bool)
    dist = np.where(reach, 0, -1).astype(np.int64)
    step = adjacency != 0
    # Breadth first over all joints at once: hop d reaches whatever hop d-1 reached, one edge further.
    for d in range(1, v):
        reach_next = reach | ((reach.astype(np.int64) @ step.astype(np.int64)) > 0)
        dist[reach_next & ~reach] = d
        if reach_next.all():
            break
        reach = reach_next
    return dist


def root_distance(layout: Layout | str, center: int | str | None = None) -> np.ndarray:
    """Hops ``(V,)`` from every joint to ``center`` (a joint index or name; default the tree's root).

    Example:
        >>> root_distance("kinect20", "head")[:4]  # hip_center, spine, shoulder_center, head
        array([3, 2, 1, 0])
    """
    layout = get_layout(layout)
    return hop_distance(layout)[_center_index(layout, center)]


def normalized_adjacency(
    layout: Layout | str, self_loops: bool = True, symmetric: bool = False
) -> np.ndarray:
    """Normalised bone-graph adjacency ``(V, V)`` float32.

    ``D^-1 (A + I)``: each row a mean over the neighbourhood. With ``symmetric``: ``D^-1/2 (A + I) D^-1/2``
    (Kipf & Welling, ICLR 2017).

    Args:
        layout: the skeleton layout.
        self_loops: add ``I`` (default true).
        symmetric: the symmetric normalisation (default false).

    Example:
        >>> a = normalized_adjacency("kinect20")
        >>> a.shape, a.sum(1)[:3]
        ((20, 20), array([1., 1., 1.], dtype=float32))
    """
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
    """ST-GCN's spatial configuration partition (Yan et al., AAAI 2018, section 3.3).

    Subset 0 is the joint itself, subset 1 its centripetal neighbours (one hop closer to ``center``), subset
    2 its centrifugal neighbours (one hop farther).

    Args:
        layout: the skeleton layout.
        center: a joint index or name (default the layout's root). The official ST-GCN / 2s-AGCN graphs
            are centred on the spine-shoulder: ``center="spine_shoulder"`` on ``ntu25``.
        normalize: ``"whole"`` (ST-GCN, default): the adjacency with self-loops is row-normalised, then
            split, so the subsets sum to :func:`normalized_adjacency`. ``"subset"`` (2s-AGCN's
            ``graph/tools.py``): the self subset is the identity, each neighbour subset row-normalised alone.

    Returns:
        ``(3, V, V)`` float32.

    Example:
        >>> a = spatial_partition("kinect20")
        >>> a.shape, a.sum(0).sum(1)[:3]
        ((3, 20, 20), array([1., 1., 1.], dtype=float32))
    """
    if normalize not in PARTITION_NORMALIZE:
        raise ValueError(f"normalize must be one of {PARTITION_NORMALIZE}, got {normalize!r}")
    layout = get_layout(layout)
    return _partition(layout.adjacency, _center_index(layout, center), normalize)


def _partition(adjacency: np.ndarray, center: int, normalize: str) -> np.ndarray:
    """:func:`spatial_partition` of a symmetric 0/1 adjacency ``(V, V)`` around joint ``center``."""
    h = hops(adjacency)
    r = h[center]  # (V,) hops of each joint to the centre
    neighbour = h == 1
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


# graph/ntu_rgb_d.py of the official 2s-AGCN, CTR-GCN and MS-G3D code (and ST-GCN's ntu-rgb+d layout):
# 1-based (joint, its neighbour towards spine_shoulder, joint 21). The hand tip hangs from the thumb and the
# thumb from the hand; ntu25 (the Kinect v2 SDK tree) attaches both to the hand and the wrist.
_OFFICIAL_NTU_INWARD = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
    (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8),
    (24, 25), (25, 12),
)  # fmt: skip


@cache
def official_ntu_graph() -> Layout:
    """The NTU RGB+D graph of the official 2s-AGCN, CTR-GCN and MS-G3D code, as a layout.

    ``ntu25``'s joints with the official edges, rooted at ``spine_shoulder`` (the centre of their spatial
    partition), so that every function here builds those models' graphs from it. Only the graph: the bone
    modality, the distances and the plots keep ``ntu25``'s tree.

    Example:
        >>> g = official_ntu_graph()
        >>> g.name, g.joint_names[g.root]
        ('ntu25_official_graph', 'spine_shoulder')
    """
    ntu = get_layout("ntu25")
    parents = [-1] * ntu.num_joints
    for joint, towards_centre in _OFFICIAL_NTU_INWARD:
        parents[joint - 1] = towards_centre - 1
    return replace(
        ntu,
        name="ntu25_official_graph",
        parents=tuple(parents),
        description="the graph of the official 2s-AGCN / CTR-GCN / MS-G3D NTU RGB+D code",
    )


def multiscale_adjacency(adjacency: np.ndarray, num_scales: int) -> np.ndarray:
    """MS-G3D's disentangled multi-scale graphs (Liu et al., CVPR 2020, eq. 2).

    Scale ``k`` joins every joint to the joints exactly ``k`` hops away, with self-loops (scale 0: the
    joint alone), each normalised ``D^-1/2 A D^-1/2``. Rounded to float32 as MS-G3D's ``graph/tools.py``
    rounds them: the published checkpoints were trained with these constants.

    Args:
        adjacency: ``(V, V)``, nonzero entries are edges.
        num_scales: the scales ``K``, at least 1.

    Returns:
        ``(K * V, V)`` float32, the scales stacked.

    Example:
        >>> path = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])  # three joints in a row
        >>> multiscale_adjacency(path, 2)[3:].round(3)  # scale 1
        array([[0.5  , 0.408, 0.   ],
               [0.408, 0.333, 0.408],
               [0.   , 0.408, 0.5  ]], dtype=float32)
    """
    if num_scales < 1:
        raise ValueError(f"num_scales must be >= 1, got {num_scales}")
    v = adjacency.shape[0]
    h = hops(adjacency)
    scales = (h[None] == np.arange(num_scales)[:, None, None]) | np.eye(v, dtype=bool)  # (K, V, V)
    a = scales.astype(np.float64)
    # 1 / sqrt(degree) rounded to float32, as graph/tools.py computes it (a float32 power)
    d = (1.0 / np.sqrt(a.sum(-1))).astype(np.float32).astype(np.float64)  # (K, V)
    return (d[:, :, None] * a * d[:, None, :]).astype(np.float32).reshape(num_scales * v, v)


def model_graph(owner: str, layout: Layout, graph: str) -> Layout:
    """The layout whose tree is a model's graph.

    Args:
        owner: the model's name, the start of the errors.
        layout: the data's layout.
        graph: ``"layout"``: ``layout`` itself; ``"official_ntu"``: :func:`official_ntu_graph`, for ``ntu25``
            only, to load the published checkpoints.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> model_graph("msg3d", get_layout("ntu25"), "official_ntu").name
        'ntu25_official_graph'
    """
    if graph not in GRAPHS:
        raise ValueError(f"{owner}: graph must be one of {GRAPHS}, got {graph!r}")
    if graph == "layout":
        return layout
    if layout.name != "ntu25":
        raise ValueError(
            f"{owner}: graph='official_ntu' is the NTU RGB+D graph, for layout 'ntu25', got {layout.name!r}"
        )
    return official_ntu_graph()
