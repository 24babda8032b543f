"""NTU RGB+D 60 / 120 raw skeleton files (Shahroudy et al. CVPR 2016; Liu et al. TPAMI 2019).

Each ``SsssCcccPpppRrrrAaaa.skeleton`` holds one clip recorded by a Kinect v2 (25 joints, camera
coordinates in metres) as text, one item a line::

    <frames>
    per frame:  <bodies>
      per body: <bodyID clipedEdges handLeftConfidence handLeftState handRightConfidence handRightState
                 isRestricted leanX leanY trackingState>          (10 fields)
                <joints>                                          (25)
                per joint: <x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState>

The file name gives setup ``S``, camera ``C`` (the view), performer ``P`` (the subject), replication ``R``
and action ``A`` (label ``A - 1``). NTU RGB+D 60 has A001..A060 and S001..S017, NTU RGB+D 120 adds
A061..A120 and S018..S032.

Parsing (:func:`parse_skeleton`) is one compiled pass over the bytes (numba): the line structure is
checked against the layout above, x, y, z are decoded exactly as Python's ``float`` would, and every other
field is checked to be a number; no Python code runs per frame, body or joint. Anything this fast path
does not accept (a malformed file, or an unusual but valid one, e.g. tab separators or numbers of more
than 15 digits) goes to a line-by-line reader that either returns the same result or raises
:class:`~lightning_skel.data.readers.base.ReadError` with the 1-based line number of the problem.

Body selection, the reader's option ``pipeline``: ``project`` (the default, :func:`select_bodies`) is the
project's own, after the denoising of SGN and CTR-GCN (``data/ntu/get_raw_denoised_data.py``) but keeping
every frame; ``stgcn``, ``agcn`` and ``ctrgcn`` (= ``sgn``) reproduce the official repositories'
preprocessing exactly, up to where it becomes model input (padding, normalisation and translation are the
model-side pipelines' part): see :data:`NTU_PIPELINES`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numba
import numpy as np

from lightning_skel.data.io import SkeletonData
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError, stack_clips

# progress messages (shown by ``prepare`` without --verbose)
progress_log = logging.getLogger("lightning_skel.progress")

__all__ = [
    "NTU60_ACTIONS",
    "NTU120_ACTIONS",
    "NTU_PIPELINES",
    "NTUName",
    "NTUReader",
    "RawSkeleton",
    "denoise_ctrgcn",
    "parse_ntu_name",
    "parse_skeleton",
    "read_ntu_skeleton",
    "select_bodies",
    "select_bodies_agcn",
    "select_bodies_stgcn",
]

# The official action names (github.com/shahroudy/NTURGB-D), A001..A120; label = A - 1.
NTU120_ACTIONS: tuple[str, ...] = (
    "drink water",
    "eat meal/snack",
    "brushing teeth",
    "brushing hair",
    "drop",
    "pickup",
    "throw",
    "sitting down",
    "standing up (from sitting position)",
    "clapping",
    "reading",
    "writing",
    "tear up paper",
    "wear jacket",
    "take off jacket",
    "wear a shoe",
    "take off a shoe",
    "wear on glasses",
    "take off glasses",
    "put on a hat/cap",
    "take off a hat/cap",
    "cheer up",
    "hand waving",
    "kicking something",
    "reach into pocket",
    "hopping (one foot jumping)",
    "jump up",
    "make a phone call/answer phone",
    "playing with phone/tablet",
    "typing on a keyboard",
    "pointing to something with finger",
    "taking a selfie",
    "check time (from watch)",
    "rub two hands together",
    "nod head/bow",
    "shake head",
    "wipe face",
    "salute",
    "put the palms together",
    "cross hands in front (say stop)",
    "sneeze/cough",
    "staggering",
    "falling",
    "touch head (headache)",
    "touch chest (stomachache/heart pain)",
    "touch back (backache)",
    "touch neck (neckache)",
    "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person",
    "kicking other person",
    "pushing other person",
    "pat on back of other person",
    "point finger at the other person",
    "hugging other person",
    "giving something to other person",
    "touch other person's pocket",
    "handshaking",
    "walking towards each other",
    "walking apart from each other",
    "put on headphone",
    "take off headphone",
    "shoot at the basket",
    "bounce ball",
    "tennis bat swing",
    "juggling table tennis balls",
    "hush (quite)",
    "flick hair",
    "thumb up",
    "thumb down",
    "make ok sign",
    "make victory sign",
    "staple book",
    "counting money",
    "cutting nails",
    "cutting paper (using scissors)",
    "snapping fingers",
    "open bottle",
    "sniff (smell)",
    "squat down",
    "toss a coin",
    "fold paper",
    "ball up paper",
    "play magic cube",
    "apply cream on face",
    "apply cream on hand back",
    "put on bag",
    "take off bag",
    "put something into a bag",
    "take something out of a bag",
    "open a box",
    "move heavy objects",
    "shake fist",
    "throw up cap/hat",
    "hands up (both hands)",
    "cross arms",
    "arm circles",
    "arm swings",
    "running on the spot",
    "butt kicks (kick backward)",
    "cross toe touch",
    "side kick",
    "yawn",
    "stretch oneself",
    "blow nose",
    "hit other person with something",
    "wield knife towards other person",
    "knock over other person (hit with body)",
    "grab other person's stuff",
    "shoot at other person with a gun",
    "step on foot",
    "high-five",
    "cheers and drink",
    "carry something with other person",
    "take a photo of other person",
    "follow other person",
    "whisper in other person's ear",
    "exchange things with other person",
    "support somebody with hand",
    "finger-guessing game (playing rock-paper-scissors)",
)
NTU60_ACTIONS: tuple[str, ...] = NTU120_ACTIONS[:60]

# Official benchmark protocols (Shahroudy et al. 2016, Liu et al. 2019): the training performers / cameras.
XSUB60_TRAIN_PERFORMERS = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
XVIEW60_TRAIN_CAMERAS = frozenset((2, 3))
XSUB120_TRAIN_PERFORMERS = (
    XSUB60_TRAIN_PERFORMERS
    | frozenset(
        (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91)
    )
    | frozenset((92, 93, 94, 95, 97, 98, 100, 103))
)
SPLIT_ALIASES: dict[str, str] = {"xsub": "xsub60", "xview": "xview60", "xset": "xset120"}

NUM_JOINTS = 25
_JOINT_FIELDS = 12
_INFO_FIELDS = 10

# Body selection thresholds of SGN / CTR-GCN get_raw_denoised_data.py.
NOISE_LEN_THRES = 11  # a body tracked in <= 11 frames is noise
NOISE_SPR_THRES1 = 0.8  # a frame is noisy when x-range > 0.8 * y-range of its joints
NOISE_SPR_THRES2 = 0.69754  # a body with >= 69.754 % noisy frames is noise

_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


@dataclass(frozen=True)
class NTUName:
    """The fields of an NTU file name ``SsssCcccPpppRrrrAaaa``, as integers.

    Args:
        setup: ``S``, the recording setup.
        camera: ``C``, the view.
        performer: ``P``, the subject.
        replication: ``R``.
        action: ``A``, the label plus one.

    Example:
        >>> NTUName(1, 2, 3, 2, 13).action
        13
    """

    setup: int
    camera: int
    performer: int
    replication: int
    action: int


def parse_ntu_name(name: str) -> NTUName:
    """The fields of the NTU sample name in ``name``, a stem, file name or path; ``ValueError`` if none.

    Example:
        >>> parse_ntu_name("nturgbd/S001C002P003R002A013.skeleton")
        NTUName(setup=1, camera=2, performer=3, replication=2, action=13)
    """
    m = _NAME.search(os.path.basename(str(name)))
    if m is None:
        raise ValueError(f"{name!r} is not an NTU sample name (expected SsssCcccPpppRrrrAaaa)")
    return NTUName(*(int(g) for g in m.groups()))


@dataclass
class RawSkeleton:
    """The bodies of a ``.skeleton`` file: one record per (frame, body) pair, in file order.

    So ``frame`` never decreases, and the records of a frame are in the order the file lists its bodies.
    The fields other than the coordinates are checked to be numbers, then dropped.

    Args:
        num_frames: the file's frame count ``T``.
        frame: ``(R,)`` int64, each record's 0-based frame.
        body: ``(R,)`` int64, each record's index into ``body_ids``.
        body_ids: the Kinect body IDs, numbered by first appearance.
        xyz: ``(R, 25, 3)`` float64, the joints' camera coordinates in metres.

    Example:
        >>> raw = RawSkeleton(3, np.arange(3), body=np.zeros(3, int), body_ids=[1], xyz=np.ones((3, 25, 3)))
        >>> select_bodies(raw).shape  # 3 frames of one body
        (3, 3, 25, 2)
    """

    num_frames: int
    frame: np.ndarray
    body: np.ndarray
    body_ids: list[int]
    xyz: np.ndarray


# ---------------------------------------------------------------------------------------------------------
# Fast path: one compiled pass over the bytes.
#
# Written by hand because no library parses this format: numpy's text readers need one table shape, and
# decoding every number with numpy is slow however it is vectorised. numba compiles the scan below to a
# single pass that decodes only the coordinates and checks the other fields' spelling; compiled once per
# machine (``cache=True``).

# The compile-time note that ``parallel=True`` found nothing to parallelise is expected (see ``_scan``).
warnings.filterwarnings(
    "ignore", message=r"\s*The keyword argument 'parallel=True'", category=numba.NumbaPerformanceWarning
)
_POW10 = 10.0 ** np.arange(23)  # exact in float64
_MAX_DIGITS = 15  # longer numbers and other spellings go to the line-by-line reader (so values stay < 1e37)
_ID_DIGITS = 18  # below 2**63; Kinect body IDs have 17
# The fewest bytes a frame ("0" and a line break) and a body record (info line, joint count, 25 joint lines
# of one-character fields) take: what a file's size can hold bounds its frame count and the arrays' size.
_MIN_FRAME_BYTES = 2
_MIN_BODY_BYTES = 2 * _INFO_FIELDS + len("25\n") + NUM_JOINTS * 2 * _JOINT_FIELDS
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@numba.njit(cache=True, nogil=True, inline="always")
def _line_end(buf: np.ndarray, i: int) -> int:
    """The position after the line break (LF or CRLF) at ``i``, or ``len(buf)`` at the end of the data;
    -1 for anything else or when ``i`` is -1 (so that a failure carries through a chain of calls)."""
    n = len(buf)
    if i < 0 or i == n:
        return i
    if buf[i] == 10:
        return i + 1
    if buf[i] == 13 and i + 1 < n and buf[i + 1] == 10:
        return i + 2
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _count(buf: np.ndarray, i: int, max_digits: int) -> tuple[int, int]:
    """``(value, end)`` of the token at ``i`` if it is 1 to ``max_digits`` decimal digits, else ``(-1, -1)``."""
    n = len(buf)
    if i < 0:
        return -1, -1
    start, value = i, 0
    while i < n and 48 <= buf[i] <= 57:
        value = value * 10 + (int(buf[i]) - 48)
        i += 1
        if i - start > max_digits:
            return -1, -1
    if i == start or (i < n and buf[i] > 32):
        return -1, -1
    return value, i


@numba.njit(cache=True, nogil=True, inline="always")
def _number(buf: np.ndarray, i: int) -> tuple[float, int]:
    """``(value, end)`` of the token at ``i`` if it is ``-?digits[.digits][(e|E)[+-]digits]`` with 1 to 15
    significant-part digits and a decimal exponent of at most 22 in size, else ``(0.0, -1)``.

    The value equals Python's ``float`` of the token exactly (Clinger's fast path): the digits form an
    integer below 2**53 and the power of ten is exact in float64, so their one product or quotient is
    correctly rounded."""
    n = len(buf)
    if i < 0:
        return 0.0, -1
    negative = i < n and buf[i] == 45
    if negative:
        i += 1
    mantissa, digits, point = 0, 0, -1
    while i < n:
        c = np.int64(buf[i]) - 48
        if 0 <= c <= 9:
            mantissa = mantissa * 10 + c
            digits += 1
        elif c == -2 and point < 0:  # a point
            point = digits
        else:
            break
        i += 1
    exponent = digits - point if point >= 0 else 0  # value = mantissa / 10**exponent
    if digits and i < n and (buf[i] == 69 or buf[i] == 101):  # "E", "e"
        i += 1
        sign = -1 if i < n and buf[i] == 45 else 1
        if i < n and (buf[i] == 43 or buf[i] == 45):
            i += 1
        e, i = _count(buf, i, 3)
        exponent -= sign * e
        if i < 0:
            return 0.0, -1
    if digits == 0 or digits > _MAX_DIGITS or abs(exponent) >= len(_POW10) or (i < n and buf[i] > 32):
        return 0.0, -1
    value = mantissa / _POW10[exponent] if exponent >= 0 else mantissa * _POW10[-exponent]
    return (-value if negative else value), i


@numba.njit(cache=True, nogil=True, inline="always")
def _skip_number(buf: np.ndarray, i: int) -> int:
    """The end of the token at ``i`` if it is a number that :func:`_number` reads, else -1, without
    computing the value (for the fields that are checked and dropped)."""
    n = len(buf)
    if i < 0:
        return -1
    start = i
    if i < n and buf[i] == 45:  # "-"
        i += 1
    first, point = i, False
    while i < n:
        c = np.int64(buf[i]) - 48
        if not 0 <= c <= 9:
            if c != -2 or point:  # not the first "."
                break
            point = True
        i += 1
    digits = i - first - point
    if digits and i < n and (buf[i] == 69 or buf[i] == 101):  # an exponent
        return _number(buf, start)[1]
    if digits <= 0 or digits > _MAX_DIGITS or (i < n and buf[i] > 32):
        return -1
    return i


@numba.njit(cache=True, nogil=True, inline="always")
def _fields(buf: np.ndarray, i: int, count: int, out: np.ndarray) -> int:
    """Check ``count`` numbers separated by single spaces from ``i`` to a line break, storing the values of
    the first ``len(out)`` in ``out``; the position after the line break, or -1."""
    for k in range(count):
        if k and i >= 0:
            i = i + 1 if i < len(buf) and buf[i] == 32 else -1
        if k < len(out):
            out[k], i = _number(buf, i)
        else:
            i = _skip_number(buf, i)
    return _line_end(buf, i)


# ``parallel=True`` though the scan has no parallel loop (no ``prange``, no array expressions): numba's
# parallel pipeline compiles it to faster code (docs/RESULTS.md). It never enters a parallel region, so
# processes forked after it ran (``prepare --workers``) parse too (tested).
@numba.njit(cache=True, nogil=True, parallel=True)
def _scan(buf: np.ndarray) -> tuple:
    """Parse a file laid out exactly as the module docstring says (single spaces, LF or CRLF line breaks,
    only white space after the last frame): ``(ok, num_frames, frame (R,), body (R,), body_ids (B,),
    xyz (R, 25, 3) float64)``; ``ok`` is False, and the arrays empty, for anything else."""
    num_frames, i = _count(buf, 0, _ID_DIGITS)
    i = _line_end(buf, i)
    if num_frames > len(buf) // _MIN_FRAME_BYTES:  # more frames than the bytes hold: the slow path says so
        i = -1
    # at most one body record per _MIN_BODY_BYTES bytes: the arrays are never sized by the header alone
    cap, r = max(min(2 * num_frames, len(buf) // _MIN_BODY_BYTES + 1), 1), 0
    frame = np.empty(cap, np.int64)
    body_id = np.empty(cap, np.int64)
    xyz = np.empty((cap, NUM_JOINTS, 3))
    no_values = np.empty(0)
    for f in range(max(num_frames, 0)):
        bodies, i = _count(buf, i, 1)
        i = _line_end(buf, i)
        for _ in range(bodies):
            if r == cap:
                cap *= 2
                frame = np.concatenate((frame, np.empty_like(frame)))
                body_id = np.concatenate((body_id, np.empty_like(body_id)))
                xyz = np.concatenate((xyz, np.empty_like(xyz)))
            bid, i = _count(buf, i, _ID_DIGITS)
            if i >= 0:
                i = i + 1 if i < len(buf) and buf[i] == 32 else -1
            i = _fields(buf, i, _INFO_FIELDS - 1, no_values)
            joints, i = _count(buf, i, 2)
            i = _line_end(buf, i) if joints == NUM_JOINTS else -1
            for j in range(NUM_JOINTS):
                i = _fields(buf, i, _JOINT_FIELDS, xyz[r, j])
            frame[r] = f
            body_id[r] = bid
            r += 1
        if i < 0:
            break
    ok = num_frames > 0 and i >= 0
    for k in range(i if ok else len(buf), len(buf)):  # only white space may follow
        if buf[k] != 32 and not 9 <= buf[k] <= 13:
            ok = False
    if not ok:
        return False, 0, frame[:0].copy(), frame[:0].copy(), frame[:0].copy(), xyz[:0].copy()
    # Number the bodies by first appearance (a file has a handful of distinct IDs).
    body = np.empty(r, np.int64)
    ids = np.empty(r, np.int64)
    nb = 0
    for k in range(r):
        b = 0
        while b < nb and ids[b] != body_id[k]:
            b += 1
        if b == nb:
            ids[nb] = body_id[k]
            nb += 1
        body[k] = b
    return True, num_frames, frame[:r].copy(), body, ids[:nb].copy(), xyz[:r].copy()


def _is_count(token: bytes) -> bool:
    """A non-negative decimal integer of at most 20 digits (Kinect body IDs are 64-bit)."""
    return token.isdigit() and len(token) <= 20


def _fast(data: bytes) -> RawSkeleton | None:
    """Parse a file in the exact layout of the module docstring with the compiled scan; ``None`` when
    anything does not fit it (the line-by-line reader then decides)."""
    ok, num_frames, frame, body, ids, xyz = _scan(np.frombuffer(data, np.uint8))
    if not ok:
        return None
    return RawSkeleton(num_frames=num_frames, frame=frame, body=body, body_ids=ids.tolist(), xyz=xyz)


# ---------------------------------------------------------------------------------------------------------
# Slow path: a line-by-line reader that names the line of the first problem.


def _checked(data: bytes, path: str | Path) -> RawSkeleton:
    """Parse ``data`` line by line; raise :class:`ReadError` with the 1-based line of the first problem."""
    if not data.strip():
        raise ReadError(path, "empty file", line=1)
    lines = data.split(b"\n")
    end = max(i for i, line in enumerate(lines) if line.strip()) + 1  # lines after it are blank

    def fields(i: int, expected: int, what: str) -> list[bytes]:
        if i >= end:
            raise ReadError(path, f"the file ends where the {what} should be (truncated?)", line=i + 1)
        toks = lines[i].split()
        if len(toks) != expected:
            raise ReadError(path, f"{what}: expected {expected} value(s), found {len(toks)}", line=i + 1)
        return toks

    def integer(i: int, what: str) -> int:
        tok = fields(i, 1, what)[0]
        if not _is_count(tok):
            raise ReadError(path, f"{what} must be a non-negative integer, found {tok[:40]!r}", line=i + 1)
        return int(tok)

    def numbers(i: int, toks: list[bytes], what: str, coords: int = 0) -> list[float]:
        """The values of ``toks``; the first ``coords`` become float32 coordinates and must fit it."""
        out = []
        for k, tok in enumerate(toks):
            try:
                v = float(tok)
            except ValueError:
                raise ReadError(path, f"{what}: {tok[:40]!r} is not a number", line=i + 1) from None
            if not math.isfinite(v):
                raise ReadError(path, f"{what}: {tok[:40]!r} is not a finite number", line=i + 1)
            if k < coords and abs(v) > _FLOAT32_MAX:
                raise ReadError(path, f"{what}: {tok[:40]!r} is beyond float32's range", line=i + 1)
            out.append(v)
        return out

    num_frames = integer(0, "frame count")
    if num_frames == 0:
        raise ReadError(path, "the frame count is 0", line=1)
    if num_frames > len(data) // _MIN_FRAME_BYTES:
        raise ReadError(
            path,
            f"the frame count {num_frames} cannot fit in a file of {len(data)} bytes "
            f"(a frame takes at least {_MIN_FRAME_BYTES})",
            line=1,
        )
    ids: dict[int, int] = {}
    frame, body, xyz = [], [], []
    i = 1
    for f in range(num_frames):
        for _ in range(integer(i, f"body count of frame {f + 1}")):
            toks = fields(i + 1, _INFO_FIELDS, f"body info line of frame {f + 1}")
            if not _is_count(toks[0]):
                raise ReadError(path, f"body ID {toks[0][:40]!r} is not a 64-bit integer", line=i + 2)
            numbers(i + 1, toks[1:], "body info line")
            nj = integer(i + 2, "joint count")
            if nj != NUM_JOINTS:
                raise ReadError(path, f"joint count is {nj}; a Kinect v2 body has {NUM_JOINTS}", line=i + 3)
            xyz.append(
                [
                    numbers(j, fields(j, _JOINT_FIELDS, "joint line"), "joint line", coords=3)[:3]
                    for j in range(i + 3, i + 3 + nj)
                ]
            )
            frame.append(f)
            body.append(ids.setdefault(int(toks[0]), len(ids)))
            i += 2 + nj
        i += 1
    if i < end:
        raise ReadError(path, f"unexpected data after the last of the {num_frames} frames", line=i + 1)
    r = len(frame)
    return RawSkeleton(
        num_frames=num_frames,
        frame=np.asarray(frame, dtype=np.int64),
        body=np.asarray(body, dtype=np.int64),
        body_ids=list(ids),
        xyz=np.asarray(xyz, dtype=np.float64).reshape(r, NUM_JOINTS, 3),
    )


def parse_skeleton(data: bytes, path: str | Path = "<bytes>") -> RawSkeleton:
    r"""Parse the text of one NTU ``.skeleton`` file (all bodies, all fields).

    Any malformed input is a :class:`~lightning_skel.data.readers.base.ReadError` naming ``path`` and the
    1-based line: empty, truncated, a wrong field or joint count, a non-numeric or non-finite field, a
    coordinate beyond float32's range, a zero frame count or one larger than the file can hold, data after
    the last frame.

    Example:
        >>> body = "1 0 1 1 1 1 0 0.1 0.2 2\n25\n" + "0.1 0.2 3.0 0 0 0 0 0 0 0 0 2\n" * 25  # info, 25 joints
        >>> raw = parse_skeleton(("3\n" + ("1\n" + body) * 3).encode())  # 3 frames of one body
        >>> raw.num_frames, raw.xyz.shape, raw.body_ids
        (3, (3, 25, 3), [1])
    """
    raw = _fast(data)
    return raw if raw is not None else _checked(data, path)


# ---------------------------------------------------------------------------------------------------------
# Body selection.


def _motion(xyz: np.ndarray) -> float:
    """Sum over joints and axes of the variance over time of ``xyz (T, 25, 3)``."""
    return float(xyz.var(axis=0).sum()) if len(xyz) else 0.0


def select_bodies(raw: RawSkeleton, max_bodies: int = 2) -> np.ndarray:
    """The ``(3, T, 25, max_bodies)`` float32 coordinates of the main actors of ``raw``.

    Denoising as in the NTU preprocessing of SGN / CTR-GCN (``get_raw_denoised_data.py``, by body ID):

    1. length: with several bodies, drop those tracked in at most 11 frames (unless that drops all);
    2. spread: a frame of a body is noisy when the x-range of its joints exceeds 0.8 times their y-range; while
       more than one body is left, drop a body with at least 69.754 % noisy frames (in order of first
       appearance), otherwise compute its motion over its non-noisy frames only if that is lower;
    3. motion: keep the ``max_bodies`` bodies of largest motion, where motion is the variance over time of
       each joint coordinate, summed over joints and axes (CTR-GCN pools all joints into one variance per
       axis; per-joint variance measures movement rather than body size).

    The kept bodies are ordered by first tracked frame, ties by larger motion. Unlike CTR-GCN, bodies are not
    merged into a slot when their frame ranges do not overlap, and frames where nobody is tracked are kept:
    ``T`` is the file's frame count and an untracked body is 0 in that frame. A second slot with nobody in
    it stays 0.

    Example:
        >>> raw = RawSkeleton(3, np.arange(3), body=np.zeros(3, int), body_ids=[1], xyz=np.ones((3, 25, 3)))
        >>> select_bodies(raw).shape
        (3, 3, 25, 2)
    """
    t = raw.num_frames
    nb = len(raw.body_ids)
    xyz = raw.xyz
    per_body = [xyz[raw.body == b] for b in range(nb)]  # (frames tracked, 25, 3) each, in frame order
    frames = [raw.frame[raw.body == b] for b in range(nb)]
    motion = [_motion(p) for p in per_body]
    keep = list(range(nb))
    if nb > 1:
        long_enough = [b for b in keep if len(per_body[b]) > NOISE_LEN_THRES]
        keep = long_enough or keep
    for b in list(keep):
        if len(keep) == 1:
            break
        p = per_body[b]
        spread = np.ptp(p[..., :2], axis=1)  # (frames, 2): x-range and y-range
        noisy = spread[:, 0] > NOISE_SPR_THRES1 * spread[:, 1]
        if noisy.mean() >= NOISE_SPR_THRES2:
            keep.remove(b)
        elif noisy.any():
            motion[b] = min(motion[b], _motion(p[~noisy]))
    main = sorted(keep, key=lambda b: -motion[b])[:max_bodies]
    main.sort(key=lambda b: (frames[b][0], -motion[b]))
    out = np.zeros((3, t, NUM_JOINTS, max_bodies), dtype=np.float32)
    for m, b in enumerate(main):
        out[..., m][:, frames[b]] = per_body[b].transpose(2, 0, 1)
    return out


# The official pipelines' body selection. Each returns ``(3, T, 25, 2)`` float32 like :func:`select_bodies`,
# reproducing one repository's NTU preprocessing bit for bit (tests/test_ntu_pipelines.py checks the six
# sample files against arrays computed by the official scripts).

MAX_BODY_TRUE = 2  # persons an official array holds
MAX_BODY_KINECT = 4  # 2s-AGCN / MS-G3D: bodies of a frame read before ranking by energy


def _slots(raw: RawSkeleton, slots: int) -> np.ndarray:
    """``(slots, T, 25, 3)`` float64: slot ``m`` of frame ``t`` holds the ``m``-th body listed in that frame
    (whatever its ID), zeros where a frame lists fewer bodies; bodies beyond ``slots`` are dropped."""
    position = np.arange(len(raw.frame)) - np.searchsorted(raw.frame, raw.frame)  # records are in frame order
    kept = position < slots
    out = np.zeros((slots, raw.num_frames, NUM_JOINTS, 3))
    out[position[kept], raw.frame[kept]] = raw.xyz[kept]
    return out


def select_bodies_stgcn(raw: RawSkeleton) -> np.ndarray:
    """ST-GCN's ``tools/utils/ntu_read_skeleton.read_xyz(file, max_body=2)``: person ``m`` of frame ``t`` is
    the ``m``-th body listed in that frame, with no ranking or denoising, so a person's slot can change body
    from frame to frame. ``T`` is the file's frame count; ``tools/ntu_gendata.py`` then zero-pads to 300.

    Example:
        >>> raw = RawSkeleton(3, np.arange(3), body=np.zeros(3, int), body_ids=[1], xyz=np.ones((3, 25, 3)))
        >>> select_bodies_stgcn(raw).shape
        (3, 3, 25, 2)
    """
    return np.ascontiguousarray(_slots(raw, MAX_BODY_TRUE).transpose(3, 1, 2, 0), dtype=np.float32)


def _energy(slot: np.ndarray) -> float:
    """2s-AGCN's ``get_nonzero_std`` of one slot ``(T, 25, 3)``: over the frames whose coordinates do not sum
    to 0, the standard deviation of each axis over all joints and frames, summed over the three axes."""
    s = slot[slot.sum(-1).sum(-1) != 0]
    return sum(float(s[..., c].std()) for c in range(3)) if len(s) else 0.0


def select_bodies_agcn(raw: RawSkeleton) -> np.ndarray:
    """2s-AGCN's (and MS-G3D's) ``data_gen/ntu_gendata.read_xyz(file, max_body=4)``: the first four bodies
    listed in each frame fill four slots as in :func:`select_bodies_stgcn`, and the two slots of highest
    energy (:func:`_energy`) are kept, highest first (ties ordered as ``np.argsort(energy)[::-1]`` orders
    them). ``T`` is the file's frame count; ``gendata`` then zero-pads to 300 and runs ``pre_normalization``,
    which belongs to the model-side pipeline.

    Example:
        >>> raw = RawSkeleton(3, np.arange(3), body=np.zeros(3, int), body_ids=[1], xyz=np.ones((3, 25, 3)))
        >>> select_bodies_agcn(raw).shape
        (3, 3, 25, 2)
    """
    slots = _slots(raw, MAX_BODY_KINECT)
    energy = np.array([_energy(s) for s in slots])
    best = np.argsort(energy)[::-1][:MAX_BODY_TRUE]
    return np.ascontiguousarray(slots[best].transpose(3, 1, 2, 0), dtype=np.float32)


def _pooled_motion(joints: np.ndarray) -> np.float32:
    """CTR-GCN's motion of a body ``(n, 25, 3)`` float32: the variance of each axis over all its joints and
    frames pooled, summed over the axes, in float32."""
    return np.sum(np.var(joints.reshape(-1, 3), axis=0))


def _spread_ok(joints: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: the frames of ``joints (n, 25, 3)`` whose x-range is at most 0.8 times their y-range.

    The ranges are float32 and the comparison float64, as in ``get_valid_frames_by_spread`` under the numpy
    1.x it was written for (numpy 2 computes ``0.8 * y-range`` in float32)."""
    x_range = np.ptp(joints[..., 0], axis=1).astype(np.float64)
    y_range = np.ptp(joints[..., 1], axis=1).astype(np.float64)
    return x_range <= NOISE_SPR_THRES1 * y_range


