"""Skeleton layouts: the one place where joint names and bone trees are written.

Every part of the project that needs topology (graph adjacency in the GCNs, the bone modality, the attack
distances, the emotion mapping, the plots) reads it from a :class:`Layout` returned by :func:`get_layout`.

Conventions
-----------
* Joints are 0-based indices into the V axis of an ``(N, C, T, V, M)`` tensor.
* ``bones`` are ``(child, parent)`` pairs that form one tree over all joints, rooted at ``root``.
* ``triplets`` are ``(parent, joint, child)`` for every non-root joint and each of its children: the angle at
  ``joint`` between the bone to its parent and the bone to that child (docs/METHOD.md section 2).
* ``gait16`` is the layout of the emotion recognizer; ``gait16_map`` gives, for each of its 16 joints, the
  source joints (and weights) whose weighted mean is that gait16 joint.
* ``rest_pose`` is a standing pose in metres, y up, facing +z, arms at the sides, used by the motion
  generator as the bone offsets of forward kinematics and by the plots for axis limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

GAIT16_JOINTS: tuple[str, ...] = (
    "root",
    "spine",
    "neck",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_hand",
    "right_shoulder",
    "right_elbow",
    "right_hand",
    "left_hip",
    "left_knee",
    "left_foot",
    "right_hip",
    "right_knee",
    "right_foot",
)


@dataclass(frozen=True)
class Layout:
    """A skeleton topology: joint names and one bone tree. Get one with :func:`get_layout`.

    The fields are validated on creation: one root, every joint reaching it, gait16 weights summing to 1.

    Args:
        name: the layout's name (``ntu25``, ...).
        joint_names: ``V`` names, the order of the V axis.
        parents: each joint's parent index, ``-1`` for the root.
        gait16_map: one ``{source joint: weight}`` per gait16 joint (the emotion recognizer's input).
        rest_pose: ``V`` standing positions in metres, y up, facing +z.
        description: a line saying what data it is (default ``""``).

    Example:
        >>> stick = Layout("stick", ("hip", "chest", "head"), (-1, 0, 1), ({0: 1.0},) * 16,
        ...                ((0, 0.9, 0), (0, 1.3, 0), (0, 1.6, 0)))
        >>> stick.bones, stick.triplets  # (child, parent); (parent, joint, child)
        (((1, 0), (2, 1)), ((0, 1, 2),))
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    gait16_map: tuple[dict[int, float], ...]
    rest_pose: tuple[tuple[float, float, float], ...]
    description: str = ""
    _children: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        v = len(self.joint_names)
        if len(self.parents) != v or len(self.rest_pose) != v:
            raise ValueError(f"layout {self.name!r}: joint_names, parents and rest_pose differ in length")
        roots = [j for j, p in enumerate(self.parents) if p < 0]
        if len(roots) != 1:
            raise ValueError(f"layout {self.name!r}: expected exactly one root, got {roots}")
        # Every joint must reach the root without revisiting a joint: one tree over all joints.
        for j in range(v):
            seen, k = set(), j
            while k >= 0:
                if k in seen or not 0 <= k < v:
                    raise ValueError(f"layout {self.name!r}: joint {j} does not reach the root")
                seen.add(k)
                k = self.parents[k]
        if len(self.gait16_map) != len(GAIT16_JOINTS):
            raise ValueError(f"layout {self.name!r}: gait16_map needs {len(GAIT16_JOINTS)} entries")
        for entry in self.gait16_map:
            if not entry or abs(sum(entry.values()) - 1.0) > 1e-6 or any(not 0 <= s < v for s in entry):
                raise ValueError(f"layout {self.name!r}: bad gait16_map entry {entry}")
        children: list[list[int]] = [[] for _ in range(v)]
        for j, p in enumerate(self.parents):
            if p >= 0:
                children[p].append(j)
        object.__setattr__(self, "_children", tuple(tuple(c) for c in children))

    # ---- derived topology -------------------------------------------------------------------------
    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    @cached_property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """``(child, parent)`` pairs, one per non-root joint, in joint order."""
        return tuple((j, p) for j, p in enumerate(self.parents) if p >= 0)

    @property
    def num_bones(self) -> int:
        return self.num_joints - 1

    @cached_property
    def triplets(self) -> tuple[tuple[int, int, int], ...]:
        """``(parent, joint, child)`` for every non-root joint and each of its children."""
        return tuple(
            (self.parents[j], j, c)
            for j in range(self.num_joints)
            if self.parents[j] >= 0
            for c in self._children[j]
        )

    def children(self, joint: int) -> tuple[int, ...]:
        return self._children[joint]

    @cached_property
    def topological_order(self) -> tuple[int, ...]:
        """Joints ordered so that every parent comes before its children (breadth first from the root)."""
        order, frontier = [], [self.root]
        while frontier:
            order.extend(frontier)
            frontier = [c for j in frontier for c in self._children[j]]
        return tuple(order)

    def index(self, joint_name: str) -> int:
        try:
            return self.joint_names.index(joint_name)
        except ValueError:
            raise KeyError(
                f"layout {self.name!r} has no joint {joint_name!r}; joints: {self.joint_names}"
            ) from None

    # ---- arrays derived once ----------------------------------------------------------------------
    @cached_property
    def bone_index(self) -> tuple[np.ndarray, np.ndarray]:
        """``(child, parent)`` index arrays, shape ``(B,)`` each."""
        b = np.asarray(self.bones, dtype=np.int64).reshape(-1, 2)
        return b[:, 0].copy(), b[:, 1].copy()

    @cached_property
    def triplet_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.asarray(self.triplets, dtype=np.int64).reshape(-1, 3)
        return t[:, 0].copy(), t[:, 1].copy(), t[:, 2].copy()

    @cached_property
    def adjacency(self) -> np.ndarray:
        """Symmetric ``(V, V)`` 0/1 adjacency of the bone graph, without self-loops."""
        a = np.zeros((self.num_joints, self.num_joints), dtype=np.float32)
        child, parent = self.bone_index
        a[child, parent] = 1.0
        a[parent, child] = 1.0
        return a

    @cached_property
    def gait16_matrix(self) -> np.ndarray:
        """``(16, V)`` weights: ``gait16 = W @ joints`` maps this layout onto the emotion recognizer's."""
        w = np.zeros((len(GAIT16_JOINTS), self.num_joints), dtype=np.float32)
        for g, entry in enumerate(self.gait16_map):
            for src, weight in entry.items():
                w[g, src] = weight
        return w

    def gait16_joint(self, gait_name: str) -> int | None:
        """The single source joint of a gait16 joint, or ``None`` where it is a mean of several."""
        entry = self.gait16_map[GAIT16_JOINTS.index(gait_name)]
        return next(iter(entry)) if len(entry) == 1 else None

    @cached_property
    def mirror_index(self) -> np.ndarray:
        """``(V,)`` joint permutation of the left-right mirror image: each ``left_*`` joint takes its
        ``right_*`` twin's place and vice versa, every other joint stays. Raises ``ValueError`` when a sided
        joint has no twin."""
        index = np.arange(self.num_joints)
        for j, name in enumerate(self.joint_names):
            for side, other in (("left", "right"), ("right", "left")):
                if side in name.split("_"):
                    twin = "_".join(other if part == side else part for part in name.split("_"))
                    if twin not in self.joint_names:
                        raise ValueError(f"layout {self.name!r}: joint {name!r} has no mirror twin {twin!r}")
                    index[j] = self.joint_names.index(twin)
        return index

    @cached_property
    def rest_array(self) -> np.ndarray:
        return np.asarray(self.rest_pose, dtype=np.float32)


def _tree(name_parent: list[tuple[str, str | None]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    names = tuple(n for n, _ in name_parent)
    return names, tuple(-1 if p is None else names.index(p) for _, p in name_parent)


def _map(
    layout_names: tuple[str, ...], pairs: dict[str, str | dict[str, float]]
) -> tuple[dict[int, float], ...]:
    out = []
    for g in GAIT16_JOINTS:
        src = pairs[g]
        if isinstance(src, str):
            out.append({layout_names.index(src): 1.0})
        else:
            out.append({layout_names.index(k): w for k, w in src.items()})
    return tuple(out)


# Standing rest pose of an adult (metres, y up, facing +z, subject's left at +x), written once by body part
# and shared by every layout that has that part.
_REST = {
    "pelvis": (0.0, 0.95, 0.0),
    "spine_mid": (0.0, 1.18, 0.0),
    "spine_top": (0.0, 1.42, 0.0),
    "neck": (0.0, 1.50, 0.0),
    "head": (0.0, 1.64, 0.02),
    "l_shoulder": (0.18, 1.40, 0.0),
    "l_elbow": (0.20, 1.12, 0.0),
    "l_wrist": (0.21, 0.87, 0.02),
    "l_hand": (0.21, 0.80, 0.03),
    "l_hand_tip": (0.21, 0.72, 0.04),
    "l_thumb": (0.18, 0.80, 0.06),
    "l_hip": (0.09, 0.92, 0.0),
    "l_knee": (0.10, 0.50, 0.02),
    "l_ankle": (0.10, 0.08, 0.0),
    "l_foot": (0.10, 0.02, 0.12),
    "nose": (0.0, 1.62, 0.10),
    "l_eye": (0.03, 1.66, 0.08),
    "l_ear": (0.07, 1.63, 0.02),
}


def _mirror(p: tuple[float, float, float]) -> tuple[float, float, float]:
    return (-p[0], p[1], p[2])


def _rest(part: str) -> tuple[float, float, float]:
    if part.startswith("r_"):
        return _mirror(_REST["l_" + part[2:]])
    return _REST[part]


def _make(name, description, tree, rest_parts, gait_pairs) -> Layout:
    names, parents = _tree(tree)
    return Layout(
        name=name,
        joint_names=names,
        parents=parents,
        gait16_map=_map(names, gait_pairs),
        rest_pose=tuple(_rest(rest_parts[n]) for n in names),
        description=description,
    )


# NTU RGB+D (Kinect v2 SDK JointType order). Hand tips attach to the hand and thumbs to the wrist, as the
# Kinect v2 SDK draws them; 2s-AGCN/pyskl attach the hand tip to the thumb instead, which is not anatomical.
_NTU25 = [
    ("spine_base", None),
    ("spine_mid", "spine_base"),
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
    ("spine_shoulder", "spine_mid"),
    ("left_hand_tip", "left_hand"),
    ("left_thumb", "left_wrist"),
    ("right_hand_tip", "right_hand"),
    ("right_thumb", "right_wrist"),
]
# _tree resolves parents by name, so a parent listed later (spine_shoulder) is fine.

_SIDES = ("left", "right")


def _limb_parts(prefix_map: dict[str, str]) -> dict[str, str]:
    out = {}
    for side, s in zip(_SIDES, ("l", "r"), strict=True):
        for joint, part in prefix_map.items():
            out[f"{side}_{joint}"] = f"{s}_{part}"
    return out


_ARM = ("shoulder", "elbow", "wrist", "hand")
_LEG = ("hip", "knee", "ankle", "foot")


def _same(parts: tuple[str, ...]) -> dict[str, str]:
    """Joints named like the body parts of the rest pose."""
    return {p: p for p in parts}


_NTU25_REST = {
    "spine_base": "pelvis",
    "spine_mid": "spine_mid",
    "spine_shoulder": "spine_top",
    "neck": "neck",
    "head": "head",
    **_limb_parts(_same(_ARM + _LEG + ("hand_tip", "thumb"))),
}

# Kinect v1 SDK (NUI_SKELETON_POSITION_INDEX) order: UTD-MHAD, N-UCLA and MSR readers permute into it.
_KINECT20 = [
    ("hip_center", None),
    ("spine", "hip_center"),
    ("shoulder_center", "spine"),
    ("head", "shoulder_center"),
    ("left_shoulder", "shoulder_center"),
    ("left_elbow", "left_shoulder"),
    ("left_wrist", "left_elbow"),
    ("left_hand", "left_wrist"),
    ("right_shoulder", "shoulder_center"),
    ("right_elbow", "right_shoulder"),
    ("right_wrist", "right_elbow"),
    ("right_hand", "right_wrist"),
    ("left_hip", "hip_center"),
    ("left_knee", "left_hip"),
    ("left_ankle", "left_knee"),
    ("left_foot", "left_ankle"),
    ("right_hip", "hip_center"),
    ("right_knee", "right_hip"),
    ("right_ankle", "right_knee"),
    ("right_foot", "right_ankle"),
]
_KINECT20_REST = {
    "hip_center": "pelvis",
    "spine": "spine_mid",
    "shoulder_center": "spine_top",
    "head": "head",
    **_limb_parts(_same(_ARM + _LEG)),
}

# OpenPose COCO-18 order, as in ST-GCN's Kinetics-skeleton; the tree is ST-GCN's edge list rooted at the neck.
_OPENPOSE18 = [
    ("nose", "neck"),
    ("neck", None),
    ("right_shoulder", "neck"),
    ("right_elbow", "right_shoulder"),
    ("right_wrist", "right_elbow"),
    ("left_shoulder", "neck"),
    ("left_elbow", "left_shoulder"),
    ("left_wrist", "left_elbow"),
    ("right_hip", "right_shoulder"),
    ("right_knee", "right_hip"),
    ("right_ankle", "right_knee"),
    ("left_hip", "left_shoulder"),
    ("left_knee", "left_hip"),
    ("left_ankle", "left_knee"),
    ("right_eye", "nose"),
    ("left_eye", "nose"),
    ("right_ear", "right_eye"),
    ("left_ear", "left_eye"),
]
_OPENPOSE18_REST = {
    "nose": "nose",
    "neck": "spine_top",
    **_limb_parts(_same(("shoulder", "elbow", "wrist", "hip", "knee", "ankle", "eye", "ear"))),
}

# COCO-17 keypoints (pyskl / PoseC3D, mmpose); the tree is pyskl's coco edge list rooted at the nose.
_COCO17 = [
    ("nose", None),
    ("left_eye", "nose"),
    ("right_eye", "nose"),
    ("left_ear", "left_eye"),
    ("right_ear", "right_eye"),
    ("left_shoulder", "nose"),
    ("right_shoulder", "nose"),
    ("left_elbow", "left_shoulder"),
    ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"),
    ("right_wrist", "right_elbow"),
    ("left_hip", "left_shoulder"),
    ("right_hip", "right_shoulder"),
    ("left_knee", "left_hip"),
    ("right_knee", "right_hip"),
    ("left_ankle", "left_knee"),
    ("right_ankle", "right_knee"),
]
_COCO17_REST = {"nose": "nose", **{k: v for k, v in _OPENPOSE18_REST.items() if k not in ("nose", "neck")}}

# gait16 joint -> the body part of that name in the fuller layouts (gait16's "hand" sits at the wrist).
_LIMBS_TO_GAIT = {
    "shoulder": "shoulder",
    "elbow": "elbow",
    "hand": "wrist",
    "hip": "hip",
    "knee": "knee",
    "foot": "ankle",
}

_GAIT16 = [
    ("root", None),
    ("spine", "root"),
    ("neck", "spine"),
    ("head", "neck"),
    ("left_shoulder", "neck"),
    ("left_elbow", "left_shoulder"),
    ("left_hand", "left_elbow"),
    ("right_shoulder", "neck"),
    ("right_elbow", "right_shoulder"),
    ("right_hand", "right_elbow"),
    ("left_hip", "root"),
    ("left_knee", "left_hip"),
    ("left_foot", "left_knee"),
    ("right_hip", "root"),
    ("right_knee", "right_hip"),
    ("right_foot", "right_knee"),
]
_GAIT16_REST = {
    "root": "pelvis",
    "spine": "spine_mid",
    "neck": "spine_top",
    "head": "head",
    **_limb_parts(_LIMBS_TO_GAIT),
}


def _limb_map(names: dict[str, str]) -> dict[str, str]:
    return {f"{side}_{g}": f"{side}_{src}" for side in _SIDES for g, src in names.items()}


_LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        _make(
            "ntu25",
            "Kinect v2, 25 joints (NTU RGB+D 60/120)",
            _NTU25,
            _NTU25_REST,
            {
                "root": "spine_base",
                "spine": "spine_mid",
                "neck": "spine_shoulder",
                "head": "head",
                **_limb_map(_LIMBS_TO_GAIT),
            },
        ),
        _make(
            "kinect20",
            "Kinect v1, 20 joints in SDK order (UTD-MHAD, N-UCLA, MSR Action3D)",
            _KINECT20,
            _KINECT20_REST,
            {
                "root": "hip_center",
                "spine": "spine",
                "neck": "shoulder_center",
                "head": "head",
                **_limb_map(_LIMBS_TO_GAIT),
            },
        ),
        _make(
            "openpose18",
            "OpenPose COCO-18 (Kinetics-skeleton, ST-GCN order)",
            _OPENPOSE18,
            _OPENPOSE18_REST,
            {
                "root": {"left_hip": 0.5, "right_hip": 0.5},
                "spine": {"left_hip": 0.25, "right_hip": 0.25, "neck": 0.5},
                "neck": "neck",
                "head": "nose",
                **_limb_map(_LIMBS_TO_GAIT),
            },
        ),
        _make(
            "coco17",
            "COCO-17 keypoints (pyskl / PoseC3D 2D pose, mmpose)",
            _COCO17,
            _COCO17_REST,
            {
                "root": {"left_hip": 0.5, "right_hip": 0.5},
                "spine": {"left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25},
                "neck": {"left_shoulder": 0.5, "right_shoulder": 0.5},
                "head": "nose",
                **_limb_map(_LIMBS_TO_GAIT),
            },
        ),
        _make(
            "gait16",
            "Emotion-Gait, 16 joints (STEP / ProxEmo)",
            _GAIT16,
            _GAIT16_REST,
            {g: g for g in GAIT16_JOINTS},
        ),
    )
}


def list_layouts() -> list[str]:
    """The layouts' names, sorted.

    Example:
        >>> list_layouts()
        ['coco17', 'gait16', 'kinect20', 'ntu25', 'openpose18']
    """
    return sorted(_LAYOUTS)


def get_layout(name: str | Layout) -> Layout:
    """The layout called ``name``; a :class:`Layout` passes through. An unknown name is a ``KeyError``.

    Example:
        >>> layout = get_layout("kinect20")
        >>> layout.num_joints, layout.joint_names[layout.root], layout.index("head")
        (20, 'hip_center', 3)
    """
    if isinstance(name, Layout):
        return name
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise KeyError(
            f"unknown skeleton layout {name!r}; known layouts: {', '.join(list_layouts())}"
        ) from None
