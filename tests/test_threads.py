import os

import pytest
import torch

from lightning_skel import utils
from lightning_skel.run import run_train
from lightning_skel.utils import resolve_threads, torch_threads
from tests.helpers import train_cfg


def test_a_number_is_taken_as_given_and_anything_else_refused():
    assert resolve_threads(3) == 3
    for bad in (0, -1, "four", 1.5, True):
        with pytest.raises(ValueError, match=r"threads must be \"auto\" or a whole number >= 1, got"):
            resolve_threads(bad)


def test_auto_takes_omp_num_threads_where_the_environment_sets_it(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads("auto", processes=2) == 3


def test_auto_leaves_the_busy_cores_and_shares_the_rest_among_processes(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(utils, "_busy_cores", lambda: 0.2)
    assert resolve_threads("auto") == 8
    assert resolve_threads("auto", processes=2) == 4
    monkeypatch.setattr(utils, "_busy_cores", lambda: 2.7)  # another job keeps 3 cores busy
    assert resolve_threads("auto") == 5
    assert resolve_threads("auto", processes=2) == 2
    monkeypatch.setattr(utils, "_busy_cores", lambda: 12.0)
    assert resolve_threads("auto", processes=4) == 1


def test_busy_cores_sees_another_process_spinning():
    import subprocess
    import sys

    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat on this system: auto falls back to every core")
    quiet = utils._busy_cores(0.3)
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = utils._busy_cores(0.5)
    finally:
        spin.kill()
    assert busy > quiet + 0.5 or busy > 0.7  # one more core kept busy by the spinning process


def test_a_run_takes_its_threads_and_gives_them_back(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    seen = []
    real = utils.torch_threads

    def spy(threads, processes=1):
        seen.append((threads, processes))
        return real(threads, processes)

    monkeypatch.setattr("lightning_skel.run.torch_threads", spy)
    metrics = run_train(train_cfg(tmp_path, ["trainer.max_epochs=1", "threads=1"]))
    assert seen == [(1, 1)]
    assert torch.get_num_threads() == before and "OMP_NUM_THREADS" not in os.environ
    import json

    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["threads"] == metrics["threads"] == 1


def test_torch_threads_restores_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "2"
