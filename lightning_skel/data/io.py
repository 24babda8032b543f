"""The skeleton-npz format: the one on-disk format every reader converts to and every run reads.

Keys (N clips, C coordinates, T frames, V joints, M persons):

=============  ======================  =========================================================
``x``          ``(N, C, T, V, M)``     float32 coordinates (metres for 3D); padding and absent persons 0
``y``          ``(N,)``                int64 action label in ``[0, len(class_names))``
``lengths``    ``(N,)``                int64 valid frames per clip, ``1 <= lengths <= T``
``layout``     scalar str              a name known to :func:`~lightning_skel.skeleton.get_layout`
``class_names`` ``(K,)``               str
optional       ``subject``, ``view``   ``(N,)`` int64
               ``emotion``             ``(N,)`` int64, -1 where unknown; ``emotion_names`` ``(E,)`` str
               ``split``               ``(N,)`` str, e.g. ``train`` / ``val`` / ``test``
               ``score``               ``(N, T, V, M)`` float32 keypoint confidence of 2D data
               ``sample_name``         ``(N,)`` str, the source clip of each row
               ``prepared_by``         scalar str, a JSON object: what ``prepare`` made the file with
                                       (``format``, the reader's ``options``, ``split``)
attack run     ``x_clean``             ``(N, C, T, V, M)`` float32, the clean clips of which ``x`` are the
(optional)                             adversarial ones (attack.py's adversarial.npz)
               ``index``               ``(N,)`` int64, each clip's row in the attacked file
               ``target``              ``(N,)`` int64, the target label, -1 for an untargeted attack
               ``pred_clean``,         ``(N,)`` int64, the classifier's label of ``x_clean`` and of ``x``
               ``pred_adv``
               ``grad_evals``          ``(N,)`` int64, classifier gradient evaluations spent
               ``attacked``,           ``(N,)`` bool: attacked (the clean label was right); fooled
               ``success``
=============  ======================  =========================================================

:func:`load_npz` never unpickles (``allow_pickle=False``), checks each array's header against the bytes
the file holds before reading it, and checks all of the above, raising a ``ValueError`` that names the file
and the problem.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy

from lightning_skel.skeleton import get_layout
from lightning_skel.utils import write_npz

REQUIRED = ("x", "y", "lengths", "layout", "class_names")
PER_SAMPLE_INT = ("subject", "view", "emotion")
PER_SAMPLE_STR = ("split", "sample_name")
ATTACK_INT = ("index", "target", "pred_clean", "pred_adv", "grad_evals")
ATTACK_BOOL = ("attacked", "success")
ATTACK_KEYS = ("x_clean", *ATTACK_INT, *ATTACK_BOOL)
OPTIONAL = (*PER_SAMPLE_INT, *PER_SAMPLE_STR, "score", "emotion_names", "prepared_by", *ATTACK_KEYS)

SkeletonData = dict[str, Any]


def pad_concat(blocks: list[np.ndarray], shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Concatenate ``blocks`` along axis 0 as float32, zero-padding every other axis to ``shape``.

    Stacks clips of different lengths and person counts into one ``(N, C, T, V, M)`` array, or their
    ``(N, T, V, M)`` scores. One copy per block.

    Args:
        blocks: arrays of one rank.
        shape: the size of every axis but the first (default: the largest among the blocks).

    Example:
        >>> pad_concat([np.ones((1, 3, 5, 20, 1)), np.ones((2, 3, 8, 20, 2))]).shape
        (3, 3, 8, 20, 2)
    """
    if shape is None:
        shape = tuple(int(s) for s in np.max([b.shape[1:] for b in blocks], axis=0))
    out = np.zeros((sum(len(b) for b in blocks), *shape), dtype=np.float32)
    start = 0
    for b in blocks:
        out[(slice(start, start + len(b)), *(slice(0, s) for s in b.shape[1:]))] = b
        start += len(b)
    return out


