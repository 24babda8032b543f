"""Emotion-Gait (Bhattacharya et al., STEP / ProxEmo): walks labelled with one of four perceived emotions.

Two forms are read:

* the rebuilt array file ``emotion_gait_real342_T75.npz``: ``positions (N, T, 16, 3)`` float (root-relative
  metres, y up), ``labels (N,)`` int, and optionally ``keys (N,)`` (the source clip names, kept as
  ``sample_name``); read with ``allow_pickle=False``;
* ProxEmo's HDF5 files: ``features*.h5`` holds one ``(T, 48)`` dataset per gait (16 joints x xyz, row per
  frame) and the labels file beside it (``features.h5`` -> ``labels.h5``, ``features_ELMD.h5`` ->
  ``labels_ELMD.h5``, ``sample_features.h5`` -> ``sample_lables.h5``, the upstream spelling) one scalar per
  key. The option ``labels`` names the labels file explicitly.

Labels: 0 Happy, 1 Angry, 2 Sad, 3 Neutral, both as the action label ``y`` and as the ``emotion`` column.
The joints are already in ``gait16`` order. There is no official train/test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np

from lightning_skel.data.io import SkeletonData, validate
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError

EMOTIONS: tuple[str, ...] = ("Happy", "Angry", "Sad", "Neutral")
NUM_JOINTS = 16


def _labels_file_for(features: Path) -> list[Path]:
    """Candidate ProxEmo labels files for a features file, in order of preference."""
    stem = features.name
    names = [stem.replace("features", "labels"), stem.replace("features", "lables"), "labels.h5"]
    return [features.with_name(n) for n in dict.fromkeys(names) if n != stem]


@READERS.register("emotion_gait")
class EmotionGaitReader(Reader):
    """Reader ``emotion_gait``: Emotion-Gait walks (STEP / ProxEmo), as an npz or ProxEmo's HDF5 files.

    Args:
        options: ``labels``, the HDF5 labels file (default: the one beside the features file).

    Example:
        >>> np.savez("gaits.npz", positions=np.zeros((2, 10, 16, 3)), labels=np.array([0, 2]))
        >>> reader = EmotionGaitReader()
        >>> data = reader.assemble(reader.read_file(Path("gaits.npz")))
        >>> data["x"].shape, data["emotion"]
        ((2, 3, 10, 16, 1), array([0, 2]))
    """

    name: ClassVar[str] = "emotion_gait"
    layout: ClassVar[str] = "gait16"
    class_names: ClassVar[tuple[str, ...]] = EMOTIONS
    splits: ClassVar[tuple[str, ...]] = ()

    def files(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src]
        return sorted([*src.glob("*.npz"), *src.glob("*features*.h5")])

    def read_file(self, path: Path) -> list[Clip]:
        if path.suffix.lower() in (".h5", ".hdf5"):
            return self._read_h5(path)
        return self._read_npz(path)

    def _read_npz(self, path: Path) -> list[Clip]:
        try:
            with np.load(path, allow_pickle=False) as f:
                if not isinstance(f, np.lib.npyio.NpzFile):
                    raise ReadError(path, "a single .npy array, not an npz archive with positions and labels")
                missing = [k for k in ("positions", "labels") if k not in f.files]
                if missing:
                    raise ReadError(path, f"missing array(s) {missing}; found {f.files}")
                positions, labels = f["positions"], f["labels"]
                keys = f["keys"] if "keys" in f.files else None
        except ReadError:
            raise
        except (OSError, ValueError, EOFError) as e:  # not a zip / pickled object arrays / truncated
            raise ReadError(path, f"cannot be read as a plain npz archive ({e})") from e
        n = positions.shape[0] if positions.ndim else 0
        if positions.dtype.kind not in "iuf":
            raise ReadError(path, f"positions must be numeric, got {positions.dtype}")
        if positions.ndim != 4 or positions.shape[2:] != (NUM_JOINTS, 3) or positions.shape[1] < 1:
            raise ReadError(path, f"positions must have shape (N, T, {NUM_JOINTS}, 3), got {positions.shape}")
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ReadError(
                path, f"labels must be an integer array of shape ({n},), got {labels.dtype} {labels.shape}"
            )
        names = [f"{path.stem}_{i:04d}" for i in range(n)] if keys is None else [str(k) for k in keys]
        if len(names) != n:
            raise ReadError(path, f"keys has {len(names)} entries for {n} clips")
        # (N, T, V, C) -> (N, C, T, V, M=1)
        x = np.ascontiguousarray(positions.transpose(0, 3, 1, 2)[..., None], dtype=np.float32)
        bad = np.nonzero(~np.isfinite(x).reshape(n, -1).all(axis=1))[0]
        if bad.size:
            raise ReadError(path, f"clip {names[bad[0]]!r} (and {bad.size - 1} more) holds NaN or Inf values")
        return self._clips(path, x, labels, names)

    def _read_h5(self, path: Path) -> list[Clip]:
        candidates = [Path(self.options["labels"])] if "labels" in self.options else _labels_file_for(path)
        labels_path = next((p for p in candidates if p.is_file()), None)
        if labels_path is None:
            raise ReadError(path, f"no labels file found (tried {[str(p) for p in candidates]})")
        try:
            with h5py.File(path, "r") as feats, h5py.File(labels_path, "r") as labs:
                keys = sorted(feats.keys())
                missing = [k for k in keys if k not in labs]
                if missing:
                    raise ReadError(
                        path, f"{len(missing)} gait(s) have no label in {labels_path}, e.g. {missing[0]!r}"
                    )
                arrays = [np.asarray(feats[k][()]) for k in keys]
                labels = np.array([int(np.asarray(labs[k][()])) for k in keys], dtype=np.int64)
        except ReadError:
            raise
        except (OSError, KeyError, TypeError, ValueError) as e:  # not HDF5 / groups instead of datasets
            raise ReadError(path, f"cannot be read as ProxEmo HDF5 gaits ({e})") from e
        if not keys:
            raise ReadError(path, "no gaits in the file")
        clips_x = []
        for key, a in zip(keys, arrays, strict=True):  # one reshape per gait
            if a.dtype.kind not in "iuf" or a.ndim != 2 or a.shape[1] != NUM_JOINTS * 3 or a.shape[0] < 1:
                raise ReadError(
                    path,
                    f"gait {key!r} must be numeric of shape (T, {NUM_JOINTS * 3}), got {a.dtype} {a.shape}",
                )
            if not np.isfinite(a).all():
                raise ReadError(path, f"gait {key!r} holds NaN or Inf values")
            clips_x.append(
                a.reshape(a.shape[0], NUM_JOINTS, 3).transpose(2, 0, 1)[..., None].astype(np.float32)
            )
        return self._clips(path, clips_x, labels, keys)

    def _clips(self, path: Path, xs, labels: np.ndarray, names: list[str]) -> list[Clip]:
        labels = np.asarray(labels, dtype=np.int64)
        bad = np.nonzero((labels < 0) | (labels >= len(EMOTIONS)))[0]
        if bad.size:
            raise ReadError(
                path, f"label {labels[bad[0]]} of clip {names[bad[0]]!r} outside 0..{len(EMOTIONS) - 1}"
            )
        return [
            Clip(x=x, label=int(lab), name=name, emotion=int(lab))
            for x, lab, name in zip(xs, labels, names, strict=True)
        ]

    def assemble(self, clips: list[Clip], split: str | None = None) -> SkeletonData:
        data = super().assemble(clips, split)
        data["emotion_names"] = list(EMOTIONS)
        return validate(data, f"<{self.name} clips>")
