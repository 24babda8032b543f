"""What the benchmarks share: run ``train.py`` or an attack once per output folder, so that a killed
benchmark resumes (a finished run is read back from its ``metrics.json``; an unfinished training resumes
from its ``last.ckpt``); and write results with the command and machine that produced them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from lightning_skel.attack_run import SUBSETS
from lightning_skel.utils import machine_info, write_json

ROOT = Path(__file__).resolve().parents[1]
# appended to the overrides of every run a benchmark starts: use_trainer("gpu") puts them on a GPU
RUN_OVERRIDES: list[str] = []


def add_trainer_option(parser: argparse.ArgumentParser) -> None:
    """``--trainer cpu|gpu``: the trainer config of every train, attack and certify run (gpu: one CUDA
    device, training in 16-mixed precision); the run folders are the same either way."""
    parser.add_argument("--trainer", default="cpu", choices=("cpu", "gpu"),
                        help="trainer config of every run (gpu: trainer=gpu, one CUDA device)")  # fmt: skip


def use_trainer(name: str) -> None:
    """Start every later run with ``trainer=<name>`` (nothing for cpu, the runs' default)."""
    RUN_OVERRIDES[:] = [] if name == "cpu" else [f"trainer={name}"]


def trained(out: Path, overrides: list[str]) -> dict:
    """The metrics of ``train.py out_dir=out *overrides``, run in a fresh process unless already done."""
    done = out / "metrics.json"
    if not done.is_file():
        cmd = [sys.executable, str(ROOT / "train.py"), f"out_dir={out}", "trainer.enable_progress_bar=false",
               "ckpt_path=last", *overrides, *RUN_OVERRIDES]  # fmt: skip
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(done.read_text())


def attacked(out: Path, overrides: list[str]) -> dict:
    """The metrics of ``attack.py out_dir=out *overrides``, run in this process unless already done."""
    from hydra import compose, initialize_config_dir

    from lightning_skel.attack_run import run_attack

    done = out / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    overrides = [f"out_dir={out}", *overrides, *RUN_OVERRIDES]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("attack", overrides=overrides)
    print("+ attack.py", " ".join(overrides), flush=True)
    return run_attack(cfg)


def certified(out: Path, overrides: list[str]) -> dict:
    """The metrics of ``certify.py out_dir=out *overrides``, run in this process unless already done (an
    unfinished run resumes from the shards in ``out``)."""
    from hydra import compose, initialize_config_dir

    from lightning_skel.certify.run import run_certify

    done = out / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    overrides = [f"out_dir={out}", *overrides, *RUN_OVERRIDES]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("certify", overrides=overrides)
    print("+ certify.py", " ".join(overrides), flush=True)
    return run_certify(cfg)


def admm_kwargs(variant: str = "admm", root: Path = ROOT) -> dict:
    """ADMMAttack's arguments as attack.py builds them for ``attack=<variant>``: ``configs/attack/admm.yaml``
    under ``root``, with ``<variant>.yaml`` (e.g. ``admm_strict``, whose Hydra defaults list is admm)
    merged over it."""
    from omegaconf import OmegaConf

    folder = Path(root) / "configs" / "attack"
    cfg = OmegaConf.load(folder / "admm.yaml")
    if variant != "admm":
        over = OmegaConf.load(folder / f"{variant}.yaml")
        cfg = OmegaConf.merge(cfg, {k: v for k, v in over.items() if k != "defaults"})
    kwargs = OmegaConf.to_container(cfg)
    kwargs.pop("name")
    kwargs.pop("targeted")
    return kwargs


def ckpt_override(ckpt: str) -> str:
    """attack.py's ``ckpt=`` for a benchmark's ``PATH`` or ``PATH,PATH,...`` (checkpoints whose scores are
    added, as 2s-AGCN's joint and bone streams)."""
    paths = ckpt.split(",")
    return f"ckpt={paths[0]}" if len(paths) == 1 else f"ckpt=[{','.join(paths)}]"


def named_ckpts(parser: argparse.ArgumentParser, specs: list[str]) -> dict[str, str]:
    """``--ckpt NAME=PATH[,PATH...] ...`` as ``{NAME: "PATH[,PATH...]"}``, each checkpoint checked to exist
    before any work (``parser.error`` naming the bad one)."""
    out = {}
    for spec in specs:
        name, _, paths = spec.partition("=")
        if not name or not paths or not all(Path(p).is_file() for p in paths.split(",")):
            parser.error(f"--ckpt {spec!r}: expected NAME=PATH[,PATH...] of existing checkpoints")
        out[name] = paths
    return out


def correct_test_clips(ckpt: str, device: str = "cpu", limit: int | None = None, batch: int = 512):
    """The classifier of ``ckpt`` (a path, or ``PATH,PATH,...``: the fusion of their scores) on ``device``
    with its layout, and the first ``limit`` (all if None) of the first ``batch`` test clips it classifies
    correctly, windowed as attack.py windows them: ``(model, layout, x, y, lengths)``."""
    import torch

    from lightning_skel.checkpoints import load_classifiers
    from lightning_skel.data.datamodule import SkeletonDataModule

    dev = torch.device(device)
    model, hp = load_classifiers(ckpt.split(","))
    model.to(dev)
    dm = SkeletonDataModule(**{**hp["data_config"], "batch_size": batch})
    dm.setup()
    x, y, lengths, _ = next(iter(dm.test_dataloader()))
    x, y, lengths = x.to(dev), y.to(dev), lengths.to(dev)
    x, lengths = dm.window_batch(x, lengths, train=False)
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    return model, hp["layout"], x[keep][:limit], y[keep][:limit], lengths[keep][:limit]


def synchronize(device) -> None:
    """Wait for ``device``'s queued kernels (a no-op on CPU), so that a timer around them measures them."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn, calls: int, device=None) -> float:
    """Mean wall time of ``fn()`` over ``calls`` calls after one warm-up call; on a GPU ``device`` the
    queued kernels are waited for before and after, so that the timer measures them."""
    import time

    fn()
    synchronize(device or "cpu")
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device or "cpu")
    return (time.perf_counter() - start) / calls


def fwd_bwd_timer(model, x, batch: int, device=None):
    """A function timing the issue's cost unit: one forward+backward of ``model`` to the input on the first
    ``batch`` clips of ``x`` (mean of 10 calls, :func:`seconds_per_call`)."""
    import torch

    xx = x[:batch].clone().requires_grad_(True)
    return lambda: seconds_per_call(lambda: torch.autograd.grad(model(xx).sum(), xx), 10, device)


def timed_attack(attack, x, y, lengths, fwd_bwd, batch: int, device=None, around=None):
    """Run ``attack`` on the clips once, timed, between two timings of ``fwd_bwd`` (:func:`fwd_bwd_timer`),
    whose mean is the unit that both halves of the cost ratio see at the same machine state (on this shared
    machine the speed drifts by 10-30 % within minutes). ``around``, a context manager, wraps the attack
    call alone. Returns ``(result, record, what around yielded)``; the record holds the wall time, the
    forward+backward before, after and their mean, the batch-equivalent gradient evaluations (their sum over
    the clips / ``batch``) and ``ratio``: wall / (those evaluations x the mean)."""
    import contextlib
    import time

    before = fwd_bwd()
    with around if around is not None else contextlib.nullcontext() as seen:
        start = time.perf_counter()
        res = attack(x, y, lengths)
        synchronize(device or "cpu")
        wall = time.perf_counter() - start
    after = fwd_bwd()
    t_fb = (before + after) / 2
    evals = float(res.grad_evals.sum()) / batch
    rec = {"wall_s": wall, "fwd_bwd_s": t_fb, "fwd_bwd_before_s": before, "fwd_bwd_after_s": after,
           "batch_equivalent_grad_evals": evals, "ratio": wall / (evals * t_fb)}  # fmt: skip
    return res, rec, seen


def add_subset_argument(parser: argparse.ArgumentParser) -> None:
    """``--subset``: attack.py's ``subset`` for every attack run of a benchmark."""
    parser.add_argument("--subset", choices=SUBSETS, default="first",
                        help="the first --limit test clips, or --limit spread over the split (all classes)")  # fmt: skip


def subset_suffix(subset: str) -> str:
    """What names a non-default subset's run folders and figures apart (the first-N ones keep their names)."""
    return "" if subset == "first" else f"_{subset}"


def save_results(out: Path, payload: dict) -> None:
    """Write ``payload`` to ``out`` (atomically) with the command that produced it and the machine. A
    benchmark that adds to results already in ``out`` keeps the earlier commands too (``commands``, in the
    order they ran; ``command`` is the latest)."""
    command = " ".join(sys.argv)
    commands = []
    if out.is_file():
        before = json.loads(out.read_text())
        commands = before.get("commands") or ([before["command"]] if "command" in before else [])
    if command not in commands:
        commands.append(command)
    write_json(out, {**payload, "machine": machine_info(), "command": command, "commands": commands})