def validate(data: SkeletonData, source: str | os.PathLike = "<memory>") -> SkeletonData:
    """Check a skeleton-npz dict (the module doc's keys); return it with ``layout`` a ``str``, names lists.

    Args:
        data: the arrays by key.
        source: where they come from, the start of the error (default ``"<memory>"``).

    Raises:
        ValueError: ``"<source>: <problem>"``, the first problem found.

    Example:
        >>> x, y, lengths = np.zeros((2, 3, 8, 20, 1), np.float32), np.array([0, 1]), np.array([8, 5])
        >>> data = dict(x=x, y=y, lengths=lengths, layout="kinect20", class_names=["wave", "clap"])
        >>> validate(data)["class_names"]
        ['wave', 'clap']
        >>> validate({**data, "y": np.array([0, 2])})
        Traceback (most recent call last):
        ValueError: <memory>: labels y must lie in [0, 2) (len(class_names)), got range [0, 2]
    """

    def fail(msg: str) -> None:
        raise ValueError(f"{source}: {msg}")

    missing = [k for k in REQUIRED if k not in data]
    if missing:
        fail(f"missing key(s) {missing}; a skeleton npz needs {list(REQUIRED)}")
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        fail(f"unknown key(s) {unknown}; allowed: {list(REQUIRED + OPTIONAL)}")

    x, y, lengths = data["x"], data["y"], data["lengths"]
    if not isinstance(x, np.ndarray) or x.ndim != 5:
        fail(f"x must be a 5-D array (N, C, T, V, M), got shape {getattr(x, 'shape', None)}")
    if x.dtype != np.float32:
        fail(f"x must be float32, got {x.dtype}")
    n, c, t, v, _ = x.shape
    if c not in (2, 3):
        fail(f"x must have 2 or 3 coordinate channels (C), got C={c}")
    for key, arr in (("y", y), ("lengths", lengths)):
        if not isinstance(arr, np.ndarray) or arr.shape != (n,):
            fail(f"{key} must have shape ({n},) to match x, got {getattr(arr, 'shape', None)}")
        if arr.dtype != np.int64:
            fail(f"{key} must be int64, got {arr.dtype}")
    layout_name = str(
        np.asarray(data["layout"]).item() if isinstance(data["layout"], np.ndarray) else data["layout"]
    )
    try:
        layout = get_layout(layout_name)
    except KeyError as e:
        fail(str(e.args[0]))
    if layout.num_joints != v:
        fail(f"layout {layout_name!r} has {layout.num_joints} joints but x has V={v}")
    class_names = [str(s) for s in np.asarray(data["class_names"]).reshape(-1)]
    if not class_names:
        fail("class_names is empty")
    if n and (y.min() < 0 or y.max() >= len(class_names)):
        fail(
            f"labels y must lie in [0, {len(class_names)}) (len(class_names)), got range [{y.min()}, {y.max()}]"
        )
    if n and (lengths.min() < 1 or lengths.max() > t):
        fail(f"lengths must lie in [1, T={t}], got range [{lengths.min()}, {lengths.max()}]")
    if not np.isfinite(x).all():
        bad = np.unique(np.nonzero(~np.isfinite(x))[0])
        fail(f"x holds NaN or Inf values in {bad.size} sample(s), first at index {bad[0]}")

    out: SkeletonData = {
        "x": x,
        "y": y,
        "lengths": lengths,
        "layout": layout_name,
        "class_names": class_names,
    }
    for key in PER_SAMPLE_INT:
        if key in data:
            arr = np.asarray(data[key])
            if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
                fail(f"{key} must be an integer array of shape ({n},), got {arr.dtype} {arr.shape}")
            out[key] = arr.astype(np.int64, copy=False)
    for key in PER_SAMPLE_STR:
        if key in data:
            arr = np.asarray(data[key])
            if arr.shape != (n,) or arr.dtype.kind not in "US":
                fail(f"{key} must be a string array of shape ({n},), got {arr.dtype} {arr.shape}")
            out[key] = arr.astype(str)
    if "emotion_names" in data:
        out["emotion_names"] = [str(s) for s in np.asarray(data["emotion_names"]).reshape(-1)]
    if "prepared_by" in data:
        text, record = _prepared_record(data["prepared_by"])
        if record is None:
            fail(f"prepared_by must be a string holding a JSON object, got {str(data['prepared_by'])[:80]!r}")
        out["prepared_by"] = text
    if "emotion" in out:
        hi = len(out.get("emotion_names", [])) or None
        e = out["emotion"]
        if n and (e.min() < -1 or (hi is not None and e.max() >= hi)):
            fail(f"emotion must lie in [-1, {hi}) (-1 = unknown), got range [{e.min()}, {e.max()}]")
    if "score" in data:
        s = np.asarray(data["score"])
        if s.shape != (n, t, v, x.shape[4]) or s.dtype != np.float32:
            fail(f"score must be float32 of shape {(n, t, v, x.shape[4])}, got {s.dtype} {s.shape}")
        out["score"] = s
    if "x_clean" in data:
        xc = np.asarray(data["x_clean"])
        if xc.shape != x.shape or xc.dtype != np.float32:
            fail(f"x_clean must be float32 of x's shape {x.shape}, got {xc.dtype} {xc.shape}")
        out["x_clean"] = xc
    for key in (*ATTACK_INT, *ATTACK_BOOL):
        if key in data:
            arr = np.asarray(data[key])
            kind = "b" if key in ATTACK_BOOL else "iu"
            if arr.shape != (n,) or arr.dtype.kind not in kind:
                what = "a bool" if key in ATTACK_BOOL else "an integer"
                fail(f"{key} must be {what} array of shape ({n},), got {arr.dtype} {arr.shape}")
            out[key] = arr if key in ATTACK_BOOL else arr.astype(np.int64, copy=False)
    return out


