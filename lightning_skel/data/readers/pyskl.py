"""pyskl / PoseC3D annotation pickles (Duan et al. 2022), read with the restricted unpickler only.

A file holds ``{"split": {name: [frame_dir, ...]}, "annotations": [anno, ...]}``, a bare list of
annotations, or one annotation dict (as PaddleVideo's example). Each annotation has

* ``keypoint (M, T, V, C)``: ``C = 2`` image coordinates (pixels, kept as they are) or ``C = 3`` 3D
  coordinates; ``V`` picks the layout: 17 ``coco17``, 18 ``openpose18``, 25 ``ntu25``;
* ``keypoint_score (M, T, V)`` for 2D data, kept as the npz ``score``;
* ``label`` (int), ``frame_dir`` (the clip name) and ``total_frames`` (frames beyond it are dropped).

An annotation that breaks these rules makes the whole file a :class:`ReadError` naming the annotation.

Splits: ``--split xsub`` (``xview``, ``xset``) uses the subsets ``xsub_train`` / ``xsub_val`` (/ ``xsub_test``)
of the file's split dict, as pyskl's NTU RGB+D annotations name them; ``official`` uses ``train`` /
``val`` / ``test`` (Kinetics, FineGYM, Diving48), ``split1``..``split3`` use ``train1`` / ``test1`` ...
(UCF101, HMDB51). ``*_train`` rows become ``train``; ``val`` rows become ``test`` (pyskl evaluates on them)
unless the protocol also has a ``test`` subset, in which case they stay ``val``. Clips in no subset of the
protocol are left out (with a warning).

Class names come from the option ``label_map`` (a text file with one name a line, as pyskl ships them, or a
JSON list), otherwise ``class_<i>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lightning_skel.data.io import SkeletonData, validate
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError, stack_clips
from lightning_skel.data.readers.kinetics import read_label_map
from lightning_skel.data.safe_pickle import UnsafePickleError, safe_load

log = logging.getLogger(__name__)

LAYOUT_BY_JOINTS: dict[int, str] = {17: "coco17", 18: "openpose18", 25: "ntu25"}


@dataclass
class PysklClip(Clip):
    """A pyskl clip: a :class:`~lightning_skel.data.readers.base.Clip` with its file's split subsets.

    Args:
        x, label, name, subject, view, emotion, split, score: as
            :class:`~lightning_skel.data.readers.base.Clip` takes them.
        subsets: the keys of the file's split dict that list this clip (default none).
        split_keys: every key of the file's split dict; empty when it has none (default).

    Example:
        >>> clip = PysklClip(np.zeros((2, 5, 17, 1), np.float32), 0, "a", subsets=("xsub_train",))
        >>> clip.subsets
        ('xsub_train',)
    """

    subsets: tuple[str, ...] = ()
    split_keys: tuple[str, ...] = ()


def split_roles(split: str, keys: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``{subset key: "train" | "val" | "test"}`` of the protocol ``split`` among a split dict's ``keys``.

    Example:
        >>> split_roles("xsub", ["xsub_train", "xsub_val"])  # no xsub_test: val is the test set
        {'xsub_train': 'train', 'xsub_val': 'test'}
    """
    if split.startswith("split") and split[5:].isdigit():
        k = split[5:]
        train, val, test = f"train{k}", f"val{k}", f"test{k}"
    elif split == "official":
        train, val, test = "train", "val", "test"
    else:
        train, val, test = f"{split}_train", f"{split}_val", f"{split}_test"
    roles = {train: "train", val: "val" if test in keys else "test", test: "test"}
    return {key: role for key, role in roles.items() if key in keys}


def _int(value: Any) -> int | None:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        return int(value)
    return None


