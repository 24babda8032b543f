"""Checkpoint files: read without running code from them, written without ever truncating one in place.

Every checkpoint the project reads (``ckpt``, ``emotion_ckpt``, ``init_from``, ``ckpt_path``) is unpickled
with ``weights_only=True``. The project's own checkpoints hold only what that allows (tensors, numbers,
strings, containers), so there is no allow-list of further types: a file that names any other global is
refused, with the file and the globals named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from lightning_skel.utils import atomic_open


class CheckpointError(ValueError):
    """A checkpoint that is not what the run needs (wrong kind, wrong layout, unreadable, unsafe)."""


def _unsafe_globals(path: Path) -> list[str]:
    """The globals beyond torch's safe ones that a zip checkpoint's pickle names ([] for other files)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):
        return []


def load_checkpoint(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """Unpickle checkpoint ``path`` with ``weights_only=True``, or raise a :class:`CheckpointError` that
    starts with ``what`` (the config key the file came from) and the path."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    unsafe = _unsafe_globals(path)
    if unsafe:
        raise CheckpointError(
            f"{what} {path}: refused, it needs {', '.join(unsafe)} to load, and unpickling that can run code "
            "from the file; a lightning_skel checkpoint holds only tensors, numbers, strings and containers"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a non-checkpoint file; report them as one
        raise CheckpointError(
            f"{what} {path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})"
        ) from e


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reads and writes, for ``Trainer(plugins=[...])``.

    Reads (``ckpt_path`` resume, testing a checkpoint) go through :func:`load_checkpoint`, whatever
    ``weights_only`` Lightning passes. Writes go to a temporary file beside the target, fsynced and renamed
    onto it: Lightning's own stage the file in ``$TMPDIR`` and, when that is another filesystem, copy it over
    the target in place, where a kill or a full disk leaves it truncated."""

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, "ckpt_path", map_location)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)
