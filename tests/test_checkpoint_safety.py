"""Checkpoint files are read without running code from them, and written so that no kill or full disk ever
leaves a truncated file under a checkpoint's name."""

import errno
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from lightning_skel.attack_run import run_attack
from lightning_skel.checkpoints import CheckpointError
from lightning_skel.run import run_train
from lightning_skel.utils import write_npz
from tests.helpers import attack_cfg, train_cfg

PGD = ["attack=pgd", "attack.eps=0.05", "attack.steps=2", "limit=4", "batch_size=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch tiny classifier: its last checkpoint."""
    tmp = tmp_path_factory.mktemp("trained")
    run_train(train_cfg(tmp, ["trainer.max_epochs=1", f"paths.cache_dir={tmp / 'cache'}"]))
    return tmp / "run" / "checkpoints" / "last.ckpt"


class Payload:
    """Unpickled, it calls ``open(marker, "w")`` (pickled as ``io.open``): the marker file says it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


ENTRY_POINTS = {
    "ckpt": lambda tmp, good, evil: run_attack(attack_cfg(tmp / "a", evil, PGD)),
    "emotion_ckpt": lambda tmp, good, evil: run_attack(attack_cfg(tmp / "a", good, [*PGD, f"emotion_ckpt={evil}"])),
    "init_from": lambda tmp, good, evil: run_train(train_cfg(tmp, ["trainer.max_epochs=1", f"init_from={evil}"])),
    "ckpt_path": lambda tmp, good, evil: run_train(train_cfg(tmp, ["trainer.max_epochs=2", f"ckpt_path={evil}"])),
}  # fmt: skip


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_checkpoint_whose_pickle_runs_code_is_refused_by_every_entry_point(
    tmp_path, trained, entry, monkeypatch
):
    """A real checkpoint with one more entry whose unpickling calls ``open``: every way a checkpoint comes in
    refuses it with an error naming the file and the callable, and the callable never runs, also where
    torch's own default would unpickle anything (torch < 2.6, emulated by
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which rules where a caller does not say ``weights_only``)."""
    marker = tmp_path / "payload_ran"
    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    ckpt["extra"] = Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(
        CheckpointError, match=rf"^{entry} {re.escape(str(evil))}: refused, it needs io\.open to load"
    ):
        ENTRY_POINTS[entry](tmp_path, trained, evil)
    assert not marker.exists(), "the checkpoint's pickle ran code"


def test_the_projects_checkpoints_need_no_type_beyond_torchs_safe_ones(trained):
    """weights_only=True reads every checkpoint train.py writes, with no allow-list of the project's own."""
    for path in sorted(trained.parent.glob("*.ckpt")):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == [], path


def _writes(event: str, args: tuple) -> str | None:
    """The path an audited ``open`` opens for writing, else None."""
    if event != "open" or not isinstance(args[0], (str, os.PathLike)):
        return None
    mode, flags = args[1], args[2]
    writing = any(c in mode for c in "wax+") if mode else flags & (os.O_WRONLY | os.O_RDWR)
    return os.fspath(args[0]) if writing else None


_OPENED: list[str] | None = None  # set by a test while it records the files opened for writing
_HOOKED = False  # an audit hook cannot be removed: it is added once and records only while _OPENED is set


def _record_opens(event: str, args: tuple) -> None:
    if _OPENED is not None and (path := _writes(event, args)):
        _OPENED.append(path)


def test_checkpoints_are_renamed_into_place_when_tmpdir_is_another_filesystem(tmp_path, monkeypatch):
    """$TMPDIR on another filesystem than out_dir (the usual case on clusters), modelled: a rename between it
    and anywhere else fails with EXDEV, as rename(2) does between filesystems. A checkpoint must never be
    opened for writing under its own name (a kill or a full disk mid-write would leave it truncated there):
    each one is written beside itself under a temporary name and renamed into place, and no temporary file
    is left behind."""
    global _OPENED, _HOOKED
    tmpdir = tmp_path / "other_fs"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))

    def same_fs_only(move):
        def checked(src, dst, *args, **kwargs):
            if (tmpdir in Path(src).resolve().parents) != (tmpdir in Path(dst).resolve().parents):
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), None, str(dst))
            return move(src, dst, *args, **kwargs)

        return checked

    monkeypatch.setattr(os, "rename", same_fs_only(os.rename))
    monkeypatch.setattr(os, "replace", same_fs_only(os.replace))
    if not _HOOKED:
        sys.addaudithook(_record_opens)
        _HOOKED = True
    _OPENED = []
    try:
        run_train(train_cfg(tmp_path, ["trainer.max_epochs=2"]))
        opened = list(_OPENED)
    finally:
        _OPENED = None
    ckpt_dir = tmp_path / "run" / "checkpoints"
    saved = sorted(p.name for p in ckpt_dir.iterdir())
    assert "last.ckpt" in saved and all(n.endswith(".ckpt") and not n.startswith(".") for n in saved), saved
    in_place = [p for p in opened if Path(p).parent == ckpt_dir and Path(p).name in saved]
    assert not in_place, f"checkpoints written in place under their final names: {in_place}"
    assert [p for p in opened if Path(p).parent == ckpt_dir], "no temporary file beside the checkpoints"
    assert not list(tmpdir.iterdir())


def test_a_save_that_fails_midway_leaves_the_previous_checkpoints_intact(tmp_path, monkeypatch):
    """A full disk in the middle of a save (half the checkpoint written, then ENOSPC): the previous
    last.ckpt is untouched, no truncated file sits under a checkpoint's name, and no temporary file is left."""
    run_train(train_cfg(tmp_path, ["trainer.max_epochs=1"]))
    ckpt_dir = tmp_path / "run" / "checkpoints"
    before = {p.name: p.read_bytes() for p in ckpt_dir.iterdir()}
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        half = buf.getvalue()[: len(buf.getvalue()) // 2]
        if hasattr(f, "write"):
            f.write(half)
        else:
            Path(f).write_bytes(half)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        run_train(train_cfg(tmp_path, ["trainer.max_epochs=2", "ckpt_path=last"]))
    assert {p.name: p.read_bytes() for p in ckpt_dir.iterdir()} == before


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
