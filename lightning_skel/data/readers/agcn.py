"""2s-AGCN / MS-G3D array files (Shi et al. CVPR 2019; Liu et al. CVPR 2020): ``*_data_joint.npy`` and
``*_label.pkl`` pairs, as written by their ``data_gen/ntu_gendata.py`` and ``kinetics_gendata.py``.

* ``<prefix>_data_joint.npy``: ``(N, C, T, V, M)`` float, zero padded in time and for absent persons;
  ``V`` picks the layout (25 ``ntu25``, 18 ``openpose18`` for Kinetics-skeleton, 20 ``kinect20``). For
  ``openpose18`` with ``C = 3`` the third channel is OpenPose's confidence (ST-GCN's Kinetics convention):
  it becomes the npz ``score`` and ``x`` keeps the two image coordinates.
* ``<prefix>_label.pkl``: a pickle of ``(sample_names, labels)``, read with the restricted unpickler
  :func:`~lightning_skel.data.safe_pickle.safe_load` only (a pickle that names any other global raises
  :class:`~lightning_skel.data.safe_pickle.UnsafePickleError`, before any of its code could run).

``SRC`` is a ``.npy`` file (its label file is found beside it) or a folder holding ``train_*`` / ``val_*``
pairs: rows of a ``train_`` file get split ``train``, rows of a ``val_`` (or ``test_``) file ``test``
(2s-AGCN's "val" set is the benchmark's test set). The array is opened memory-mapped and copied in blocks,
so files of tens of GB are never held twice. ``lengths`` is the number of frames up to the last frame with
any non-zero value. NTU sample names (``S001C001P001R001A001``) also give ``subject`` and ``view``.

Class names: NTU RGB+D 60 or 120 action names for ``ntu25`` (60 when every label is below 60), otherwise
``class_<i>``; the option ``num_classes`` fixes the count (so that a train and a val file agree).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lightning_skel.data.io import SkeletonData, validate
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError
from lightning_skel.data.readers.ntu import NTU60_ACTIONS, NTU120_ACTIONS
from lightning_skel.data.safe_pickle import UnsafePickleError, safe_load

LAYOUT_BY_JOINTS: dict[int, str] = {25: "ntu25", 18: "openpose18", 20: "kinect20"}
SPLIT_BY_PREFIX: dict[str, str] = {"train": "train", "val": "test", "test": "test"}
BLOCK_BYTES = 1 << 28  # rows copied out of a memory map at a time (~256 MB)

_NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


def blocks(n: int, row_bytes: int) -> Iterator[slice]:
    """Row slices covering ``range(n)``, each of about :data:`BLOCK_BYTES` for rows of ``row_bytes``.

    Example:
        >>> list(blocks(5, BLOCK_BYTES // 2))
        [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    step = max(1, BLOCK_BYTES // max(1, row_bytes))
    for i in range(0, n, step):
        yield slice(i, min(i + step, n))


def valid_lengths(x: np.ndarray, time_axis: int) -> np.ndarray:
    """Per row of ``x`` (axis 0), the frames up to the last one with any non-zero value, at least 1.

    An all-zero row is a valid one-frame clip. ``time_axis`` is the frames' axis of ``x``.

    Example:
        >>> x = np.zeros((2, 3, 10, 25, 1))
        >>> x[0, :, :4], x[1, :, :7] = 1, 1
        >>> valid_lengths(x, time_axis=2)
        array([4, 7])
    """
    other = tuple(a for a in range(1, x.ndim) if a != time_axis)
    nonzero = np.any(x != 0, axis=other)  # (N, T)
    t = nonzero.shape[1]
    last = t - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 1).astype(np.int64)


def class_names_for(layout: str, labels: np.ndarray, options: dict[str, Any]) -> list[str]:
    """Class names for ``labels`` of a ``layout`` data set under the reader ``options`` (the module doc).

    NTU RGB+D action names for ``ntu25``, else ``class_<i>``. A label not below ``num_classes`` is a
    ``ValueError``.

    Example:
        >>> class_names_for("ntu25", np.array([0, 59]), {})[:2]
        ['drink water', 'eat meal/snack']
        >>> class_names_for("kinect20", np.array([1]), {})
        ['class_0', 'class_1']
    """
    top = int(labels.max()) + 1 if labels.size else 1
    num = options.get("num_classes")
    if layout == "ntu25" and max(top, num or 0) <= len(NTU120_ACTIONS):
        default = len(NTU60_ACTIONS) if top <= len(NTU60_ACTIONS) else len(NTU120_ACTIONS)
        names = list(NTU120_ACTIONS[: num or default])
    else:
        names = [f"class_{i}" for i in range(num or top)]
    if top > len(names):
        raise ValueError(f"labels go up to {top - 1} but there are only {len(names)} class names")
    return names


def check_options(fmt: str, options: dict[str, Any]) -> None:
    """Reject unknown reader options and a ``num_classes`` that is not a positive integer.

    Example:
        >>> check_options("agcn", {"max_people": 2})
        Traceback (most recent call last):
        ValueError: the agcn reader takes only the option num_classes, got ['max_people']
    """
    unknown = sorted(set(options) - {"num_classes"})
    if unknown:
        raise ValueError(f"the {fmt} reader takes only the option num_classes, got {unknown}")
    num = options.get("num_classes")
    if num is not None and (isinstance(num, bool) or not isinstance(num, int) or num < 1):
        raise ValueError(f"num_classes must be a positive integer, got {num!r}")


def label_path(npy: Path) -> Path:
    """The label pickle of a ``*data_joint.npy`` file; another name is a ``ValueError``.

    Example:
        >>> label_path(Path("ntu/train_data_joint.npy")).name
        'train_label.pkl'
    """
    name = npy.name
    for data_suffix, label_suffix in (("_data_joint.npy", "_label.pkl"), ("data_joint.npy", "label.pkl")):
        if name.endswith(data_suffix):
            return npy.with_name(name[: -len(data_suffix)] + label_suffix)
    raise ValueError(f"{npy}: expected a file named *_data_joint.npy (2s-AGCN / MS-G3D joint data)")


def split_of_file(path: Path) -> str | None:
    """``train`` / ``test`` from a ``train_`` / ``val_`` / ``test_`` file name prefix, else ``None``.

    Example:
        >>> split_of_file(Path("val_data_joint.npy")), split_of_file(Path("data_joint.npy"))
        ('test', None)
    """
    prefix = path.name.split("_", 1)[0].lower()
    return SPLIT_BY_PREFIX.get(prefix)


@READERS.register("agcn")
@dataclass
class AGCNReader(Reader):
    """Reader ``agcn``: 2s-AGCN / MS-G3D ``*_data_joint.npy`` + ``*_label.pkl`` pairs (the module doc).

    Args:
        options: ``num_classes``, the class count (default: from the labels).

    Example:
        >>> import pickle
        >>> np.save("train_data_joint.npy", np.ones((2, 3, 10, 25, 2), np.float32))
        >>> with open("train_label.pkl", "wb") as f:
        ...     pickle.dump((["S001C001P001R001A001", "S001C002P003R001A002"], [0, 1]), f)
        >>> data = AGCNReader().read_file(Path("train_data_joint.npy"))
        >>> data["x"].shape, data["subject"], data["split"]
        ((2, 3, 10, 25, 2), array([1, 3]), array(['train', 'train'], dtype='<U5'))
    """

    name: ClassVar[str] = "agcn"
    layout: ClassVar[str] = "ntu25"  # the usual case; read_file picks the layout from V
    splits: ClassVar[tuple[str, ...]] = ("official",)

    def __post_init__(self) -> None:
        check_options(self.name, self.options)

    def files(self, src: Path) -> list[Path]:
        src = Path(src)
        if src.is_file():
            label_path(src)  # a clear error now for a file that is not *data_joint.npy
            return [src]
        found = [
            p for prefix in ("train", "val", "test") for p in sorted(src.glob(f"{prefix}_*data_joint.npy"))
        ]
        if not found:
            found = sorted(src.glob("*data_joint.npy"))
        return found

    def read_file(self, path: Path) -> SkeletonData:
        path = Path(path)
        lpath = label_path(path)
        if not lpath.is_file():
            raise FileNotFoundError(f"{path}: its label file {lpath.name} is missing (expected beside it)")
        try:
            obj = safe_load(lpath)
        except UnsafePickleError:
            raise  # a pickle that tries to run code is refused loudly, never skipped quietly
        except Exception as e:  # any failure to parse the bytes is a property of the file
            raise ReadError(lpath, f"not a readable pickle ({type(e).__name__}: {e})") from e
        if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
            raise ReadError(
                lpath, f"expected a pickled (sample_names, labels) pair, got {type(obj).__name__}"
            )
        try:
            names = [str(s) for s in obj[0]]
            labels = np.asarray(obj[1]).astype(np.int64, casting="same_kind").reshape(-1)
        except (TypeError, ValueError) as e:
            raise ReadError(
                lpath, f"expected a list of sample names and a list of integer labels ({e})"
            ) from e
        if len(names) != len(labels):
            raise ReadError(lpath, f"{len(names)} sample names but {len(labels)} labels")
        if labels.size and labels.min() < 0:
            raise ReadError(lpath, f"labels must be non-negative, got {labels.min()}")

        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ReadError(path, f"not a readable .npy array ({e})") from e
        if arr.ndim != 5 or arr.dtype.kind not in "iuf":
            raise ReadError(path, f"expected a numeric (N, C, T, V, M) array, got {arr.dtype} {arr.shape}")
        n, c, t, v, m = arr.shape
        if n != len(labels):
            raise ReadError(path, f"{n} rows but {len(labels)} labels in {lpath.name}")
        if v not in LAYOUT_BY_JOINTS:
            raise ReadError(
                path,
                f"V={v} joints matches no known layout; known: "
                + ", ".join(f"{k} ({name})" for k, name in LAYOUT_BY_JOINTS.items()),
            )
        layout = LAYOUT_BY_JOINTS[v]
        with_score = layout == "openpose18" and c == 3
        if c not in (2, 3):
            raise ReadError(path, f"C={c} coordinate channels; expected 2 or 3")
        if n == 0 or t == 0:
            raise ReadError(path, f"empty array {arr.shape}")

        cx = 2 if with_score else c
        x = np.empty((n, cx, t, v, m), dtype=np.float32)
        score = np.empty((n, t, v, m), dtype=np.float32) if with_score else None
        for rows in blocks(n, arr[0].nbytes):  # one bounded copy per block out of the memory map
            chunk = np.asarray(arr[rows], dtype=np.float32)
            if not np.isfinite(chunk).all():
                bad = rows.start + int(np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))[0])
                raise ReadError(path, f"row {bad} ({names[bad]!r}) holds NaN or Inf values")
            x[rows] = chunk[:, :cx]
            if score is not None:
                score[rows] = chunk[:, 2]
        lengths = np.concatenate([valid_lengths(x[rows], 2) for rows in blocks(n, x[0].nbytes)])

        try:
            class_names = class_names_for(layout, labels, self.options)
        except ValueError as e:
            raise ReadError(lpath, str(e)) from e
        data: SkeletonData = {
            "x": x,
            "y": labels,
            "lengths": lengths,
            "layout": layout,
            "class_names": class_names,
            "sample_name": np.array([s.split(".")[0] for s in names]),
        }
        if score is not None:
            data["score"] = score
        split = split_of_file(path)
        if split is not None:
            data["split"] = np.full(n, split)
        fields = [_NTU_NAME.search(s) for s in names]
        if all(fields):
            data["subject"] = np.array([int(f.group(3)) for f in fields], dtype=np.int64)
            data["view"] = np.array([int(f.group(2)) for f in fields], dtype=np.int64)
        try:
            return validate(data, path)
        except ValueError as e:
            raise ReadError(path, str(e)) from e

    def split_of(self, clip: Clip, split: str) -> str:
        if split == "official" and clip.split:
            return clip.split
        raise ValueError(
            f"agcn: the split of {clip.name!r} comes from its file name (train_* / val_*); this file has none"
        )
