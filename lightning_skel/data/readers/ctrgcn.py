"""CTR-GCN / SGN NTU arrays (Chen et al. ICCV 2021; Zhang et al. CVPR 2020): one ``.npz`` per benchmark,
as written by their ``data/ntu/seq_transformation.py`` (``NTU60_CS.npz``, ``NTU60_CV.npz``,
``NTU120_CSub.npz``, ``NTU120_CSet.npz``).

The archive holds ``x_train (N, T, 150)`` float, ``y_train (N, K)`` one-hot with ``K`` = 60 or 120, and
``x_test`` / ``y_test`` alike. The 150 values of a frame are person-major: person 1's joints 0..24 as
x, y, z, then person 2's (zeros when there is one person), so a row reshapes to ``(T, 2, 25, 3)`` and is
transposed to ``(3, T, 25, 2)``, as CTR-GCN's feeder does. The training rows get split ``train``, the test
rows ``test``; ``lengths`` counts the frames up to the last non-zero one (the arrays are zero padded to
300 frames); ``class_names`` are the NTU RGB+D 60 or 120 action names by ``K``. Loaded with
``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from lightning_skel.data.io import SkeletonData, validate
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.agcn import blocks, valid_lengths
from lightning_skel.data.readers.base import Clip, Reader, ReadError
from lightning_skel.data.readers.ntu import NTU60_ACTIONS, NTU120_ACTIONS

PERSONS, JOINTS, COORDS = 2, 25, 3
PARTS: tuple[tuple[str, str], ...] = (("train", "train"), ("test", "test"))  # (npz suffix, split)


@READERS.register("ctrgcn")
@dataclass
class CTRGCNReader(Reader):
    """Reader ``ctrgcn``: a CTR-GCN / SGN ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    The module doc gives the layout of the arrays.

    Args:
        options: none are taken.

    Example:
        >>> one_hot = np.eye(60)
        >>> np.savez("NTU60_CS.npz", x_train=np.ones((2, 10, 150)), y_train=one_hot[[0, 1]],
        ...          x_test=np.ones((1, 10, 150)), y_test=one_hot[[2]])
        >>> data = CTRGCNReader().read_file(Path("NTU60_CS.npz"))
        >>> data["x"].shape, data["split"].tolist()
        ((3, 3, 10, 25, 2), ['train', 'train', 'test'])
    """

    name: ClassVar[str] = "ctrgcn"
    layout: ClassVar[str] = "ntu25"
    splits: ClassVar[tuple[str, ...]] = ("official",)

    def __post_init__(self) -> None:
        if self.options:
            raise ValueError(f"the ctrgcn reader takes no options, got {sorted(self.options)}")

    def files(self, src: Path) -> list[Path]:
        src = Path(src)
        if src.is_file():
            return [src]
        found = sorted(src.glob("*.npz"))
        if len(found) > 1:
            raise ValueError(
                f"{src} holds {len(found)} .npz files, each a complete benchmark: pick one of "
                + ", ".join(p.name for p in found)
            )
        return found

    def read_file(self, path: Path) -> SkeletonData:
        path = Path(path)
        try:
            archive = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ReadError(path, f"not a readable .npz archive ({e})") from e
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ReadError(path, "a single .npy array, not an .npz archive with x_train / y_train / ...")
        with archive:
            missing = [f"{k}_{p}" for p, _ in PARTS for k in ("x", "y") if f"{k}_{p}" not in archive.files]
            if missing:
                raise ReadError(path, f"missing array(s) {missing}; found {archive.files}")
            parts = []
            for part, split in PARTS:
                try:
                    x, y = archive[f"x_{part}"], archive[f"y_{part}"]
                except ValueError as e:  # an object array: refused without unpickling
                    raise ReadError(
                        path, f"x_{part} / y_{part} cannot be read without unpickling ({e})"
                    ) from e
                parts.append((part, split, x, y))

        widths = {y.shape[1] if y.ndim == 2 else None for *_, y in parts}
        width = widths.pop() if len(widths) == 1 else None
        if width not in (len(NTU60_ACTIONS), len(NTU120_ACTIONS)):
            raise ReadError(
                path,
                f"y_train / y_test must be one-hot (N, 60) or (N, 120), got {[y.shape for *_, y in parts]}",
            )
        for part, _, x, y in parts:
            if x.ndim != 3 or x.shape[2] != PERSONS * JOINTS * COORDS or x.dtype.kind not in "iuf":
                raise ReadError(
                    path, f"x_{part} must be a numeric (N, T, 150) array, got {x.dtype} {x.shape}"
                )
            if len(x) != len(y):
                raise ReadError(path, f"x_{part} has {len(x)} rows but y_{part} {len(y)}")
            if y.size and not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
                raise ReadError(path, f"y_{part} is not one-hot: every row needs exactly one 1, the rest 0")
        n = sum(len(x) for _, _, x, _ in parts)
        if n == 0:
            raise ReadError(path, "no rows in x_train or x_test")
        t = max(x.shape[1] for _, _, x, _ in parts)
        if t == 0:
            raise ReadError(path, "the arrays have no frames (T = 0)")

        out = np.zeros((n, COORDS, t, JOINTS, PERSONS), dtype=np.float32)
        start = 0
        for part, _, x, _ in parts:
            tp = x.shape[1]
            for rows in blocks(len(x), x[0].nbytes):
                chunk = np.asarray(x[rows], dtype=np.float32).reshape(-1, tp, PERSONS, JOINTS, COORDS)
                if not np.isfinite(chunk).all():
                    raise ReadError(path, f"x_{part} holds NaN or Inf values")
                out[start + rows.start : start + rows.stop, :, :tp] = chunk.transpose(0, 4, 1, 3, 2)
            start += len(x)
        lengths = np.concatenate([valid_lengths(out[rows], 2) for rows in blocks(n, out[0].nbytes)])
        data: SkeletonData = {
            "x": out,
            "y": np.concatenate([y.argmax(axis=1) for *_, y in parts]).astype(np.int64),
            "lengths": lengths,
            "layout": self.layout,
            "class_names": list(NTU60_ACTIONS if width == len(NTU60_ACTIONS) else NTU120_ACTIONS),
            "split": np.concatenate([np.full(len(x), split) for _, split, x, _ in parts]),
            "sample_name": np.array([f"{part}_{i}" for part, _, x, _ in parts for i in range(len(x))]),
        }
        try:
            return validate(data, path)
        except ValueError as e:
            raise ReadError(path, str(e)) from e

    def split_of(self, clip: Clip, split: str) -> str:
        raise ValueError(f"ctrgcn: the split of {clip.name!r} comes from the archive (x_train / x_test)")