def save_npz(path: str | os.PathLike, data: SkeletonData, compress: bool = False) -> Path:
    """Validate ``data`` and write it to ``path`` atomically (a temporary file beside it, then a rename).

    ``x`` is made float32, ``y`` and ``lengths`` int64; ``compress`` zips the arrays (default false).

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> save_npz("clips.npz", generate(num_per_class=1, seed=0, frames=16))
        PosixPath('clips.npz')
    """
    path = Path(path)
    data = dict(data)
    data["x"] = np.ascontiguousarray(data["x"], dtype=np.float32)
    for key in ("y", "lengths"):
        data[key] = np.asarray(data[key], dtype=np.int64)
    data = validate(data, path)
    arrays = {k: np.asarray(v) for k, v in data.items()}
    arrays["layout"] = np.asarray(data["layout"])
    arrays["class_names"] = np.asarray(data["class_names"], dtype=str)
    write_npz(path, arrays, compress=compress)
    return path


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first bytes (the second: an empty zip)


def _check_members(path: Path) -> None:
    """Check each array's ``.npy`` header before numpy reads it: an array of Python objects (pickled) or a
    header claiming more bytes than its member holds (corrupt, or crafted to exhaust memory) is refused,
    naming the array."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            key = info.filename.removesuffix(".npy")
            with z.open(info) as m:
                try:
                    version = npy.read_magic(m)
                    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                    shape, _, dtype = read(m)
                except ValueError as e:
                    raise ValueError(f"{path}: member {info.filename!r} is not an .npy array ({e})") from e
                if dtype.hasobject:
                    raise ValueError(
                        f"{path}: array {key!r} holds Python objects (pickled data); a skeleton npz holds "
                        "plain arrays only"
                    )
                need, have = math.prod(shape) * dtype.itemsize, info.file_size - m.tell()
                if need > have:
                    raise ValueError(
                        f"{path}: array {key!r} claims shape {shape} ({need} bytes) but the file holds "
                        f"{have} bytes of it (corrupt or truncated)"
                    )


def read_prepared_by(path: str | os.PathLike) -> dict | None:
    """The ``prepared_by`` record of the skeleton npz at ``path`` as a dict, ``None`` when it has none.

    Reads only that array: a converted data set can be gigabytes. A malformed record is a ``ValueError``
    naming the file.

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> _ = save_npz("clips.npz", {**generate(1, seed=0, frames=16), "prepared_by": '{"format": "ntu"}'})
        >>> read_prepared_by("clips.npz")
        {'format': 'ntu'}
    """
    path = Path(path)
    try:
        _check_members(path)  # headers only
        with np.load(path, allow_pickle=False) as f:
            if "prepared_by" not in f.files:
                return None
            stored = f["prepared_by"]
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(f"{path}: cannot read its prepared_by record ({e})") from e
    _, record = _prepared_record(stored)
    if record is None:
        raise ValueError(
            f"{path}: prepared_by must be a string holding a JSON object, got {str(stored)[:80]!r}"
        )
    return record


def _prepared_record(stored: Any) -> tuple[str | None, dict | None]:
    """A ``prepared_by`` entry (a str, or a 0-d str array as read from a file) as its text and the JSON
    object it holds; ``(text, None)`` when it holds anything else."""
    if isinstance(stored, np.ndarray):
        stored = stored.item() if stored.shape == () and stored.dtype.kind == "U" else None
    if not isinstance(stored, str):
        return None, None
    try:
        record = json.loads(stored)
    except json.JSONDecodeError:
        return stored, None
    return stored, record if isinstance(record, dict) else None


def load_npz(path: str | os.PathLike) -> SkeletonData:
    """Read and validate the skeleton npz at ``path``; never unpickles. Errors name the file and the problem.

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> _ = save_npz("clips.npz", generate(num_per_class=1, seed=0, frames=16))
        >>> load_npz("clips.npz")["x"].shape  # 12 classes, (C, T, V, M)
        (12, 3, 16, 25, 2)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such skeleton npz file")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
        if head.startswith(_NPY_MAGIC):
            raise ValueError(f"{path}: a single .npy array, not an npz archive of named arrays")
        if not head.startswith(_ZIP_MAGIC):
            raise ValueError(f"{path}: not an npz archive (a zip of .npy arrays); it starts with {head!r}")
        _check_members(path)
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except ValueError as e:
        if str(e).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a plain skeleton npz ({e})") from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot be read as an npz archive ({e})") from e
    return validate(data, path)
