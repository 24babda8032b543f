"""Generated human motion: the project's own data for the demo, tests and emotion pre-training.

Clips are made by forward kinematics on the layout's bone tree, so every clip keeps its bone lengths
exactly (before sensor noise). Each action class is a set of joint-angle trajectories; each clip draws a
performer (body proportions), speed, amplitude, phase, start frame, length, camera and a perceived-emotion
style that changes posture and tempo as the gait-emotion literature describes (Roether et al. 2009,
"Critical features for the perception of emotion from gait"; Bhattacharya et al. 2020, STEP): sad is slow,
small, with head and shoulders lowered; angry is fast, large and abrupt; happy is upright, bouncy and fast.

World frame: metres, y up, the performer faces +z, their left is +x. The camera then rotates the scene
about the vertical axis, tilts it slightly and places it 2.5-3.5 m in front, as a Kinect would see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lightning_skel.data.io import SkeletonData, validate
from lightning_skel.skeleton.layouts import GAIT16_JOINTS, Layout, get_layout

EMOTIONS: tuple[str, ...] = ("happy", "angry", "sad", "neutral")

# Style per emotion: tempo and amplitude factors, posture offsets (radians), bounce (metres), abruptness.
_STYLE = {
    "happy": dict(tempo=1.2, amp=1.1, spine=-0.08, head=-0.12, shrug=0.05, bounce=0.03, sharp=1.0),
    "angry": dict(tempo=1.35, amp=1.25, spine=0.06, head=0.0, shrug=0.10, bounce=0.0, sharp=3.0),
    "sad": dict(tempo=0.75, amp=0.7, spine=0.18, head=0.40, shrug=-0.15, bounce=0.0, sharp=1.0),
    "neutral": dict(tempo=1.0, amp=1.0, spine=0.0, head=0.0, shrug=0.0, bounce=0.0, sharp=1.0),
}


def _rx(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


# Degrees of freedom: name -> (gait16 joint J, gait16 joint K toward which the rotated bone points, rotation
# of the angle). The rotation acts on the bone that leaves J on the path to K, and on everything below it.
# Signs: positive flexion swings a hanging limb forward (+z), positive abduction lifts an arm sideways,
# positive knee flexion swings the shank back, positive spine/head flexion bends forward, positive shrug
# lifts the shoulder.
_DOFS: dict[str, tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = {
    "spine": ("root", "neck", lambda a: _rx(a)),
    "head": ("neck", "head", lambda a: _rx(a)),
    "l_shrug": ("neck", "left_shoulder", lambda a: _rz(a)),
    "r_shrug": ("neck", "right_shoulder", lambda a: _rz(-a)),
    "l_sh_abd": ("left_shoulder", "left_elbow", lambda a: _rz(a)),
    "r_sh_abd": ("right_shoulder", "right_elbow", lambda a: _rz(-a)),
    "l_sh_flex": ("left_shoulder", "left_elbow", lambda a: _rx(-a)),
    "r_sh_flex": ("right_shoulder", "right_elbow", lambda a: _rx(-a)),
    "l_elbow": ("left_elbow", "left_hand", lambda a: _rx(-a)),
    "r_elbow": ("right_elbow", "right_hand", lambda a: _rx(-a)),
    "l_hip": ("left_hip", "left_knee", lambda a: _rx(-a)),
    "r_hip": ("right_hip", "right_knee", lambda a: _rx(-a)),
    "l_knee": ("left_knee", "left_foot", lambda a: _rx(a)),
    "r_knee": ("right_knee", "right_foot", lambda a: _rx(a)),
}
# Applied in this order to a bone that several DOFs move (abduction after flexion, in the parent's frame).
_DOF_ORDER = tuple(_DOFS)


@dataclass
class Motion:
    """The motion of one person for a batch of N clips of T frames.

    Args:
        angles: joint angles in radians by degree of freedom (``"l_elbow"``, ``"r_sh_abd"``, ...), each
            ``(N, T)``; a missing one stays at rest.
        yaw: ``(N, T)`` rotation of the whole body about the vertical axis, radians.
        offset: ``(N, T, 3)`` translation of the whole body in metres (grounding adds to y afterwards).
        lift: ``(N, T)`` height above the ground contact in metres (jumps).

    Example:
        >>> z = np.zeros((1, 4))  # one clip of four frames
        >>> bent = Motion({"l_elbow": np.full((1, 4), np.pi / 2)}, yaw=z, offset=np.zeros((1, 4, 3)), lift=z)
        >>> bent.angles["l_elbow"].shape
        (1, 4)
    """

    angles: dict[str, np.ndarray]
    yaw: np.ndarray
    offset: np.ndarray
    lift: np.ndarray


@dataclass
class ClipParams:
    """Per-clip random draws shared by every action, each array ``(N,)``.

    Args:
        speed: tempo factor.
        amp: amplitude factor.
        phase: phase of the oscillations, radians.
        start: the frame the motion starts at.
        length: the clip's valid frames.
        frames: ``T``, the frames of every clip.
        style: the emotion's style factors by name (``tempo``, ``amp``, ``sharp``, ...), each ``(N,)``.

    Example:
        >>> one, style = np.ones(2), {"tempo": np.ones(2), "amp": np.ones(2), "sharp": np.ones(2)}
        >>> p = ClipParams(one, one, 0 * one, np.zeros(2, int), length=np.full(2, 30), frames=30, style=style)
        >>> p.progress.shape, p.ramp()[0, [0, -1]]
        ((2, 30), array([0., 1.]))
    """

    speed: np.ndarray
    amp: np.ndarray
    phase: np.ndarray
    start: np.ndarray
    length: np.ndarray
    frames: int
    style: dict[str, np.ndarray]

    @property
    def t(self) -> np.ndarray:
        """Seconds since the motion started, ``(N, T)``, 0 before the start frame (30 fps)."""
        f = np.arange(self.frames)[None, :]
        return np.clip(f - self.start[:, None], 0, None) / 30.0

    @property
    def progress(self) -> np.ndarray:
        """0 -> 1 over the clip's active part, ``(N, T)``, for one-shot actions."""
        f = np.arange(self.frames)[None, :]
        span = np.maximum(self.length - self.start, 2)[:, None] - 1
        return np.clip((f - self.start[:, None]) / span, 0.0, 1.0)

    def wave(self, hz: float) -> np.ndarray:
        """An oscillation in [-1, 1] at ``hz`` scaled by speed and tempo, made abrupt for angry clips."""
        w = 2 * np.pi * hz * self.speed[:, None] * self.style["tempo"][:, None] * self.t + self.phase[:, None]
        s = np.sin(w)
        sharp = self.style["sharp"][:, None]
        return np.sign(s) * np.abs(s) ** (1.0 / sharp)

    @property
    def gain(self) -> np.ndarray:
        return (self.amp * self.style["amp"])[:, None]

    def bell(self, centre: float = 0.5, width: float = 0.22) -> np.ndarray:
        """A smooth 0 -> 1 -> 0 bump over the progress (sharper for abrupt styles)."""
        p = self.progress
        return np.exp(-(((p - centre) / width) ** 2) * self.style["sharp"][:, None])

    def ramp(self) -> np.ndarray:
        """Smooth 0 -> 1 over the progress (smoothstep)."""
        p = self.progress
        return p * p * (3 - 2 * p)


