"""Checkpoint files are read without running code from them, and written so that no kill or full disk ever
leaves a truncated file under a checkpoint's name."""

import os

import torch

from lightning_skel.utils import write_npz


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """The project's atomic writes (shards, manifests, metrics) fsync the temporary file before renaming it
    onto the target: else a crash soon after can leave an empty file under the final name."""
    calls = []  # (what, the inode of the file it acts on)
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: calls.append(("fsync", os.fstat(fd).st_ino)) or real_fsync(fd)
    )
    monkeypatch.setattr(
        os, "replace", lambda a, b: calls.append(("replace", os.stat(a).st_ino)) or real_replace(a, b)
    )
    target = write_npz(tmp_path / "shard.npz", {"a": torch.arange(3).numpy()})
    assert [c[0] for c in calls] == ["fsync", "replace"] and calls[0][1] == calls[1][1], calls
    assert target.is_file() and [p.name for p in tmp_path.iterdir()] == ["shard.npz"]
