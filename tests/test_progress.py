"""Progress reaches the log when stdout is not a terminal; the attack's progress advances clip by clip;
``prepare`` compiles the NTU parser once, before its workers start, and logs the files it has read."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_skel.attack_run import run_attack
from lightning_skel.attacks import build_attack
from lightning_skel.data.readers.ntu import NTUReader, _scan
from lightning_skel.progress import ClipProgress, format_eta
from lightning_skel.run import run_train
from tests.helpers import attack_cfg, run_script, tiny_train_overrides, train_cfg

TRAIN_LINE = re.compile(r"epoch (\d+)/2 step (\d+)/(\d+) loss \d+\.\d+ acc [01]\.\d+ elapsed \S+ ETA (\S+)")
ATTACK_LINE = re.compile(r"pgd on test \(attack\): clips (\d+)/6 \(\d+ %\) elapsed \S+ ETA \S+")


def test_runs_with_stdout_in_a_file_log_progress_lines(tmp_path):
    overrides = [*tiny_train_overrides(tmp_path), "trainer.max_epochs=2", "trainer.enable_progress_bar=true",
                 "progress_every_s=0"]  # fmt: skip
    lines = run_script("train.py", overrides, tmp_path, stdout=tmp_path / "train.out")
    found = [m for m in map(TRAIN_LINE.search, lines) if m]
    steps = int(found[0].group(3))
    # a line per step (progress_every_s=0) and one at each epoch's end, for both epochs
    assert len(found) == 2 * (steps + 1)
    assert {m.group(1) for m in found} == {"1", "2"}
    assert found[-1].group(2) == str(steps) and found[-1].group(4) == "0:00:00"
    assert "v_num" not in "\n".join(lines)

    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    args = [f"ckpt={ckpt}", f"out_dir={tmp_path / 'attack'}", "threads=1", "attack=pgd", "attack.steps=3",
            "limit=6", "batch_size=4", "progress_every_s=0"]  # fmt: skip
    lines = run_script("attack.py", args, tmp_path, stdout=tmp_path / "attack.out")
    done = [int(m.group(1)) for m in map(ATTACK_LINE.search, lines) if m]
    assert done[-1] == 6 and done == sorted(set(done)) and len(done) >= 2
    lines = run_script("attack.py", args, tmp_path, stdout=tmp_path / "again.out")
    assert any("resumed: reused 2 of 2 shards (6 clips)" in line for line in lines)


def test_admm_reports_clips_as_they_finish():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 25, 4))
    x = torch.randn(6, 3, 16, 25, 1) * 0.1
    y = model(x).argmax(1)  # every clip labelled as the model labels it: all are attacked
    y[0] = (y[0] + 1) % 4  # but this one, misclassified, finished at once
    # two rows in flight: the five attacked clips end two at a time at most
    attack = build_attack("admm", model, "ntu25", max_iter=10, binary_search_steps=2, max_rows=2)
    reports = []
    attack.on_clips_done = reports.append
    attack(x, y)
    assert sum(reports) == 6
    assert reports[0] == 1 and len(reports) >= 4 and max(reports[1:]) <= 2


@pytest.mark.parametrize(("name", "kwargs"), [("pgd", {"early_stop": True, "eps": 0.5, "steps": 30}),
                                            ("smart", {"steps": 30, "lr": 0.05})])  # fmt: skip
def test_stopping_attacks_report_clips_as_they_stop(name, kwargs):
    """PGD with early stopping and SMART stop clip by clip: each clip is reported when it stops (not all when
    the call returns), and every clip exactly once."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 25, 4))
    x = torch.randn(8, 3, 16, 25, 1) * 0.1
    y = model(x).argmax(1)
    attack = build_attack(name, model, "ntu25", **kwargs)
    reports = []
    attack.on_clips_done = reports.append
    res = attack(x, y)
    assert sum(reports) == 8
    assert len(reports) >= 2 and reports[-1] < 8  # some clips were reported before the call returned
    assert res.success.any()


def test_clip_progress_lines_count_resumed_clips_out_of_the_rate(caplog):
    caplog.set_level("INFO", logger="lightning_skel.progress")
    with ClipProgress("x", total=10, every_s=0) as p:
        p.skip(4)
        p.advance(3)
    texts = [r.getMessage() for r in caplog.records]
    assert texts[0].startswith("x: clips 7/10 (70 %)")
    assert len(texts) == 1  # the end repeats no line
    with ClipProgress("y", total=2, every_s=0) as p:
        p.skip(2)  # all reused: nothing left
    assert caplog.records[-1].getMessage().endswith("ETA 0:00:00")
    assert format_eta(3725) == "1:02:05" and format_eta(float("inf")) == "?"


def ntu_file(folder: Path, name: str = "S001C001P001R001A001") -> Path:
    """A one-frame, one-body NTU ``.skeleton`` file."""
    body = b"72057594037931101 0 1 1 1 1 0 0.1 0.2 2\n25\n" + b"0.1 0.2 3.0 1 2 3 4 5 6 7 8 2\n" * 25
    path = folder / f"{name}.skeleton"
    path.write_bytes(b"1\n1\n" + body)
    return path


def test_prepare_compiles_the_ntu_parser_once_before_the_workers(tmp_path):
    """In a fresh process, as a user runs it: the parser is compiled (or loaded from numba's cache) once, said
    without --verbose, before the files are read by the workers."""
    src = tmp_path / "src"
    src.mkdir()
    for a in (1, 2):
        ntu_file(src, f"S001C001P001R001A00{a}")
    cmd = [sys.executable, "-m", "lightning_skel.data.prepare", "ntu", str(src), str(tmp_path / "n.npz"),
           "--workers", "2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    said = [line for line in proc.stderr.splitlines() if "NTU parser" in line]
    assert len(said) == 2 and "compiling the NTU parser (once)" in said[0] and "ready in" in said[1]
    assert "wrote 2 clip(s)" in proc.stdout
    # off a terminal the file count is logged (at the end at least), not drawn as an invisible bar
    assert re.search(r"ntu: reading: files 2/2 \(100 %\) elapsed \S+ ETA 0:00:00", proc.stderr)


def test_ntu_warm_up_leaves_the_parser_compiled():
    NTUReader().warm_up()
    assert _scan.signatures


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_progress_interval_is_refused_naming_the_key(tmp_path, value):
    with pytest.raises(ValueError, match=r"train.py: .*progress_every_s must be a number of seconds >= 0"):
        run_train(train_cfg(tmp_path, [f"progress_every_s={value}"]))
    with pytest.raises(ValueError, match=r"attack.py: .*progress_every_s must be a number of seconds >= 0"):
        run_attack(attack_cfg(tmp_path / "a", tmp_path / "none.ckpt", [f"progress_every_s={value}"]))