@READERS.register("pyskl")
@dataclass
class PysklReader(Reader):
    """Reader ``pyskl``: pyskl / PoseC3D annotation pickles (Duan et al., CVPR 2022), restricted unpickler.

    Args:
        options: ``label_map``, a text file (one name a line) or JSON list of class names (default
            ``class_<i>``).

    Example:
        >>> import pickle
        >>> anno = {"frame_dir": "a", "label": 0, "keypoint": np.zeros((1, 10, 17, 2))}  # (M, T, V, C)
        >>> anno["keypoint_score"] = np.ones((1, 10, 17))
        >>> with open("anno.pkl", "wb") as f:
        ...     pickle.dump({"split": {"xsub_train": ["a"]}, "annotations": [anno]}, f)
        >>> data = PysklReader().assemble(PysklReader().read_file(Path("anno.pkl")), split="xsub")
        >>> data["x"].shape, data["layout"], data["score"].shape
        ((1, 2, 10, 17, 1), 'coco17', (1, 10, 17, 1))
    """

    name: ClassVar[str] = "pyskl"
    layout: ClassVar[str] = "coco17"  # the usual case; assemble picks the layout from V
    splits: ClassVar[tuple[str, ...]] = ("xsub", "xview", "xset", "official", "split1", "split2", "split3")

    def __post_init__(self) -> None:
        lm = self.options.get("label_map")
        self.label_map: list[str] | None = None if lm is None else read_label_map(lm)

    def files(self, src: Path) -> list[Path]:
        return [src] if src.is_file() else sorted(src.glob("*.pkl"))

    def read_file(self, path: Path) -> list[Clip]:
        try:
            obj = safe_load(path)
        except UnsafePickleError:
            raise  # a pickle that tries to run code is refused loudly, never skipped quietly
        except Exception as e:  # any failure to parse the bytes is a property of the file, not a bug here
            raise ReadError(path, f"not a readable pickle ({type(e).__name__}: {e})") from e

        split: dict = {}
        if isinstance(obj, dict) and "annotations" in obj:
            annos, split = obj["annotations"], obj.get("split") or {}
        elif isinstance(obj, dict):
            annos = [obj]
        else:
            annos = obj
        if not isinstance(annos, (list, tuple)) or not annos:
            raise ReadError(path, "expected a non-empty list of annotation dicts (or one annotation dict)")
        if not isinstance(split, dict) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple)) for k, v in split.items()
        ):
            raise ReadError(path, '"split" must map subset names to lists of frame_dir names')
        membership: dict[str, list[str]] = {}
        for key, names in split.items():  # invert {subset: [clip, ...]} once per file
            for n in names:
                membership.setdefault(str(n), []).append(key)
        split_keys = tuple(split)

        clips: list[Clip] = []
        shape: tuple[int, int] | None = None  # (V, C) shared by every annotation of the file
        for i, anno in enumerate(annos):
            clip = self._clip(path, i, anno)
            vc = (clip.x.shape[2], clip.x.shape[0])
            if shape is not None and vc != shape:
                raise ReadError(
                    path, f"annotation {i} ({clip.name!r}) has (V, C) = {vc}, earlier ones {shape}"
                )
            shape = vc
            clip.subsets = tuple(membership.get(clip.name, ()))
            clip.split_keys = split_keys
            clips.append(clip)
        return clips

    def _clip(self, path: Path, i: int, anno: Any) -> PysklClip:
        if not isinstance(anno, dict):
            raise ReadError(path, f"annotation {i} is a {type(anno).__name__}, not a dict")
        name = anno.get("frame_dir", f"{path.stem}_{i}")
        where = f"annotation {i} ({name!r})"
        kp = anno.get("keypoint")
        if not isinstance(kp, np.ndarray):
            raise ReadError(
                path,
                f"{where} has no keypoint array (annotations that keep keypoints in separate files are not read)",
            )
        if kp.ndim != 4 or kp.dtype.kind not in "iuf":
            raise ReadError(
                path, f"{where}: keypoint must be a numeric (M, T, V, C) array, got {kp.dtype} {kp.shape}"
            )
        m, t, v, c = kp.shape
        if v not in LAYOUT_BY_JOINTS:
            raise ReadError(
                path, f"{where}: {v} joints; known: {sorted(LAYOUT_BY_JOINTS)} (coco17, openpose18, ntu25)"
            )
        if c not in (2, 3):
            raise ReadError(path, f"{where}: keypoint has C={c}; expected 2 (2D) or 3 (3D)")
        if m < 1 or t < 1:
            raise ReadError(path, f"{where}: keypoint has no person or no frame, shape {kp.shape}")
        label = _int(anno.get("label"))
        if label is None or label < 0:
            raise ReadError(path, f"{where}: label must be a non-negative integer, got {anno.get('label')!r}")
        if self.label_map is not None and label >= len(self.label_map):
            raise ReadError(
                path, f"{where}: label {label} outside the label map's {len(self.label_map)} classes"
            )
        total = anno.get("total_frames", t)
        if _int(total) is None or not 1 <= _int(total) <= t:
            raise ReadError(
                path, f"{where}: total_frames must be an integer in [1, {t}] (keypoint frames), got {total!r}"
            )
        total = _int(total)
        score = anno.get("keypoint_score")
        if c == 2 and score is not None:
            if not isinstance(score, np.ndarray) or score.shape != (m, t, v) or score.dtype.kind not in "iuf":
                raise ReadError(
                    path,
                    f"{where}: keypoint_score must be numeric of shape {(m, t, v)}, got "
                    f"{getattr(score, 'dtype', type(score).__name__)} {getattr(score, 'shape', '')}",
                )
        else:
            score = None
        x = kp[:, :total].astype(np.float32).transpose(3, 1, 2, 0)  # (M, T, V, C) -> (C, T, V, M)
        s = None if score is None else score[:, :total].astype(np.float32).transpose(1, 2, 0)  # -> (T, V, M)
        if not np.isfinite(x).all() or (s is not None and not np.isfinite(s).all()):
            raise ReadError(path, f"{where}: keypoint or keypoint_score holds NaN or Inf values")
        return PysklClip(
            x=np.ascontiguousarray(x),
            score=None if s is None else np.ascontiguousarray(s),
            label=label,
            name=str(name),
        )

    def split_of(self, clip: Clip, split: str) -> str:
        keys = getattr(clip, "split_keys", ())
        if not keys:
            raise ValueError(f"pyskl: {clip.name!r} comes from an annotation file without a 'split' dict")
        roles = split_roles(split, keys)
        if not roles:
            raise ValueError(
                f"pyskl: the annotation file's split dict has no subset for split {split!r} "
                f"(expected e.g. {split}_train / {split}_val); its subsets: {list(keys)}"
            )
        found = [roles[k] for k in getattr(clip, "subsets", ()) if k in roles]
        return found[0] if found else ""

    def assemble(self, clips: list[Clip], split: str | None = None) -> SkeletonData:
        if not clips:
            raise ValueError(f"{self.name}: no clip could be read")
        shapes = {(c.x.shape[2], c.x.shape[0]) for c in clips}
        if len(shapes) > 1:
            raise ValueError(
                f"pyskl: the files mix joint counts / coordinate channels (V, C): {sorted(shapes)}"
            )
        layout = LAYOUT_BY_JOINTS[clips[0].x.shape[2]]
        if self.label_map is not None:
            class_names = list(self.label_map)
        else:
            class_names = [f"class_{i}" for i in range(max(c.label for c in clips) + 1)]
        roles: dict[int, str] = {}
        if split is not None:
            roles = {id(c): self.split_of(c, split) for c in clips}
            kept = [c for c in clips if roles[id(c)]]
            if len(kept) < len(clips):
                log.warning(
                    "pyskl: leaving out %d clip(s) in no subset of split %r", len(clips) - len(kept), split
                )
            if not kept:
                raise ValueError(f"pyskl: no clip is in a subset of split {split!r}")
            clips = kept
        data = stack_clips(
            clips, layout, class_names, split_fn=None if split is None else (lambda c: roles[id(c)])
        )
        return validate(data, f"<{self.name} clips>")