def _zeros(p: ClipParams) -> Motion:
    n, t = p.speed.shape[0], p.frames
    return Motion(angles={}, yaw=np.zeros((n, t)), offset=np.zeros((n, t, 3)), lift=np.zeros((n, t)))


def _arm_down_idle(m: Motion, p: ClipParams) -> None:
    """Slight elbow bend so that resting arms are not perfectly straight."""
    for side in ("l", "r"):
        m.angles.setdefault(f"{side}_elbow", np.full_like(p.t, 0.15))


# ---- action classes --------------------------------------------------------------------------------
def _wave(p: ClipParams) -> Motion:
    m = _zeros(p)
    up = np.minimum(p.ramp() * 4, 1.0)
    m.angles["r_sh_abd"] = up * (2.2 + 0.2 * p.gain)
    m.angles["r_elbow"] = up * (0.6 + 0.45 * p.gain * p.wave(1.6))
    m.angles["r_sh_flex"] = up * 0.25
    return m


def _clap(p: ClipParams) -> Motion:
    m = _zeros(p)
    up = np.minimum(p.ramp() * 4, 1.0)
    open_close = 0.5 * (1 + p.wave(1.4))
    for side in ("l", "r"):
        m.angles[f"{side}_sh_flex"] = up * 1.3
        m.angles[f"{side}_sh_abd"] = up * (-0.15 + 0.55 * p.gain * open_close)
        m.angles[f"{side}_elbow"] = up * 0.6
    return m