def denoise_ctrgcn(raw: RawSkeleton) -> np.ndarray:
    """The NTU preprocessing of CTR-GCN and SGN (``data/ntu/get_raw_skes_data.py`` then
    ``get_raw_denoised_data.py``), up to ``raw_denoised_joints.pkl``: ``(3, T, 25, 2)`` float32.

    1. Frames without any body are dropped. Each body ID keeps its joints in float32 in file order; its
       frames are numbered consecutively from its first frame (the scripts' ``interval``, also where the body
       was missing in between). With several IDs, a body's motion is :func:`_pooled_motion`.
    2. With several IDs: drop those tracked in at most 11 frames; then, in order of first appearance and
       while more than one is left, drop a body with at least 69.754 % frames failing :func:`_spread_ok`, or
       lower its motion to that of its passing frames if that is less.
    3. Actor 1 is the body of largest motion (ties: first appearance). Each further body, by decreasing
       motion, joins actor 1 if its frames overlap actor 1's by at most one frame, else actor 2 on the same
       rule (actor 2's span always counts from frame 0), else is dropped; a later body overwrites a shared
       frame.
    4. After denoising several IDs, frames where all coordinates sum to 0 are dropped.

    ``T`` is the frames left; person 2 is zeros when only one actor is found. The official 150-vector of a
    frame is ``x[:, t].transpose(2, 1, 0).reshape(-1)`` (person, joint, axis). Not applied here:
    ``seq_transformation.py``'s translation to actor 1's spine middle in its first frame and its padding to
    300 frames, which belong to the model-side ``ctrgcn`` / ``sgn`` pipelines.

    Raises :class:`~lightning_skel.data.readers.base.ReadError` (the reader adds the file's path) where the
    scripts fail: every body is tracked in at most 11 frames, a body ID is listed twice in one frame so that
    its frames overrun the clip, or no frame is left.

    Example:
        >>> raw = RawSkeleton(3, np.arange(3), body=np.zeros(3, int), body_ids=[1], xyz=np.ones((3, 25, 3)))
        >>> denoise_ctrgcn(raw).shape  # person 2 is zeros
        (3, 3, 25, 2)
    """
    tracked = np.unique(raw.frame)
    num_frames = len(tracked)
    row = np.searchsorted(tracked, raw.frame)  # each record's frame among the tracked ones
    xyz = raw.xyz.astype(np.float32)
    joints = [xyz[raw.body == b] for b in range(len(raw.body_ids))]  # (n, 25, 3) each, in frame order
    start = [int(row[raw.body == b][0]) for b in range(len(raw.body_ids))]
    actors = [0]
    if len(joints) > 1:
        motion = [_pooled_motion(j) for j in joints]
        keep = [b for b, j in enumerate(joints) if len(j) > NOISE_LEN_THRES]
        if not keep:
            raise ReadError(
                "<bytes>",
                f"each of the {len(joints)} bodies is tracked in at most {NOISE_LEN_THRES} frames: "
                "the ctrgcn denoising keeps none",
            )
        for b in list(keep):
            if len(keep) == 1:
                break
            ok = _spread_ok(joints[b])
            if ok.all():
                continue
            if (len(ok) - ok.sum()) / len(ok) >= NOISE_SPR_THRES2:  # the scripts' noisy / all
                keep.remove(b)
            else:
                motion[b] = min(motion[b], _pooled_motion(joints[b][ok]))
        actors = sorted(keep, key=lambda b: motion[b], reverse=True)  # stable: ties keep their order
    people = 1 if len(actors) == 1 else MAX_BODY_TRUE
    out = np.zeros((num_frames, people, NUM_JOINTS, 3), dtype=np.float32)

    def place(b: int, m: int) -> None:
        if start[b] + len(joints[b]) > num_frames:
            raise ReadError(
                "<bytes>",
                f"body {raw.body_ids[b]} has {len(joints[b])} records from tracked frame {start[b]} on, "
                f"where {num_frames - start[b]} frames follow (listed twice in a frame): the ctrgcn "
                "pipeline cannot place it",
            )
        out[start[b] : start[b] + len(joints[b]), m] = joints[b]

    place(actors[0], 0)
    spans = [(start[actors[0]], start[actors[0]] + len(joints[actors[0]]) - 1), (0, 0)]
    for b in actors[1:]:
        s, e = start[b], start[b] + len(joints[b]) - 1
        for m, (s_m, e_m) in enumerate(spans):
            if min(e_m, e) - max(s_m, s) <= 0:
                place(b, m)
                spans[m] = (min(s, s_m), max(e, e_m))
                break
    if len(joints) > 1:
        out = out[out.reshape(num_frames, -1).sum(axis=1) != 0]  # the official (T, 75 or 150) row sums
    if not len(out):
        raise ReadError("<bytes>", "no frame is left after the ctrgcn denoising (every kept coordinate is 0)")
    x = np.zeros((3, len(out), NUM_JOINTS, MAX_BODY_TRUE), dtype=np.float32)
    x[..., :people] = out.transpose(3, 0, 2, 1)
    return x


