"""Kinetics-skeleton (ST-GCN, Yan et al. 2018): one JSON file per video of OpenPose COCO-18 2D poses.

File structure::

    {"data": [{"frame_index": 1, "skeleton": [{"pose": [x0, y0, ..., x17, y17], "score": [s0, ..., s17]},
                                              ...]},
              ...],
     "label": "abseiling", "label_index": 0}

Like ST-GCN's ``kinetics_feeder``, each frame keeps its ``max_people`` (option, default 2) most confident
people, ranked by mean keypoint score (ties keep file order); unlike it, coordinates are not centred: ``x``
holds the normalised image coordinates of the file, ``(2, T, 18, max_people)``, and the confidences go to
the separate ``score (T, 18, max_people)``. ``frame_index`` places each frame in time (the first index found
is frame 0; missing frames stay zero, as absent people do).

Class names come from the ``label_index`` / ``label`` pairs seen (``class_<i>`` for indices never seen), or
from the option ``label_map``: the path of a JSON list of class names (or a text file, one name a line), in
which case ``label`` names may stand in for a missing ``label_index``. The split ``official`` puts files
under a folder whose name contains ``train`` in train and those under ``val``/``test`` folders in test (ST-GCN's
``kinetics_train`` / ``kinetics_val``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lightning_skel.data.io import SkeletonData, validate
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError, stack_clips

log = logging.getLogger(__name__)

NUM_JOINTS = 18
MAX_FRAME_SPAN = 100_000  # a frame_index range beyond this is corrupt, not a video


def read_label_map(path: str | os.PathLike) -> list[str]:
    r"""Class names from a JSON list of strings, or from a text file with one name a line.

    Example:
        >>> _ = Path("labels.txt").write_text("abseiling\nair drumming\n")
        >>> read_label_map("labels.txt")
        ['abseiling', 'air drumming']
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        names = json.loads(text)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: a label map must be a JSON list of class names")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: the label map is empty")
    return names


@dataclass
class KineticsClip(Clip):
    """A Kinetics-skeleton clip: a :class:`~lightning_skel.data.readers.base.Clip` with its label's name
    and its folder.

    Args:
        x, label, name, subject, view, emotion, split, score: as
            :class:`~lightning_skel.data.readers.base.Clip` takes them.
        label_name: the file's ``label`` (default ``""``).
        folder: the name of the file's folder, for the split ``official`` (default ``""``).

    Example:
        >>> clip = KineticsClip(np.zeros((2, 5, 18, 2), np.float32), 0, "abc", label_name="abseiling")
        >>> clip.label_name, clip.folder
        ('abseiling', '')
    """

    label_name: str = ""
    folder: str = ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@READERS.register("kinetics")