def _punch(p: ClipParams) -> Motion:
    m = _zeros(p)
    jab = np.clip(p.wave(1.1), 0, None) * p.gain
    guard = np.minimum(p.ramp() * 5, 1.0)
    m.angles["r_sh_flex"] = guard * (0.6 + 0.9 * jab)
    m.angles["r_elbow"] = guard * (2.0 - 1.9 * np.clip(jab, 0, 1))
    m.angles["l_sh_flex"] = guard * 0.6
    m.angles["l_elbow"] = guard * 2.0
    m.angles["spine"] = 0.1 * jab
    m.yaw = -0.25 * jab
    return m


def _kick(p: ClipParams) -> Motion:
    m = _zeros(p)
    k = p.bell(0.5, 0.18) * p.gain
    m.angles["r_hip"] = 1.3 * k
    m.angles["r_knee"] = 1.2 * p.bell(0.38, 0.12) * p.gain
    m.angles["l_sh_abd"] = 0.4 * k
    m.angles["r_sh_abd"] = 0.4 * k
    m.angles["spine"] = -0.15 * k
    return m


def _squat(p: ClipParams) -> Motion:
    m = _zeros(p)
    d = 0.5 * (1 - np.cos(2 * np.pi * p.progress * np.maximum(np.round(p.speed * 1.5), 1)[:, None])) * p.gain
    for side in ("l", "r"):
        m.angles[f"{side}_hip"] = 1.4 * d
        m.angles[f"{side}_knee"] = 2.0 * d
        m.angles[f"{side}_sh_flex"] = 1.4 * d
    m.angles["spine"] = 0.35 * d
    return m


def _jump(p: ClipParams) -> Motion:
    m = _zeros(p)
    hop = np.clip(p.wave(1.2), 0, None)
    crouch = np.clip(-p.wave(1.2), 0, None)
    for side in ("l", "r"):
        m.angles[f"{side}_hip"] = 0.7 * crouch * p.gain
        m.angles[f"{side}_knee"] = 1.1 * crouch * p.gain
        m.angles[f"{side}_sh_flex"] = -0.4 * crouch + 1.2 * hop
    m.lift = 0.25 * hop * p.gain
    return m


def _bow(p: ClipParams) -> Motion:
    m = _zeros(p)
    b = p.bell(0.5, 0.25) * p.gain
    m.angles["spine"] = 1.0 * b
    m.angles["head"] = 0.3 * b
    for side in ("l", "r"):
        m.angles[f"{side}_hip"] = 0.25 * b
    return m


def _walk(p: ClipParams) -> Motion:
    m = _zeros(p)
    s = p.wave(0.9)
    g = p.gain
    m.angles["l_hip"] = 0.6 * g * np.clip(s, 0, None)
    m.angles["r_hip"] = 0.6 * g * np.clip(-s, 0, None)
    m.angles["l_knee"] = 1.1 * g * np.clip(s, 0, None)
    m.angles["r_knee"] = 1.1 * g * np.clip(-s, 0, None)
    m.angles["l_sh_flex"] = -0.35 * g * s
    m.angles["r_sh_flex"] = 0.35 * g * s
    return m


def _raise_arms(p: ClipParams) -> Motion:
    m = _zeros(p)
    r = p.bell(0.5, 0.28) * p.gain
    for side in ("l", "r"):
        m.angles[f"{side}_sh_abd"] = 2.7 * np.clip(r, 0, 1.1)
    m.angles["head"] = -0.2 * r
    return m


def _turn(p: ClipParams) -> Motion:
    m = _zeros(p)
    direction = np.where(p.phase > np.pi, 1.0, -1.0)[:, None]
    m.yaw = direction * np.pi * p.ramp() * p.gain
    s = p.wave(1.0)
    m.angles["l_hip"] = 0.25 * np.clip(s, 0, None)
    m.angles["r_hip"] = 0.25 * np.clip(-s, 0, None)
    m.angles["l_knee"] = 0.4 * np.clip(s, 0, None)
    m.angles["r_knee"] = 0.4 * np.clip(-s, 0, None)
    return m


def _handshake(p: ClipParams) -> tuple[Motion, Motion]:
    people = []
    for _ in range(2):
        m = _zeros(p)
        reach = np.minimum(p.ramp() * 3, 1.0)
        m.angles["r_sh_flex"] = reach * (0.75 + 0.15 * p.gain * p.wave(2.0))
        m.angles["r_elbow"] = reach * 0.5
        people.append(m)
    return people[0], people[1]


