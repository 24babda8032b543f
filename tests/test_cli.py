"""User errors at the entry points: one line on stderr, exit code 2, before any work."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import tiny_train_overrides

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_missing_ckpt_exits_2_with_one_line_before_the_heavy_imports(tmp_path):
    proc = run("attack.py", [f"out_dir={tmp_path / 'out'}"], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["attack.py: error: ckpt must be set, e.g. python attack.py ckpt=..."], proc.stderr
    assert not (tmp_path / "out" / "shards").exists() and not (tmp_path / "out" / "metrics.json").exists()
    # refused before torch is imported: the same entry point, watched from inside
    script = str(ROOT / "attack.py")
    probe = (
        f"import runpy, sys; sys.argv = [{script!r}, 'hydra.run.dir=.']\n"
        f"try: runpy.run_path({script!r}, run_name='__main__')\n"
        "except SystemExit as e: print(e.code, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.stdout.split() == ["2", "False"], out.stderr[-2000:]


def test_a_bad_setting_is_one_line_naming_the_key(tmp_path):
    proc = run("train.py", [*tiny_train_overrides(tmp_path), "optim.optimizer.lr=abc"], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error:"), proc.stderr[-3000:]
    assert "optim.optimizer.lr" in lines[0] and "abc" in lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_callbacks_bad_argument_is_one_line_naming_it(tmp_path):
    """A callback's own argument check, raised inside Hydra's instantiate, reaches the user as one line."""
    adv = [*tiny_train_overrides(tmp_path), "callbacks=adv_training"]
    for extra, says in (
        (["callbacks.adv_training.ratio=2"], "AdversarialTraining: invalid argument(s): ratio must be in (0, 1], got 2"),
        (["attack@callbacks.adv_training.attack=pgd", "+callbacks.adv_training.attack.max_iter=3"],
         "AdversarialTraining: attack: attack 'pgd' takes no max_iter"),
    ):  # fmt: skip
        proc = run("train.py", [*adv, *extra], tmp_path)
        assert proc.returncode == 2, proc.stderr[-3000:]
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("train.py: error: ") and says in line, line
    assert not (tmp_path / "cache").exists()  # refused before the data is generated


def test_a_missing_checkpoint_file_is_one_line_and_the_traceback_is_there_on_request(tmp_path):
    missing = tmp_path / "nothing.ckpt"
    proc = run("attack.py", [f"ckpt={missing}", f"out_dir={tmp_path / 'out'}"], tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert str(missing) in line and "no such file" in line
    proc = run(
        "attack.py",
        [f"ckpt={missing}", f"out_dir={tmp_path / 'out'}"],
        tmp_path,
        env={"LIGHTNING_SKEL_TRACEBACK": "1", "HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_demo_main_adds_its_log_filter_once_however_often_it_is_called():
    """demo.main's filter of the runs' W&B lines stays one filter over repeated calls (a notebook, a test
    session), and the lines it drops are only those."""
    import logging

    from lightning_skel import demo

    run_log = logging.getLogger("lightning_skel.run")
    before = len(run_log.filters)
    for _ in range(3):
        with pytest.raises(ValueError, match="seed must be an integer"):
            demo.main(["seed=abc"])
    assert len(run_log.filters) <= before + 1
    record = logging.LogRecord(
        "lightning_skel.run", logging.INFO, __file__, 1, "W&B run written to x", None, None
    )
    other = logging.LogRecord(
        "lightning_skel.run", logging.INFO, __file__, 1, "training finished", None, None
    )
    assert not run_log.filter(record)
    assert run_log.filter(other)
