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

Parsing (:func:`parse_skeleton`) is vectorised: the file is read once, tokenised with numpy, its line
structure checked as a whole against the layout above, and every number of every joint line (all 12
fields) and of every body-info line converted by a vectorised decimal decoder that gives exactly Python's
``float``; no Python loop runs over frames, bodies or joints. Anything this fast path does not accept (a
malformed file, or an unusual but valid one, e.g. tab separators) goes to a line-by-line reader that
either returns the same result or raises :class:`~lightning_skel.data.readers.base.ReadError` with the
1-based line number of the problem. The fast path keeps its temporaries in per-thread buffers reused from
file to file (about 35 bytes per byte of the largest file read so far: 12 MB for a 360 kB file).

Body selection (:func:`select_bodies`) follows the denoising of the NTU preprocessing shipped with SGN and
CTR-GCN (``data/ntu/get_raw_denoised_data.py``): see its docstring.
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from lightning_skel.data.io import SkeletonData
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError, stack_clips

__all__ = [
    "NTU60_ACTIONS",
    "NTU120_ACTIONS",
    "NTUName",
    "NTUReader",
    "RawSkeleton",
    "parse_ntu_name",
    "parse_skeleton",
    "read_ntu_skeleton",
    "select_bodies",
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
_BLOCK = 2 + NUM_JOINTS  # lines per body: info, joint count, joints

# Body selection thresholds of SGN / CTR-GCN get_raw_denoised_data.py.
NOISE_LEN_THRES = 11  # a body tracked in <= 11 frames is noise
NOISE_SPR_THRES1 = 0.8  # a frame is noisy when x-range > 0.8 * y-range of its joints
NOISE_SPR_THRES2 = 0.69754  # a body with >= 69.754 % noisy frames is noise

_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


@dataclass(frozen=True)
class NTUName:
    """The fields of an NTU file name ``SsssCcccPpppRrrrAaaa``, as integers."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int


def parse_ntu_name(name: str) -> NTUName:
    """Fields of the NTU sample name in ``name`` (a stem, file name or path); ``ValueError`` if there is none."""
    m = _NAME.search(os.path.basename(str(name)))
    if m is None:
        raise ValueError(f"{name!r} is not an NTU sample name (expected SsssCcccPpppRrrrAaaa)")
    return NTUName(*(int(g) for g in m.groups()))


@dataclass
class RawSkeleton:
    """The bodies of a ``.skeleton`` file, one record per (frame, body) pair, in file order.

    ``xyz (R, 25, 3)`` float64 holds the joints' camera coordinates in metres (the other fields are checked
    to be numbers, then dropped); ``body (R,)`` indexes ``body_ids`` (numbered by first appearance);
    ``frame (R,)`` is 0-based.
    """

    num_frames: int
    frame: np.ndarray
    body: np.ndarray
    body_ids: list[int]
    xyz: np.ndarray


# ---------------------------------------------------------------------------------------------------------
# Fast path: vectorised tokeniser, structure check and decimal parser.

# Numbers are decoded with SWAR ("SIMD within a register") integer arithmetic: each token's first 16 bytes
# are gathered as two little-endian 8-byte words and every step is one numpy operation over all words.
_U = np.uint64
_HIGH = _U(0x8080808080808080)  # the top bit of each byte
_LOW7 = _U(0x7F7F7F7F7F7F7F7F)
_ONES = _U(0x0101010101010101)
_NIBBLES = _U(0x0F0F0F0F0F0F0F0F)
_GE_0 = _U(0x5050505050505050)  # byte + 0x50 sets the top bit iff byte >= "0" (0x30), for bytes < 0x80
_GE_COLON = _U(0x4646464646464646)  # byte + 0x46 sets the top bit iff byte > "9"
_DOTS = _U(0x2E2E2E2E2E2E2E2E)
_BYTE_INDEX = _U(0x0001020304050607)  # (flags * this) >> 56 = sum of the indices of the flagged bytes
_MERGES = (  # pairs of digits, then of 2-digit, then of 4-digit numbers: one 8-digit number per word
    (_U(10), _U(8), _U(0x00FF00FF00FF00FF)),
    (_U(100), _U(16), _U(0x0000FFFF0000FFFF)),
    (_U(10000), _U(32), _U(0x00000000FFFFFFFF)),
)
_FIRST = [(1 << (8 * k)) - 1 for k in range(9)]
_FIRST_BYTES = np.array([[_FIRST[min(k, 8)], _FIRST[max(k - 8, 0)]] for k in range(17)], dtype=np.uint64)
_DIVISOR = 10.0 ** (16 - np.arange(17))  # by the position of the decimal point
_MAX_LEN = 15  # longer tokens take the per-token fallback
_ID_LEN = 20  # digits of a 64-bit body ID
_XYZ = np.arange(3)  # the first three fields of a joint line
_SCRATCH_MAX = 1 << 24  # elements: larger buffers are not kept


class _Scratch(threading.local):
    """Per-thread arrays reused from file to file.

    The fast path's temporaries are a few hundred kB each. Allocated afresh on every call they come from
    fresh pages (glibc returns blocks this large to the system when they are freed), and the page faults,
    one per 4 kB, cost more than the arithmetic. So each whole-file temporary lives in a named buffer that
    only grows; results returned to callers are copies.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def __call__(self, name: str, n: int, dtype: type) -> np.ndarray:
        buf = self.buffers.get(name)
        if buf is None or len(buf) < n:
            buf = np.empty(n + n // 4, dtype)
            if n <= _SCRATCH_MAX:
                self.buffers[name] = buf
        return buf[:n]

    def arange(self, n: int) -> np.ndarray:
        """``0 .. n-1`` as int32 (the fast path reads files below 2 GB only)."""
        buf = self.buffers.get("arange")
        if buf is None or len(buf) < n:
            buf = np.arange(n + n // 4, dtype=np.int32)
            if n <= _SCRATCH_MAX:
                self.buffers["arange"] = buf
        return buf[:n]


_scratch = _Scratch()


def _is_count(token: bytes) -> bool:
    """A non-negative decimal integer of at most 20 digits (Kinect body IDs are 64-bit)."""
    return token.isdigit() and len(token) <= _ID_LEN


def _decode(
    text: np.ndarray, starts: np.ndarray, lens: np.ndarray, convert: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Check the tokens at ``starts`` (lengths ``lens``) of ``text`` (uint8, followed by at least 16 bytes
    of padding) to be decimals ``-?digits[.digits]``, and convert those at the indices ``convert``.

    Returns ``(values float64 (len(convert),), ok bool (len(starts),))``, scratch arrays valid until the next
    call in this thread. Where ``ok`` is False (another spelling, e.g. an exponent, or junk) the value is
    garbage. Values equal Python's ``float`` of the token exactly: the digits without the point form an
    integer below 2**54 that is a multiple of 10 (exact in float64), divided once by an exact power of ten
    (correctly rounded).
    """
    k = len(starts)
    sc = _scratch
    w = sc("w", 2 * k, np.uint64)  # word 2i: bytes 0-7 of token i; word 2i + 1: bytes 8-15
    windows = np.ndarray((len(text) - 15,), dtype="V16", buffer=text, strides=(1,))
    np.take(windows, starts, out=w.view("V16"))
    t, t2, digit, dot, inside = (sc(name, 2 * k, np.uint64) for name in ("t", "t2", "digit", "dot", "inside"))
    neg, bad, flag = (sc(name, k, bool) for name in ("neg", "bad", "flag"))
    t_k, t2_k = t[:k], t2[:k]
    length = np.minimum(lens, 16, out=sc("length", k, np.intp))
    np.take(_FIRST_BYTES, length, axis=0, out=inside.reshape(k, 2))
    w &= inside  # bytes past the token are 0
    inside &= _HIGH
    np.bitwise_and(w[0::2], _U(0xFF), out=t_k)
    np.equal(t_k, _U(0x2D), out=neg)  # a leading "-"
    # Per byte, as its top bit: digit, point, anything else (inside the token).
    np.add(w, _GE_0, out=digit)
    np.add(w, _GE_COLON, out=t)
    digit &= np.invert(t, out=t)
    digit &= _HIGH
    np.bitwise_xor(w, _DOTS, out=t)
    np.bitwise_and(t, _LOW7, out=dot)
    dot += _LOW7
    dot |= t
    np.invert(dot, out=dot)  # top bit set iff the byte is "." (zero after the xor)
    dot &= inside
    np.bitwise_or(digit, dot, out=t)
    np.invert(t, out=t)
    t &= inside
    np.bitwise_and(w, _HIGH, out=t2)
    t |= t2  # non-ASCII bytes are junk too
    np.multiply(neg, _U(0x80), out=t2_k)
    t[0::2] &= np.invert(t2_k, out=t2_k)  # ... but the leading "-" is fine
    np.bitwise_or(t[0::2], t[1::2], out=t2_k)
    np.not_equal(t2_k, 0, out=bad)
    np.right_shift(dot, _U(7), out=t)
    t *= _ONES
    t >>= _U(56)  # points per word
    np.add(t[0::2], t[1::2], out=t2_k)
    bad |= np.greater(t2_k, 1, out=flag)
    np.bitwise_or(digit[0::2], digit[1::2], out=t2_k)
    bad |= np.equal(t2_k, 0, out=flag)  # no digit
    bad |= np.greater(lens, _MAX_LEN, out=flag)
    np.logical_not(bad, out=bad)

    # Values of the tokens to convert only: their words and flags, then the same steps on fewer words.
    k = len(convert)
    w_all, digit_all, dot_all, neg_all, length_all = w, digit, dot, neg, length
    w, digit, dot = (sc(name, 2 * k, np.uint64) for name in ("w_c", "digit_c", "dot_c"))
    for src, dst in ((w_all, w), (digit_all, digit), (dot_all, dot)):
        np.take(src.reshape(-1, 2), convert, axis=0, out=dst.reshape(k, 2))
    neg = np.take(neg_all, convert, out=sc("neg_c", k, bool))
    length = np.take(length_all, convert, out=sc("length_c", k, np.intp))
    t, t2, keep = (sc(name, 2 * k, np.uint64) for name in ("t_c", "t2_c", "keep_c"))
    t_k, t2_k, flag = t[:k], t2[:k], sc("flag_c", k, bool)
    # The position of the point (the token length when there is none).
    np.right_shift(dot, _U(7), out=t)
    t *= _BYTE_INDEX
    t >>= _U(56)
    point = sc("point", k, np.intp)
    np.not_equal(dot[1::2], 0, out=flag)
    np.add(t[1::2], _U(8), out=t2_k)
    t2_k *= flag
    t2_k += t[0::2]
    np.copyto(point, t2_k, casting="unsafe")
    np.bitwise_or(dot[0::2], dot[1::2], out=t_k)
    np.copyto(point, length, where=np.equal(t_k, 0, out=flag))
    np.minimum(point, 16, out=point)  # junk can have many points
    # Digit values (0 elsewhere, the "-" included), then the bytes after the point moved down by one.
    np.right_shift(digit, _U(7), out=t)
    t *= _U(0xFF)
    t &= w
    t &= _NIBBLES
    np.take(_FIRST_BYTES, point, axis=0, out=keep.reshape(k, 2))  # the bytes before the point
    np.right_shift(t, _U(8), out=t2)
    np.left_shift(t[1::2], _U(56), out=digit[:k])
    t2[0::2] |= digit[:k]
    t &= keep
    t2 &= np.invert(keep, out=keep)
    t |= t2
    for factor, shift, mask in _MERGES:
        np.right_shift(t, shift, out=t2)
        t *= factor
        t += t2
        t &= mask
    mantissa = np.multiply(t[0::2], _U(100_000_000), out=dot[:k])
    mantissa += t[1::2]
    values = sc("values", k, np.float64)
    np.divide(mantissa.view(np.int64), np.take(_DIVISOR, point, out=sc("divisor", k, np.float64)), out=values)
    sign = np.multiply(neg, -2.0, out=sc("sign", k, np.float64))
    sign += 1.0
    values *= sign
    return values, bad


def _group_ids(text: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray | None, list[int]]:
    """Number the body-ID tokens at ``starts`` by first appearance: ``(body (R,), [ID, ...])``, or
    ``(None, [])`` unless every token is 1 to 20 digits without a leading zero (the line-by-line reader then
    decides)."""
    if len(starts) == 0:
        return np.zeros(0, np.int64), []
    if lens.max() > _ID_LEN or (text[starts] == 48).any():
        return None, []
    windows = np.ndarray((len(text) - _ID_LEN + 1,), dtype=f"V{_ID_LEN}", buffer=text, strides=(1,))
    chars = windows[starts].view(np.uint8).reshape(len(starts), _ID_LEN)  # a copy
    inside = np.arange(_ID_LEN) < lens[:, None]
    if not np.all((chars - np.uint8(48) < 10) | ~inside):
        return None, []
    chars[~inside] = 0
    keys, first, inverse = np.unique(
        chars.view(f"S{_ID_LEN}").ravel(), return_index=True, return_inverse=True
    )
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], [int(k) for k in keys[order]]


def _fast(data: bytes) -> RawSkeleton | None:
    """Parse a well-formed file with vectorised numpy; ``None`` when anything does not fit the format
    exactly (single spaces between fields, one line break, LF or CRLF, between lines, no blank lines)."""
    n = len(data)
    if n < 2 or n >= 1 << 31 or data[0] <= 32:
        return None
    sc = _scratch
    text = sc("text", n + _ID_LEN, np.uint8)
    text[n:] = 0
    buf = text[:n]
    buf[:] = np.frombuffer(data, np.uint8)
    space = np.less_equal(buf, 32, out=sc("space", n, bool))
    edge = np.not_equal(space[1:], space[:-1], out=sc("edge", n - 1, bool))
    nb = int(np.count_nonzero(edge))
    bounds = sc("bounds", nb + 1, np.int32)  # end of token 0, start of token 1, end of 1, ...
    np.compress(edge, sc.arange(n - 1), out=bounds[:nb])
    bounds += 1
    bounds[nb] = n  # the end of a last token that runs to the end of the file
    if space[-1]:
        bounds = bounds[:nb]
        if data[bounds[-1] :].strip():  # trailing white space other than ASCII's
            return None
    tokens = (len(bounds) + 1) // 2
    starts = sc("starts", tokens, np.int64)
    starts[0] = 0
    starts[1:] = bounds[1::2]
    ends = bounds[0::2]
    lens = np.subtract(ends, starts, out=sc("lens", tokens, np.int64))
    # The gap after each token but the last: " " (same line), "\n" or "\r\n" (next line).
    gap = np.subtract(starts[1:], ends[:-1], out=sc("gap", tokens - 1, np.int64))
    after = np.take(buf, ends[:-1], out=sc("after", tokens - 1, np.uint8))
    flag, flag2 = sc("gflag", tokens - 1, bool), sc("gflag2", tokens - 1, bool)
    same_line = np.equal(after, 32, out=sc("same_line", tokens - 1, bool))
    ok = np.logical_or(same_line, np.equal(after, 10, out=flag), out=flag)
    ok &= np.equal(gap, 1, out=flag2)
    crlf = np.equal(gap, 2, out=flag2)
    crlf &= np.equal(after, 13, out=sc("cr", tokens - 1, bool))
    ok |= crlf
    if not ok.all() or np.any(np.take(buf, ends[:-1][crlf] + 1) != 10):
        return None
    first = np.flatnonzero(~same_line)  # each line's first token, but the first line's
    first += 1
    first = np.concatenate(([0], first))
    count = np.diff(first, append=tokens)  # tokens per line
    nlines = len(first)

    if count[0] != 1 or not _is_count(data[: ends[0]]):
        return None
    num_frames = int(data[: ends[0]])
    info = np.flatnonzero(count == _INFO_FIELDS)
    if info.size and info[-1] + 1 >= nlines:
        return None
    is_header = count == 1
    is_header[0] = False
    is_header[info + 1] = False  # joint-count lines
    header = np.flatnonzero(is_header)
    if num_frames == 0 or header.size != num_frames or header[0] != 1:
        return None
    h_tok = first[header]
    bodies = buf[starts[h_tok]].astype(np.int64) - 48
    if np.any(lens[h_tok] != 1) or bodies.min() < 0 or bodies.max() > 9:
        return None
    after_frame = header + 1 + _BLOCK * bodies  # the line after each frame
    if np.any(after_frame[:-1] != header[1:]) or after_frame[-1] != nlines:
        return None
    r = int(bodies.sum())
    slot = np.arange(r) - np.repeat(np.cumsum(bodies) - bodies, bodies)
    if not np.array_equal(info, np.repeat(header + 1, bodies) + _BLOCK * slot):
        return None
    jc = first[info + 1]
    if np.any(lens[jc] != 2) or np.any(buf[starts[jc]] != 50) or np.any(buf[starts[jc] + 1] != 53):  # "25"
        return None
    joint_lines = (info + 2)[:, None] + np.arange(NUM_JOINTS)
    if np.any(count[joint_lines] != _JOINT_FIELDS):
        return None

    xyz_tok = (first[joint_lines][..., None] + _XYZ).reshape(-1)  # ascending
    values, ok = _decode(text, starts, lens, xyz_tok)
    id_tok = first[info]
    ok[id_tok] = True  # body IDs are 17-digit integers, read below
    for k in np.flatnonzero(~ok).tolist():  # exponents and other rare spellings: Python's float
        try:
            v = float(data[starts[k] : ends[k]])
        except ValueError:
            return None
        if not math.isfinite(v):
            return None
        i = int(np.searchsorted(xyz_tok, k))
        if i < len(xyz_tok) and xyz_tok[i] == k:
            values[i] = v
    body, body_ids = _group_ids(text, starts[id_tok], lens[id_tok])
    if body is None:
        return None
    return RawSkeleton(
        num_frames=num_frames,
        frame=np.repeat(np.arange(num_frames), bodies),
        body=body,
        body_ids=body_ids,
        xyz=values.reshape(r, NUM_JOINTS, 3).copy(),
    )


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

    def numbers(i: int, toks: list[bytes], what: str) -> list[float]:
        out = []
        for tok in toks:
            try:
                v = float(tok)
            except ValueError:
                raise ReadError(path, f"{what}: {tok[:40]!r} is not a number", line=i + 1) from None
            if not math.isfinite(v):
                raise ReadError(path, f"{what}: {tok[:40]!r} is not a finite number", line=i + 1)
            out.append(v)
        return out

    num_frames = integer(0, "frame count")
    if num_frames == 0:
        raise ReadError(path, "the frame count is 0", line=1)
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
                    numbers(j, fields(j, _JOINT_FIELDS, "joint line"), "joint line")[:3]
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
    """Parse the text of one NTU ``.skeleton`` file (all bodies, all fields).

    Raises :class:`ReadError` (naming ``path`` and the 1-based line) for any malformed input: empty,
    truncated, a wrong field or joint count, a non-numeric or non-finite field, a zero frame count, data
    after the last frame.
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


# ---------------------------------------------------------------------------------------------------------
# The reader.


@READERS.register("ntu")
@dataclass
class NTUReader(Reader):
    """NTU RGB+D 60 / 120 ``.skeleton`` files, one clip each, 2 persons (see :func:`select_bodies`).

    ``SRC`` is a ``.skeleton`` file or a folder searched recursively. A file without any tracked body (the
    dataset's "missing skeleton" samples) or that does not parse is a :class:`ReadError`, so ``prepare``
    lists it as skipped. Splits: ``xsub60`` / ``xview60`` (NTU RGB+D 60 cross-subject / cross-view), ``xsub120`` / ``xset120``
    (NTU RGB+D 120 cross-subject / cross-setup: even setups train); ``xsub``, ``xview``, ``xset`` are
    aliases of ``xsub60``, ``xview60``, ``xset120``. The NTU 60 protocols keep 60 class names.
    """

    name: ClassVar[str] = "ntu"
    layout: ClassVar[str] = "ntu25"
    class_names: ClassVar[tuple[str, ...]] = NTU120_ACTIONS
    splits: ClassVar[tuple[str, ...]] = ("xsub60", "xview60", "xsub120", "xset120", *SPLIT_ALIASES)

    def __post_init__(self) -> None:
        if self.options:
            raise ValueError(f"the ntu reader takes no options, got {sorted(self.options)}")

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
        return [
            Clip(
                x=select_bodies(raw),
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
    """The skeleton-npz dict (one row) of one NTU ``.skeleton`` file."""
    reader = NTUReader()
    return reader.assemble(reader.read_file(Path(path)))