def _push(p: ClipParams) -> tuple[Motion, Motion]:
    a, b = _zeros(p), _zeros(p)
    hit = p.bell(0.45, 0.15) * p.gain
    after = np.clip(p.progress - 0.45, 0, None) / 0.55
    for side in ("l", "r"):
        a.angles[f"{side}_sh_flex"] = 1.4 * np.minimum(p.ramp() * 3, 1.0)
        a.angles[f"{side}_elbow"] = 1.8 * (1 - hit)
        b.angles[f"{side}_sh_abd"] = 0.5 * hit
    a.angles["spine"] = 0.2 * hit
    b.angles["spine"] = -0.25 * hit
    b.offset[:, :, 2] = -0.45 * (after * after * (3 - 2 * after)) * p.gain  # pushed back (b faces -z)
    return a, b


ACTIONS: dict[str, Callable[[ClipParams], Motion | tuple[Motion, Motion]]] = {
    "wave": _wave,
    "clap": _clap,
    "punch": _punch,
    "kick": _kick,
    "squat": _squat,
    "jump": _jump,
    "bow": _bow,
    "walk in place": _walk,
    "raise both arms": _raise_arms,
    "turn around": _turn,
    "handshake": _handshake,
    "push": _push,
}
TWO_PERSON = ("handshake", "push")


# ---- forward kinematics ----------------------------------------------------------------------------
def _dof_bones(layout: Layout) -> dict[str, int]:
    """For each DOF, the joint at the end of the bone it rotates, where the layout has the joints."""
    out = {}
    for name, (j_name, k_name, _) in _DOFS.items():
        j, k = layout.gait16_joint(j_name), layout.gait16_joint(k_name)
        if j is None or k is None:
            continue  # the layout has no single joint there (e.g. openpose18's pelvis): DOF not available
        # walk up from k to the child of j on the path
        c = k
        while c >= 0 and layout.parents[c] != j:
            c = layout.parents[c]
        if c >= 0:
            out[name] = c
    return out


def forward_kinematics(layout: Layout, offsets: np.ndarray, motion: Motion) -> np.ndarray:
    """Joint positions by forward kinematics along the layout's bone tree.

    Loops over the joints in topological order: FK is sequential along the tree. It runs once when a data
    set is generated, vectorised over clips and frames.

    Args:
        layout: the skeleton layout.
        offsets: ``(N, V, 3)`` bone offsets in metres (rest-pose differences, scaled per clip); the root's
            entry is its rest position.
        motion: the :class:`Motion` of ``(N, T)`` frames.

    Returns:
        ``(N, T, V, 3)`` positions in metres, y up.

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> lay = get_layout("kinect20")
        >>> rest, parents = lay.rest_array.astype(float), np.array(lay.parents)
        >>> offsets = (rest - np.where(parents[:, None] >= 0, rest[np.maximum(parents, 0)], 0.0))[None]
        >>> still = Motion({}, np.zeros((1, 4)), np.zeros((1, 4, 3)), np.zeros((1, 4)))
        >>> np.allclose(forward_kinematics(lay, offsets, still)[0, 0], rest)  # no motion: the rest pose
        True
    """
    n, t = motion.yaw.shape
    v = layout.num_joints
    eye = np.broadcast_to(np.eye(3), (n, t, 3, 3))
    local = {}
    dof_bone = _dof_bones(layout)
    for name in _DOF_ORDER:
        if name in motion.angles and name in dof_bone:
            c = dof_bone[name]
            r = _DOFS[name][2](motion.angles[name])
            local[c] = r @ local[c] if c in local else r
    rot = np.empty((n, t, v, 3, 3))
    pos = np.empty((n, t, v, 3))
    root = layout.root
    rot[:, :, root] = local.get(root, eye)
    pos[:, :, root] = offsets[:, None, root]
    for j in layout.topological_order[1:]:
        p = layout.parents[j]
        rot[:, :, j] = rot[:, :, p] @ local[j] if j in local else rot[:, :, p]
        pos[:, :, j] = pos[:, :, p] + np.einsum("ntij,nj->nti", rot[:, :, j], offsets[:, j])
    # whole-body yaw about the pelvis, then translation
    pelvis = np.einsum("gv,ntvc->ntgc", layout.gait16_matrix[:1], pos)  # (N, T, 1, 3)
    pos = np.einsum("ntij,ntvj->ntvi", _ry(motion.yaw), pos - pelvis) + pelvis
    return pos + motion.offset[:, :, None, :]