# The reader's ``pipeline`` option: how the persons of a clip are chosen from the bodies of a file.
NTU_PIPELINES: dict[str, Callable[[RawSkeleton], np.ndarray]] = {
    "project": select_bodies,
    "stgcn": select_bodies_stgcn,
    "agcn": select_bodies_agcn,
    "ctrgcn": denoise_ctrgcn,
    "sgn": denoise_ctrgcn,
}
DEFAULT_PIPELINE = "project"


# ---------------------------------------------------------------------------------------------------------
# The reader.


@READERS.register("ntu")
@dataclass
class NTUReader(Reader):
    r"""Reader ``ntu``: NTU RGB+D 60 / 120 ``.skeleton`` files (Shahroudy et al., CVPR 2016; Liu et al.,
    TPAMI 2019), one clip each, 2 persons.

    Clips are not padded to 300 frames: ``lengths`` holds each one's ``T``. ``SRC`` is a ``.skeleton`` file
    or a folder searched recursively. A file without any tracked body (the data set's "missing skeleton"
    samples), that does not parse, or that the pipeline's official scripts cannot process is a
    :class:`~lightning_skel.data.readers.base.ReadError`, so ``prepare`` lists it as skipped.

    Splits: ``xsub60`` / ``xview60`` (NTU RGB+D 60 cross-subject / cross-view), ``xsub120`` / ``xset120``
    (NTU RGB+D 120 cross-subject / cross-setup: even setups train); ``xsub``, ``xview``, ``xset`` are
    aliases of ``xsub60``, ``xview60``, ``xset120``. The NTU 60 protocols keep 60 class names.

    Args:
        options: ``pipeline`` (``prepare ntu --pipeline NAME``, ``data.source.options.pipeline``) chooses
            the persons from a file's bodies as one repository's preprocessing does (:data:`NTU_PIPELINES`):
            ``project`` (the default, :func:`select_bodies`), ``stgcn`` (:func:`select_bodies_stgcn`),
            ``agcn`` (2s-AGCN and MS-G3D, :func:`select_bodies_agcn`), ``ctrgcn`` or its alias ``sgn``
            (:func:`denoise_ctrgcn`).

    Example:
        >>> body = "1 0 1 1 1 1 0 0.1 0.2 2\n25\n" + "0.1 0.2 3.0 0 0 0 0 0 0 0 0 2\n" * 25  # info, 25 joints
        >>> _ = Path("S001C002P003R002A013.skeleton").write_text("3\n" + ("1\n" + body) * 3)
        >>> (clip,) = NTUReader({"pipeline": "agcn"}).read_file(Path("S001C002P003R002A013.skeleton"))
        >>> clip.x.shape, clip.label, NTUReader().split_of(clip, "xsub60")
        ((3, 3, 25, 2), 12, 'test')
    """

    name: ClassVar[str] = "ntu"
    layout: ClassVar[str] = "ntu25"
    class_names: ClassVar[tuple[str, ...]] = NTU120_ACTIONS
    splits: ClassVar[tuple[str, ...]] = ("xsub60", "xview60", "xsub120", "xset120", *SPLIT_ALIASES)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - {"pipeline"})
        if unknown:
            raise ValueError(f"the ntu reader's only option is 'pipeline', got {unknown}")
        pipeline = self.options.get("pipeline", DEFAULT_PIPELINE)
        if pipeline not in NTU_PIPELINES:
            raise ValueError(f"unknown ntu pipeline {pipeline!r}; known: {', '.join(NTU_PIPELINES)}")
        self.pipeline: str = pipeline

    def settings(self) -> dict:
        return {"pipeline": self.pipeline}

    def warm_up(self) -> None:
        """Compile the scan (or load it from numba's cache) once; workers forked afterwards inherit it, and
        spawned ones load the cache instead of each compiling it."""
        if _scan.signatures:
            return
        progress_log.info("compiling the NTU parser (once) ...")
        start = time.perf_counter()
        _fast(b"0\n")  # the argument types of every call: a read-only uint8 array
        progress_log.info("NTU parser ready in %.1f s", time.perf_counter() - start)

    def files(self, src: Path) -> list[Path]:
        src = Path(src)
        return [src] if src.is_file() else sorted(src.rglob("*.skeleton"))

    def read_file(self, path: Path) -> list[Clip]:
        path = Path(path)
        stem = path.name.split(".")[0]
        m = _NAME.fullmatch(stem)
        if m is None:
            raise ReadError(path, "the file name is not an NTU sample name SsssCcccPpppRrrrAaaa")
        name = NTUName(*(int(g) for g in m.groups()))
        if not 1 <= name.action <= len(NTU120_ACTIONS):
            raise ReadError(path, f"action A{name.action:03d} is outside A001..A{len(NTU120_ACTIONS)}")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ReadError(path, f"cannot be read ({e.strerror or e})") from e
        raw = parse_skeleton(data, path)
        if not raw.body_ids:
            raise ReadError(path, f"no body is tracked in any of the {raw.num_frames} frames")
        try:
            x = NTU_PIPELINES[self.pipeline](raw)
        except ReadError as e:  # raised without the file's path
            raise ReadError(path, e.reason, e.line) from None
        return [
            Clip(
                x=x,
                label=name.action - 1,
                name=stem,
                subject=name.performer,
                view=name.camera,
            )
        ]

    def split_of(self, clip: Clip, split: str) -> str:
        protocol = SPLIT_ALIASES.get(split, split)
        if protocol not in self.splits:
            return super().split_of(clip, split)
        try:
            f = parse_ntu_name(clip.name)
        except ValueError as e:
            raise ValueError(f"ntu split {split!r}: clip {clip.name!r}: {e}") from None
        if protocol.endswith("60") and f.action > 60:
            raise ValueError(
                f"ntu split {split!r} is an NTU RGB+D 60 protocol but clip {clip.name!r} has action "
                f"A{f.action:03d} (> 60); use xsub120 or xset120"
            )
        if protocol == "xsub60":
            train = f.performer in XSUB60_TRAIN_PERFORMERS
        elif protocol == "xview60":
            train = f.camera in XVIEW60_TRAIN_CAMERAS
        elif protocol == "xsub120":
            train = f.performer in XSUB120_TRAIN_PERFORMERS
        else:
            train = f.setup % 2 == 0
        return "train" if train else "test"

    def assemble(self, clips: list[Clip], split: str | None = None) -> SkeletonData:
        if not clips:
            raise ValueError(f"{self.name}: no clip could be read")
        ntu60 = split is not None and SPLIT_ALIASES.get(split, split).endswith("60")
        return stack_clips(
            clips,
            self.layout,
            list(NTU60_ACTIONS if ntu60 else NTU120_ACTIONS),
            split_fn=None if split is None else (lambda c: self.split_of(c, split)),
        )


def read_ntu_skeleton(path: str | os.PathLike) -> SkeletonData:
    r"""The skeleton-npz dict (one row) of one NTU ``.skeleton`` file, the default body selection.

    Example:
        >>> body = "1 0 1 1 1 1 0 0.1 0.2 2\n25\n" + "0.1 0.2 3.0 0 0 0 0 0 0 0 0 2\n" * 25  # info, 25 joints
        >>> _ = Path("S001C002P003R002A013.skeleton").write_text("3\n" + ("1\n" + body) * 3)
        >>> data = read_ntu_skeleton("S001C002P003R002A013.skeleton")
        >>> data["x"].shape, data["class_names"][data["y"][0]]
        ((1, 3, 3, 25, 2), 'tear up paper')
    """
    reader = NTUReader()
    return reader.assemble(reader.read_file(Path(path)))
