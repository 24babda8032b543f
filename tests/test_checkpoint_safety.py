"""Checkpoint files are read without running code from them, and written so that no kill or full disk ever
leaves a truncated file under a checkpoint's name."""

import os
import re
from pathlib import Path

import pytest
import torch

from lightning_skel.run import run_attack, run_train
from lightning_skel.systems.attack_run import CheckpointError
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