def _ground(layout: Layout, pos: np.ndarray, rest_floor: np.ndarray, lift: np.ndarray) -> np.ndarray:
    """Translate each frame vertically so the lower foot rests on the floor, plus ``lift`` (jumps)."""
    feet = [GAIT16_JOINTS.index("left_foot"), GAIT16_JOINTS.index("right_foot")]
    foot_y = np.einsum("gv,ntv->ntg", layout.gait16_matrix[feet], pos[..., 1]).min(-1)  # (N, T)
    pos = pos.copy()
    pos[..., 1] += (rest_floor[:, None] - foot_y + lift)[:, :, None]
    return pos


def generate(
    num_per_class: int,
    seed: int,
    frames: int = 64,
    layout: str = "ntu25",
    noise_std: float = 0.005,
    num_subjects: int = 10,
    num_views: int = 3,
    classes: tuple[str, ...] | None = None,
    label: str = "action",
) -> SkeletonData:
    """Generate ``num_per_class`` clips of each action class as a skeleton-npz dict.

    Deterministic for a ``seed``. Single-person classes leave person 2 zero; frames past ``lengths`` are
    zero. Extra keys: ``subject``, ``view``, ``emotion`` with ``emotion_names``.

    Args:
        num_per_class: clips per class, at least 1.
        seed: the seed of every draw.
        frames: ``T``, at least 8 (default 64); each clip has 80 % to 100 % of them valid.
        layout: the skeleton layout (default ``ntu25``).
        noise_std: standard deviation of Gaussian sensor noise in metres (default 0.005; 0: none).
        num_subjects: performers, each with its own body proportions (default 10).
        num_views: cameras, yaw spread over -45 to +45 degrees plus jitter (default 3).
        classes: the action classes (default all of :data:`ACTIONS`).
        label: ``"action"`` (default), or ``"emotion"``: the perceived emotion is the class (data for the
            emotion recognizer).

    Returns:
        A validated skeleton-npz dict, ``x (N, 3, frames, V, 2)`` in metres, camera coordinates.

    Example:
        >>> data = generate(num_per_class=2, seed=0, frames=16, layout="kinect20")
        >>> data["x"].shape, data["class_names"][:3]
        ((24, 3, 16, 20, 2), ['wave', 'clap', 'punch'])
    """
    if label not in ("action", "emotion"):
        raise ValueError(f"label must be 'action' or 'emotion', got {label!r}")
    if num_per_class < 1:
        raise ValueError(f"num_per_class must be >= 1, got {num_per_class}")
    if frames < 8:
        raise ValueError(f"frames must be >= 8, got {frames}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    lay = get_layout(layout)
    names = tuple(ACTIONS) if classes is None else tuple(classes)
    unknown = [c for c in names if c not in ACTIONS]
    if unknown:
        raise KeyError(f"unknown action class(es) {unknown}; known: {list(ACTIONS)}")
    rng = np.random.default_rng(seed)
    n = num_per_class * len(names)
    y = np.repeat(np.arange(len(names)), num_per_class)
    # balanced emotions within each class, in random order
    emotion = np.concatenate([rng.permutation(np.arange(num_per_class) % len(EMOTIONS)) for _ in names])
    subject = rng.integers(0, num_subjects, n)
    view = rng.integers(0, num_views, n)
    style = {
        k: np.array([_STYLE[EMOTIONS[e]][k] for e in emotion], dtype=np.float64) for k in _STYLE["neutral"]
    }

    lengths = rng.integers(int(0.8 * frames), frames + 1, n)
    params = ClipParams(
        speed=rng.uniform(0.8, 1.25, n),
        amp=rng.uniform(0.8, 1.2, n),
        phase=rng.uniform(0, 2 * np.pi, n),
        start=rng.integers(0, max(frames // 6, 1), n),
        length=lengths,
        frames=frames,
        style=style,
    )
    # body proportions: a per-performer scale and per-bone factors, then a small per-clip jitter
    subj_rng = np.random.default_rng(10_000 + seed)
    subj_scale = subj_rng.uniform(0.88, 1.12, num_subjects)
    subj_bone = subj_rng.uniform(0.93, 1.07, (num_subjects, lay.num_joints))
    rest = lay.rest_array.astype(np.float64)
    parents = np.array(lay.parents)
    offsets = rest - np.where(parents[:, None] >= 0, rest[np.maximum(parents, 0)], 0.0)
    factor = subj_scale[subject, None] * subj_bone[subject] * rng.uniform(0.98, 1.02, (n, lay.num_joints))
    factor[:, lay.root] = subj_scale[subject]
    offsets = offsets[None] * factor[..., None]  # (N, V, 3)

    xyz = np.zeros((n, frames, lay.num_joints, 2, 3))
    for ci, name in enumerate(names):  # one vectorised batch per action class
        idx = np.nonzero(y == ci)[0]
        sub = ClipParams(
            **{k: getattr(params, k)[idx] for k in ("speed", "amp", "phase", "start", "length")},
            frames=frames,
            style={k: v[idx] for k, v in style.items()},
        )
        people = ACTIONS[name](sub)
        people = people if isinstance(people, tuple) else (people,)
        for m_i, motion in enumerate(people):
            _apply_style(motion, sub)
            _arm_down_idle(motion, sub)
            if m_i == 1:  # the partner stands facing the first person, about an arm's reach away
                motion.yaw = motion.yaw + np.pi
                gap = rng.uniform(0.9, 1.2, idx.size)
                motion.offset[:, :, 2] = gap[:, None] - motion.offset[:, :, 2]
            pos = forward_kinematics(lay, offsets[idx], motion)
            rest_pos = forward_kinematics(lay, offsets[idx], _zeros(sub))
            feet = [GAIT16_JOINTS.index("left_foot"), GAIT16_JOINTS.index("right_foot")]
            floor_i = (lay.gait16_matrix[feet] @ rest_pos[:, 0, :, 1].T).min(0)
            xyz[idx, :, :, m_i] = _ground(lay, pos, floor_i, motion.lift)
    # camera: yaw per view (+ jitter), small pitch, 2.5-3.5 m away; y relative to a 0.7-1.0 m high sensor
    yaw = (np.linspace(-np.pi / 4, np.pi / 4, num_views) if num_views > 1 else np.zeros(1))[view]
    yaw = yaw + rng.uniform(-0.15, 0.15, n) + np.pi  # the performer faces the camera
    pitch = rng.uniform(-0.1, 0.1, n)
    cam = _rx(pitch) @ _ry(yaw)  # (N, 3, 3)
    shift = np.stack([rng.uniform(-0.4, 0.4, n), -rng.uniform(0.7, 1.0, n), rng.uniform(2.5, 3.5, n)], -1)
    xyz = np.einsum("nij,ntvmj->ntvmi", cam, xyz) + shift[:, None, None, None, :]

    valid = (np.arange(frames)[None, :] < lengths[:, None])[:, :, None, None, None]  # (N, T, 1, 1, 1)
    present = np.ones((n, 1, 1, 2, 1), dtype=bool)
    present[~np.isin(y, [names.index(c) for c in TWO_PERSON if c in names]), 0, 0, 1, 0] = False
    mask = valid & present
    if noise_std > 0:
        xyz = xyz + rng.normal(0.0, noise_std, xyz.shape)
    xyz = np.where(mask, xyz, 0.0)
    x = np.ascontiguousarray(
        xyz.transpose(0, 4, 1, 2, 3), dtype=np.float32
    )  # (N, T, V, M, C) -> (N, C, T, V, M)
    if label == "emotion":
        y, names = emotion, EMOTIONS
    data = {
        "x": x,
        "y": y.astype(np.int64),
        "lengths": lengths.astype(np.int64),
        "layout": lay.name,
        "class_names": list(names),
        "subject": subject.astype(np.int64),
        "view": view.astype(np.int64),
        "emotion": emotion.astype(np.int64),
        "emotion_names": list(EMOTIONS),
    }
    return validate(data, f"<generated {lay.name}>")


def _apply_style(m: Motion, p: ClipParams) -> None:
    """Posture of the emotion: trunk and head flexion, shoulder height, bounce."""
    ones = np.ones_like(p.t)
    st = p.style
    m.angles["spine"] = m.angles.get("spine", 0 * ones) + st["spine"][:, None]
    m.angles["head"] = m.angles.get("head", 0 * ones) + st["head"][:, None]
    for side in ("l", "r"):
        m.angles[f"{side}_shrug"] = m.angles.get(f"{side}_shrug", 0 * ones) + st["shrug"][:, None]
    bounce = np.abs(np.sin(2 * np.pi * 2.0 * p.speed[:, None] * p.t + p.phase[:, None]))
    m.lift = m.lift + st["bounce"][:, None] * bounce * (p.t > 0)