@dataclass
class KineticsReader(Reader):
    """Reader ``kinetics``: Kinetics-skeleton JSON files, one a video (ST-GCN; the module doc).

    Args:
        options: ``max_people``, the most confident people kept per frame (default 2); ``label_map``, a
            JSON list or text file of class names (default: the names seen).

    Example:
        >>> frame = {"frame_index": 1, "skeleton": [{"pose": [0.5] * 36, "score": [0.9] * 18}]}
        >>> video = {"data": [frame], "label": "abseiling", "label_index": 0}
        >>> _ = Path("abc.json").write_text(json.dumps(video))
        >>> (clip,) = KineticsReader().read_file(Path("abc.json"))
        >>> clip.x.shape, clip.score.shape, clip.label_name  # (C, T, V, M): x, y; the confidence apart
        ((2, 1, 18, 2), (1, 18, 2), 'abseiling')
    """

    name: ClassVar[str] = "kinetics"
    layout: ClassVar[str] = "openpose18"
    splits: ClassVar[tuple[str, ...]] = ("official",)

    def __post_init__(self) -> None:
        m = self.options.get("max_people", 2)
        if _int(m) is None or m < 1:
            raise ValueError(f"kinetics: option max_people must be a positive integer, got {m!r}")
        self.max_people: int = m
        lm = self.options.get("label_map")
        self.label_map: list[str] | None = None if lm is None else read_label_map(lm)

    def files(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src]
        # ST-GCN keeps kinetics_{train,val}_label.json beside the video folders: they are not videos
        return sorted(p for p in src.rglob("*.json") if not p.name.endswith("_label.json"))

    def read_file(self, path: Path) -> list[Clip]:
        try:
            video = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ReadError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from e
        except json.JSONDecodeError as e:
            raise ReadError(path, f"not valid JSON: {e.msg} (column {e.colno})", line=e.lineno) from e
        if not isinstance(video, dict) or not isinstance(video.get("data"), list):
            raise ReadError(
                path, 'not a Kinetics-skeleton video: expected an object with a "data" list of frames'
            )
        frames = video["data"]
        if not frames:
            raise ReadError(path, 'no frames ("data" is empty)')
        label, label_name = self._label(path, video)

        frame_index: list[int] = []
        owner: list[int] = []  # frame position of each person
        poses: list[Any] = []
        scores: list[Any] = []
        for i, frame in enumerate(frames):  # the JSON structure itself: one pass, no per-joint work
            if not isinstance(frame, dict) or not isinstance(frame.get("skeleton", []), list):
                raise ReadError(path, f'frame {i}: expected {{"frame_index": int, "skeleton": [...]}}')
            fi = _int(frame.get("frame_index", i))
            if fi is None or fi < 0:
                raise ReadError(path, f"frame {i}: frame_index must be a non-negative integer")
            frame_index.append(fi)
            for j, person in enumerate(frame.get("skeleton", [])):
                pose = person.get("pose") if isinstance(person, dict) else None
                score = person.get("score") if isinstance(person, dict) else None
                if not isinstance(pose, list) or len(pose) != 2 * NUM_JOINTS:
                    n = len(pose) if isinstance(pose, list) else type(pose).__name__
                    raise ReadError(
                        path,
                        f"frame {i} person {j}: pose must list {2 * NUM_JOINTS} values (x, y per joint), got {n}",
                    )
                if not isinstance(score, list) or len(score) != NUM_JOINTS:
                    n = len(score) if isinstance(score, list) else type(score).__name__
                    raise ReadError(
                        path, f"frame {i} person {j}: score must list {NUM_JOINTS} values, got {n}"
                    )
                owner.append(i)
                poses.append(pose)
                scores.append(score)

        fidx = np.asarray(frame_index, dtype=np.int64)
        if np.unique(fidx).size != fidx.size:
            raise ReadError(path, "duplicate frame_index values")
        t0, span = int(fidx.min()), int(fidx.max() - fidx.min()) + 1
        if span > MAX_FRAME_SPAN:
            raise ReadError(path, f"frame_index spans {span} frames (more than {MAX_FRAME_SPAN})")
        try:
            pose_arr = np.asarray(poses, dtype=np.float64).reshape(-1, NUM_JOINTS, 2)
            score_arr = np.asarray(scores, dtype=np.float64).reshape(-1, NUM_JOINTS)
        except (TypeError, ValueError) as e:
            raise ReadError(path, f"pose/score values must be numbers ({e})") from e
        if not (np.isfinite(pose_arr).all() and np.isfinite(score_arr).all()):
            raise ReadError(path, "pose or score holds NaN, Infinity or null values")

        # Rank the people of each frame by mean confidence and keep the first max_people.
        owner_arr = np.asarray(owner, dtype=np.int64)
        order = np.lexsort((-score_arr.mean(axis=1), owner_arr))  # by frame, then by confidence, stable
        sorted_owner = owner_arr[order]
        rank = np.arange(order.size) - np.searchsorted(sorted_owner, sorted_owner, side="left")
        keep = order[rank < self.max_people]
        t = fidx[owner_arr[keep]] - t0
        m = rank[rank < self.max_people]
        x = np.zeros((span, self.max_people, NUM_JOINTS, 2), dtype=np.float32)
        s = np.zeros((span, self.max_people, NUM_JOINTS), dtype=np.float32)
        x[t, m] = pose_arr[keep]
        s[t, m] = score_arr[keep]
        return [
            KineticsClip(
                x=np.ascontiguousarray(x.transpose(3, 0, 2, 1)),  # (T, M, V, C) -> (C, T, V, M)
                score=np.ascontiguousarray(s.transpose(0, 2, 1)),  # (T, M, V) -> (T, V, M)
                label=label,
                name=path.stem,
                label_name=label_name,
                folder=path.parent.name,
            )
        ]

    def _label(self, path: Path, video: dict) -> tuple[int, str]:
        index, name = video.get("label_index"), video.get("label")
        name = name if isinstance(name, str) else ""
        if index is None and self.label_map is not None and name in self.label_map:
            index = self.label_map.index(name)
        if _int(index) is None:
            raise ReadError(path, f"label_index must be an integer, got {index!r}")
        if index < 0:
            raise ReadError(path, f"unlabelled video (label_index {index})")
        if self.label_map is not None and index >= len(self.label_map):
            raise ReadError(
                path, f"label_index {index} outside the label map's {len(self.label_map)} classes"
            )
        return index, name

    def split_of(self, clip: Clip, split: str) -> str:
        if split == "official":
            folder = getattr(clip, "folder", "").lower()
            if "train" in folder:
                return "train"
            if "val" in folder or "test" in folder:
                return "test"
            raise ValueError(
                f"kinetics: split 'official' needs the files under folders named like kinetics_train / "
                f"kinetics_val; {clip.name!r} is in {folder!r}"
            )
        return super().split_of(clip, split)

    def assemble(self, clips: list[Clip], split: str | None = None) -> SkeletonData:
        if not clips:
            raise ValueError(f"{self.name}: no clip could be read")
        if self.label_map is not None:
            class_names = list(self.label_map)
        else:
            class_names = [f"class_{i}" for i in range(max(c.label for c in clips) + 1)]
            named: dict[int, str] = {}
            for c in clips:
                name = getattr(c, "label_name", "")
                if not name:
                    continue
                if named.setdefault(c.label, name) != name:
                    log.warning(
                        "kinetics: label_index %d is named both %r and %r; keeping %r",
                        c.label,
                        named[c.label],
                        name,
                        named[c.label],
                    )
            for i, name in named.items():
                class_names[i] = name
        data = stack_clips(
            clips,
            self.layout,
            class_names,
            split_fn=None if split is None else (lambda c: self.split_of(c, split)),
        )
        return validate(data, f"<{self.name} clips>")
