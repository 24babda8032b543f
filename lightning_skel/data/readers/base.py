"""The reader interface shared by every format, and the assembly of clips into one skeleton-npz dict.

A format registers a :class:`Reader` subclass in :data:`~lightning_skel.data.readers.READERS`. Formats
with one file per clip (NTU ``.skeleton``, Kinetics JSON, UTD-MHAD ``.mat``) implement :meth:`Reader.files`
and :meth:`Reader.read_file`; ``prepare`` runs ``read_file`` in parallel over the files, collects
:class:`ReadError` skips, and calls :meth:`Reader.assemble`. Formats that come as one big array file
(2s-AGCN, CTR-GCN, pyskl, Emotion-Gait) return a single :class:`Clips` batch from ``read_file``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from lightning_skel.data.io import SkeletonData, pad_concat, validate


class ReadError(ValueError):
    """A file that cannot be read: ``prepare`` lists it as a skip with its reason and line.

    Args:
        path: the file.
        reason: what is wrong.
        line: the 1-based line of the problem (default ``None``, not known).

    Example:
        >>> str(ReadError("S001C001P001R001A001.skeleton", "not a number", line=3))
        'S001C001P001R001A001.skeleton:3: not a number'
    """

    def __init__(self, path: str | Path, reason: str, line: int | None = None) -> None:
        self.path, self.reason, self.line = str(path), reason, line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        # rebuilt from its fields, so that it crosses a process pool intact
        return (type(self), (self.path, self.reason, self.line))


@dataclass
class Clip:
    """One sequence as a reader reads it, before padding.

    Args:
        x: ``(C, T, V, M)`` float32 coordinates.
        label: the class index.
        name: the source clip's name (``sample_name``).
        subject, view, emotion: the performer, the camera, the perceived emotion (default -1, unknown).
        split: its set (``train`` / ``test``) where the file says it (default ``None``).
        score: ``(T, V, M)`` keypoint confidence of 2D data (default ``None``).

    Example:
        >>> clip = Clip(np.zeros((3, 8, 20, 1), np.float32), label=0, name="a1_s1_t1", subject=1)
        >>> clip.x.shape[1], clip.view
        (8, -1)
    """

    x: np.ndarray
    label: int
    name: str
    subject: int = -1
    view: int = -1
    emotion: int = -1
    split: str | None = None
    score: np.ndarray | None = None


@dataclass
class Reader:
    """Base class of a format reader, registered in :data:`~lightning_skel.data.readers.READERS`.

    Subclasses set ``name``, ``layout``, ``class_names`` and ``splits`` and implement :meth:`files` and
    :meth:`read_file`; :meth:`assemble` usually stays as it is.

    Args:
        options: the reader's options (default none); a subclass checks them in ``__post_init__``.

    Example:
        >>> class Ones(Reader):
        ...     name, layout, class_names = "ones", "kinect20", ("wave",)
        ...     def read_file(self, path):
        ...         return [Clip(np.ones((3, 8, 20, 1), np.float32), label=0, name=path.stem)]
        >>> Ones().assemble(Ones().read_file(Path("clip.txt")))["x"].shape
        (1, 3, 8, 20, 1)
    """

    name: ClassVar[str]
    layout: ClassVar[str]
    class_names: ClassVar[tuple[str, ...]] = ()
    splits: ClassVar[tuple[str, ...]] = ()  # benchmark protocols accepted by ``--split``
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Subclasses check their ``options`` here (the dataclass ``__init__`` calls it)."""

    def settings(self) -> dict:
        """The options as the reader applies them, defaults filled in where it has any: what ``prepare``
        records in the npz it writes (``prepared_by``). The options as given by default."""
        return dict(self.options)

    def warm_up(self) -> None:
        """Work every file needs done once (compiling a parser), run by ``prepare`` before it reads any file,
        in the parent process, so that worker processes do not each do it. Nothing by default."""

    def files(self, src: Path) -> list[Path]:
        """The files under ``src`` to read, in a stable (sorted) order."""
        return [src]

    def read_file(self, path: Path) -> list[Clip] | SkeletonData:
        raise NotImplementedError

    def split_of(self, clip: Clip, split: str) -> str:
        """``"train"`` or ``"test"`` for ``clip`` under the benchmark protocol ``split``."""
        raise ValueError(f"format {self.name!r} has no split protocol {split!r}; known: {list(self.splits)}")

    def check_split(self, split: str | None) -> None:
        if split is not None and split not in self.splits:
            raise ValueError(
                f"format {self.name!r} has no split {split!r}; known: {list(self.splits) or 'none'}"
            )

    def assemble(self, clips: list[Clip], split: str | None = None) -> SkeletonData:
        """Pad the clips to a common T and M and stack them into a validated skeleton-npz dict."""
        if not clips:
            raise ValueError(f"{self.name}: no clip could be read")
        return stack_clips(
            clips,
            self.layout,
            list(self.class_names),
            split_fn=None if split is None else (lambda c: self.split_of(c, split)),
        )


def stack_clips(clips: list[Clip], layout: str, class_names: list[str], split_fn=None) -> SkeletonData:
    """Pad clips to a common ``T`` and ``M`` and stack them into a validated skeleton-npz dict.

    Args:
        clips: the clips, of one layout.
        layout: its name.
        class_names: the data set's class names.
        split_fn: ``clip -> split`` for the ``split`` column (default: the clips' own ``split``, if any).

    Example:
        >>> a = Clip(np.ones((3, 8, 20, 1), np.float32), label=0, name="a")  # 8 frames, one person
        >>> b = Clip(np.ones((3, 5, 20, 2), np.float32), label=1, name="b")
        >>> data = stack_clips([a, b], "kinect20", ["wave", "clap"])
        >>> data["x"].shape, data["lengths"]
        ((2, 3, 8, 20, 2), array([8, 5]))
    """
    x = pad_concat([cl.x[None] for cl in clips])  # one copy per clip: assembly, not a per-step loop
    _, _, t, v, m = x.shape
    data: SkeletonData = {
        "x": x,
        "y": np.array([cl.label for cl in clips], dtype=np.int64),
        "lengths": np.array([cl.x.shape[1] for cl in clips], dtype=np.int64),
        "layout": layout,
        "class_names": class_names,
        "sample_name": np.array([cl.name for cl in clips]),
    }
    for key in ("subject", "view", "emotion"):
        vals = np.array([getattr(cl, key) for cl in clips], dtype=np.int64)
        if (vals >= 0).any():
            data[key] = vals
    if split_fn is not None:
        data["split"] = np.array([split_fn(cl) for cl in clips])
    elif any(cl.split is not None for cl in clips):
        data["split"] = np.array([cl.split or "" for cl in clips])
    if any(cl.score is not None for cl in clips):  # clips without scores: zeros
        none = np.zeros((1, 0, v, 0))
        data["score"] = pad_concat([none if cl.score is None else cl.score[None] for cl in clips], (t, v, m))
    return validate(data, f"<{layout} clips>")
