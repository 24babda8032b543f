"""The benchmarks' shared run helpers (benchmarks/common.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import common


@pytest.mark.parametrize(("trainer", "extra"), [("cpu", []), ("gpu", ["trainer=gpu"])])
def test_trainer_option_reaches_every_training_run(tmp_path, monkeypatch, trainer, extra):
    """``--trainer gpu`` appends ``trainer=gpu`` to each train.py command a benchmark starts; cpu adds
    nothing, so that CPU runs keep their commands (and folders)."""
    seen = []

    def run(cmd, check, cwd):
        seen.append(cmd)
        (tmp_path / "metrics.json").write_text(json.dumps({"epochs": 1}))

    monkeypatch.setattr(subprocess, "run", run)
    common.use_trainer(trainer)
    try:
        assert common.trained(tmp_path, ["experiment=utd_hcn"]) == {"epochs": 1}
    finally:
        common.use_trainer("cpu")
    (cmd,) = seen
    assert cmd[cmd.index("experiment=utd_hcn") + 1 :] == extra
