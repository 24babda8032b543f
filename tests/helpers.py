"""Shared builders for tests: tiny generated data sets and configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lightning_skel.data.io import save_npz
from lightning_skel.data.synthetic import generate

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def tiny_npz(path: Path, num_per_class: int = 4, frames: int = 24, seed: int = 0, **kw) -> Path:
    return save_npz(path, generate(num_per_class, seed=seed, frames=frames, **kw))


def ntu_skeleton_text(frames: int = 3, bodies: int = 1, seed: int = 0) -> bytes:
    """A small NTU ``.skeleton`` file in the exact Kinect layout (CRLF lines, 10 body fields, 25 joints of 12
    fields, coordinates with 6 decimals), so that reader tests run without the real recordings."""
    rng = np.random.default_rng(seed)
    lines = [str(frames)]
    for _ in range(frames):
        lines += [str(bodies)]
        for b in range(bodies):
            lines += [f"{72057594037931101 + b} 0 1 1 1 1 0 0.1 -0.2 2", "25"]
            for x, y, z in rng.uniform(-1.0, 1.0, (25, 3)):
                lines.append(f"{x:.6f} {y:.6f} {z + 3:.6f} 250.5 200.25 900.1 500.2 0.1 0.2 0.3 0.9 2")
    return ("\r\n".join(lines) + "\r\n").encode()


def tiny_train_overrides(tmp_path: Path) -> list[str]:
    """train.py overrides for tiny generated data in ``tmp_path`` and a tiny compact HCN (also for subprocess
    runs)."""
    return [
        f"out_dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "threads=1",  # not auto: runs a test compares must not take their thread counts from the load
        "data.synthetic.num_per_class=4",
        "data.synthetic.frames=24",
        "data.window=16",
        "data.batch_size=8",
        "data.val_fraction=0.25",
        "model.kwargs.variant=compact",
        "model.kwargs.width=8",
        "model.kwargs.feature_dim=16",
        "trainer.enable_progress_bar=false",
    ]


# overrides of tiny_train_overrides for a model that learns the generated data (attack tests need correct clips)
LEARNT = ["trainer.max_epochs=15", "optim.optimizer.lr=0.003", "data.synthetic.num_per_class=8",
          "model.kwargs.width=16", "model.kwargs.feature_dim=32"]  # fmt: skip


def run_script(
    script: str,
    args: list[str],
    cwd: Path,
    fails: bool = False,
    env: dict[str, str] | None = None,
    stdout: Path | None = None,
) -> list[str]:
    """Run ``python <script>`` (train.py, attack.py) with ``args`` in a subprocess, as a user runs it (under
    DDP, or a Hydra multirun), with ``env`` added to the environment; fail with its stderr unless it exits 0
    (``fails``: unless it exits non-zero); return its stdout's lines (``fails``: its stderr's). ``stdout``:
    a file its stdout is redirected to (as in ``python train.py > FILE``), read back for the lines."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    with open(stdout, "w") if stdout else open(os.devnull) as sink:
        proc = subprocess.run(
            [sys.executable, str(root / script), *args],
            cwd=cwd,
            stdout=sink if stdout else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            env={**os.environ, **(env or {})},
        )
    assert (proc.returncode != 0) == fails, proc.stderr[-3000:]
    out = Path(stdout).read_text() if stdout else proc.stdout
    return (proc.stderr if fails else out).strip().splitlines()


def run_train_script(tmp_path: Path, overrides: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python train.py`` with the tiny-run overrides plus ``overrides`` in a subprocess (as a user runs
    it, e.g. under DDP), with ``env`` added to the environment; return the metrics it prints last."""
    import json

    args = [*tiny_train_overrides(tmp_path), *overrides]
    return json.loads(run_script("train.py", args, tmp_path, env=env)[-1])


def train_cfg(tmp_path: Path, overrides: list[str] = ()) -> DictConfig:
    """The train config on tiny generated data in ``tmp_path`` with a tiny compact HCN."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=[*tiny_train_overrides(tmp_path), *overrides])


def attack_cfg(out_dir: Path, ckpt: Path, overrides: list[str] = ()) -> DictConfig:
    """The attack config for ``ckpt`` writing into ``out_dir``."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("attack", overrides=[f"ckpt={ckpt}", f"out_dir={out_dir}", "threads=1", *overrides])
