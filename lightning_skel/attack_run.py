"""An attack run over a data split, as attack.py runs it: :func:`run_attack` checks the config
(configs/attack.yaml), loads the checkpoints and the data, and hands the clips to :class:`AttackRun`, which
attacks them batch by batch, writes shards and merges them; then the outputs and the report are written.

Results are written per batch under ``out_dir/shards/`` as they finish (atomically), so a run that is killed
and started again with the same command continues where it stopped and ends with the same files as an
uninterrupted run. Each shard records the run it belongs to (the fingerprint of the run's spec, which holds
the checkpoints' content hashes) and its samples; both are checked before a rerun attacks and again on
merge. Under several processes (Lightning Fabric: ``trainer.strategy=ddp``), batch ``b`` belongs to rank
``b % world_size``: every sample is attacked exactly once, and rank 0 merges the shards.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lightning_skel.attacks import ATTACKS
from lightning_skel.attacks.metrics import attack_metrics, check_budgets, per_sample_metrics
from lightning_skel.attacks.spec import ATTACK_KWARG_NUMBERS, AttackSpec
from lightning_skel.checkpoints import CheckpointError, load_classifiers, load_emotion
from lightning_skel.data.datamodule import SkeletonDataModule, SkeletonDataset
from lightning_skel.progress import ClipProgress, every_s
from lightning_skel.report import nothing_attacked, write_outputs, write_report
from lightning_skel.run import (
    build_loggers,
    check_config_numbers,
    finish_loggers,
    is_distributed,
    processes_per_node,
)
from lightning_skel.skeleton.features import split_score
from lightning_skel.sweep import job_out_dir
from lightning_skel.utils import (
    check_params,
    file_sha256,
    log_once,
    torch_threads,
    versions,
    write_json,
    write_npz,
)

log = logging.getLogger(__name__)

# the numbers of attack.yaml, as patterns of lightning_skel.utils.check_number_types (see run.TRAIN_NUMBERS)
ATTACK_NUMBERS = {
    "seed": "int", "batch_size": "int", "limit": "int?", "fusion_weights.*": "float",
    **{f"attack.{k}": v for k, v in ATTACK_KWARG_NUMBERS.items()},
}  # fmt: skip


def run_attack(cfg: DictConfig) -> dict[str, Any]:
    """Attack a trained classifier on a data split as ``cfg`` says: what ``python attack.py`` runs.

    Every input is checked before any attack work starts (the config's numbers, the attack spec, the
    checkpoints, the data against the checkpoint). The outputs of docs/ARCHITECTURE.md (adversarial.npz,
    per_sample.csv, metrics.json, report.md, figures/, shards/) go to ``out_dir``; a rerun with the same
    config resumes from the shards. Under ``trainer.strategy=ddp`` (Lightning Fabric) the batches are split
    across ranks. Torch's threads are ``cfg.threads`` for the run (:func:`utils.torch_threads`).

    Args:
        cfg: configs/attack.yaml composed (``ckpt`` set): ``attack`` an entry of configs/attack (an
            :class:`~lightning_skel.attacks.spec.AttackSpec`), ``data.split``, ``limit`` and ``subset``
            (which clips), ``batch_size`` (clips per attack call and shard), ``budgets`` (sizes in mm for
            robust accuracy), ``emotion_ckpt``, ``seed``, ``out_dir``.

    Returns:
        The aggregate metrics (:func:`~lightning_skel.attacks.metrics.attack_metrics`, plus
        ``wall_time_s`` and ``threads``); ``{}`` on ranks other than 0.

    From Python, compose the config as attack.py does: ``with initialize_config_dir(config_dir=CONFIGS,
    version_base="1.3"): cfg = compose("attack", ["ckpt=runs/demo/checkpoints/last.ckpt", "attack=pgd",
    "limit=16"])``, then ``run_attack(cfg)["success_rate"]``.

    Example:
        >>> cfg = OmegaConf.create({"ckpt": "last.ckpt", "batch_size": "16", "trainer": {}})  # a string
        >>> run_attack(cfg)  # refused before any checkpoint or data is read
        Traceback (most recent call last):
        ValueError: attack config: invalid setting(s): batch_size must be an integer, got '16'
    """
    with torch_threads(cfg.get("threads", "auto"), processes_per_node(cfg)) as n:
        log_once(log, "torch threads: %d (threads=%s)", n, cfg.get("threads", "auto"))
        return _run_attack(cfg)


def _run_attack(cfg: DictConfig) -> dict[str, Any]:
    check_config_numbers(cfg, ATTACK_NUMBERS, "attack config")
    job_out_dir(cfg, is_distributed(cfg))
    return launch(cfg, _attack_main)


def launch(cfg: DictConfig, main: Callable[[Any, DictConfig], dict[str, Any] | None]) -> dict[str, Any]:
    """Run ``main(fabric, cfg)`` in every process of a Lightning Fabric configured by ``cfg.trainer`` when the
    run is distributed (:func:`~lightning_skel.run.is_distributed`: ``trainer.strategy=ddp``, several devices
    or nodes), else ``main(None, cfg)`` in this process: the launch shared by the runs on a checkpoint (attack
    and certification runs).

    Args:
        cfg: the run's config; ``trainer.accelerator``, ``devices``, ``num_nodes`` and ``strategy`` (default
            ``auto``, 1, 1, ``ddp``) configure the Fabric.
        main: the run's body, ``main(fabric_or_None, cfg) -> metrics``.

    Returns:
        What ``main`` returns in this process, ``{}`` where it returns nothing (ranks other than 0).

    Example:
        >>> def main(fabric, cfg):  # fabric is None in a single process
        ...     return {"rank": 0 if fabric is None else fabric.global_rank}
        >>> launch(OmegaConf.create({"trainer": {"devices": 1}}), main)  # {} on the other ranks of a DDP run
        {'rank': 0}
    """
    if is_distributed(cfg):
        from lightning_fabric import Fabric

        t = cfg.trainer
        fabric = Fabric(
            accelerator=t.get("accelerator", "auto"),
            devices=t.get("devices", 1),
            num_nodes=t.get("num_nodes", 1),
            strategy=t.get("strategy", "ddp"),
        )
        return fabric.launch(main, cfg) or {}
    return main(None, cfg) or {}


def attack_checkpoints(cfg: DictConfig) -> list[str]:
    """attack.yaml's ``ckpt`` as a list of paths: one checkpoint, or several whose scores are added
    (``ckpt=[a,b]``); a ``ValueError`` for anything else.

    Example:
        >>> attack_checkpoints(OmegaConf.create({"ckpt": ["joint.ckpt", "bone.ckpt"]}))
        ['joint.ckpt', 'bone.ckpt']
        >>> attack_checkpoints(OmegaConf.create({"ckpt": []}))
        Traceback (most recent call last):
        ValueError: ckpt must be a checkpoint path or a list of them, got []
    """
    ckpt = cfg.ckpt
    paths = [ckpt] if isinstance(ckpt, (str, Path)) else list(OmegaConf.to_container(ckpt, resolve=True))
    if not paths or not all(isinstance(p, (str, Path)) and str(p) for p in paths):
        raise ValueError(f"ckpt must be a checkpoint path or a list of them, got {ckpt!r}")
    return [str(p) for p in paths]


def _attack_data(cfg: DictConfig, hp: dict[str, Any]) -> tuple[SkeletonDataModule, str]:
    """The data module to attack (the checkpoint's own data unless ``data.path`` names an npz) and the split."""
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    split = data_cfg.pop("split")
    path = data_cfg.pop("path", None)
    if path:
        dm_cfg = {"name": Path(path).stem, "path": path, "window": hp.get("window", 64),
                  "score_channel": bool(hp.get("score_channel", False))}  # fmt: skip
        # the checkpoint's window, reached as its own data reached it (an imported model pads to 300 frames)
        temporal = (hp.get("data_config") or {}).get("temporal")
        if temporal is not None:
            dm_cfg["temporal"] = temporal
    elif hp.get("data_config"):
        dm_cfg = dict(hp["data_config"])
    else:
        raise ValueError(
            f"ckpt {attack_checkpoints(cfg)[0]}: the checkpoint records no data config; pass data.path=FILE.npz"
        )
    dm_cfg.update({k: v for k, v in data_cfg.items() if v is not None})
    dm_cfg.update(batch_size=int(cfg.batch_size), num_workers=0)
    return SkeletonDataModule(**dm_cfg), split


def checked_data(
    cfg: DictConfig, hp: dict[str, Any], shown: str, fabric: Any = None
) -> tuple[SkeletonDataModule, str]:
    """The data module of a run on a checkpoint (the checkpoint's own data unless ``data.path`` names an npz),
    prepared (by rank 0 under ``fabric``) and set up, and the split; refused unless it fits the checkpoint:
    its layout, class count and names, and its score channel. Attack and certification runs share it.

    Args:
        cfg: the run's config (``data``, ``batch_size``).
        hp: the checkpoint's hyper-parameters (:func:`~lightning_skel.checkpoints.load_classifiers`).
        shown: the checkpoint(s) as named in errors.
        fabric: the run's Lightning Fabric, or None (default) for a single process.

    Returns:
        ``(dm, split)``: the set-up data module and the split to run on.

    Raises:
        ValueError: the data's layout, classes or score channel differ from the checkpoint's.

    Example:
        >>> synthetic = {"num_per_class": 1, "seed": 0, "frames": 16, "layout": "kinect20"}
        >>> data_config = {"name": "synthetic", "synthetic": synthetic}  # as a checkpoint records it
        >>> hp = {"layout": "kinect20", "num_classes": 12, "data_config": data_config}
        >>> cfg = OmegaConf.create({"data": {"split": "train"}, "batch_size": 4})
        >>> dm, split = checked_data(cfg, hp, "sgn.ckpt")  # the checkpoint's own data
        >>> split, dm.layout, len(dm.datasets[split])
        ('train', 'kinect20', 12)
        >>> checked_data(cfg, {**hp, "num_classes": 60}, "sgn.ckpt")
        Traceback (most recent call last):
        ValueError: data has 12 classes but the checkpoint sgn.ckpt has 60
    """
    layout = hp["layout"]
    dm, split = _attack_data(cfg, hp)
    if fabric is None or fabric.global_rank == 0:
        dm.prepare_data()
    if fabric is not None:
        fabric.barrier()
    dm.setup()
    if dm.layout != layout:
        raise ValueError(
            f"data layout {dm.layout!r} does not match the checkpoint's layout {layout!r} ({shown})"
        )
    if dm.num_classes != hp["num_classes"]:
        raise ValueError(
            f"data has {dm.num_classes} classes but the checkpoint {shown} has {hp['num_classes']}"
        )
    if dm.score_channel != bool(hp.get("score_channel", False)):
        raise ValueError(
            f"data.score_channel is {dm.score_channel} but the checkpoint {shown} was trained with "
            f"score_channel={bool(hp.get('score_channel', False))}: its classifier takes "
            f"{'coordinates and the keypoint score' if hp.get('score_channel') else 'coordinates only'}"
        )
    names = hp.get("class_names")
    if names is not None and list(dm.class_names) != list(names):
        i = next(i for i, (a, b) in enumerate(zip(dm.class_names, names, strict=True)) if a != b)
        source = f"data.path {cfg.data.path}" if cfg.data.get("path") else f"data {dm.name!r}"
        raise ValueError(
            f"{source}: class {i} is {dm.class_names[i]!r} there and {names[i]!r} in the checkpoint {shown}: "
            "the classifier's labels would be read as other classes"
        )
    if cfg.data.get("path") and split in dm.carved:
        log.warning("data.path %s has no %r rows: its %s set is carved out (%s of each class's clips); "
                    "data.split=all takes every clip", cfg.data.path, split, split, dm.carved[split])  # fmt: skip
    return dm, split


def windowed_clips(
    dm: SkeletonDataModule, ds: SkeletonDataset, rows: np.ndarray
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The clips at positions ``rows`` of the dataset ``ds`` of ``dm`` as the classifier saw them in
    evaluation (windowed, no augmentation).

    Args:
        dm: the set-up data module, whose window applies.
        ds: one of its datasets (``dm.datasets[split]``).
        rows: ``(N,)`` positions in ``ds`` (:func:`attack_rows`).

    Returns:
        ``x (N, C, T, V, M)`` in metres with ``T`` the window, and ``y``, ``lengths``, ``index`` ``(N,)``
        int64 (labels, valid frames, positions in the split).

    Example:
        >>> synthetic = {"num_per_class": 1, "seed": 0, "frames": 16, "layout": "kinect20"}
        >>> dm = SkeletonDataModule("synthetic", synthetic=synthetic, window=8)
        >>> dm.prepare_data()
        >>> dm.setup()
        >>> ds = dm.datasets["train"]
        >>> x, y, lengths, index = windowed_clips(dm, ds, attack_rows(len(ds), 4))
        >>> x.shape, index  # 16 frames resampled to the window of 8
        (torch.Size([4, 3, 8, 20, 2]), tensor([ 0,  4,  7, 11]))
    """
    items = [ds[int(i)] for i in rows]
    x = torch.stack([it[0] for it in items]) if items else torch.zeros(0)
    y = torch.tensor([it[1] for it in items], dtype=torch.long)
    lengths = torch.tensor([it[2] for it in items], dtype=torch.long)
    index = torch.tensor([it[3] for it in items], dtype=torch.long)
    x, lengths = dm.window_batch(x, lengths, train=False)
    return x, y, lengths, index


def _attack_main(fabric, cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    budgets = OmegaConf.to_container(cfg.budgets, resolve=True) if cfg.get("budgets") else None
    check_budgets(budgets)
    progress_every_s = every_s(cfg, "attack.py")
    check_batch_size(int(cfg.batch_size))  # before any data is read; AttackRun checks it again
    subset, limit = cfg.get("subset", "spread"), cfg.get("limit")
    check_rows(limit, subset)
    attack = AttackSpec.parse(OmegaConf.to_container(cfg.attack, resolve=True), "attack", "attack.py")
    name, targeted = attack.name, attack.targeted
    rank = fabric.global_rank if fabric is not None else 0
    device = fabric.device if fabric is not None else torch_device(cfg)
    out_dir = Path(cfg.out_dir)
    # -- every input checked before any work --
    ckpts, fusion, classifier, hp, shown = run_classifier(cfg)
    for path, model in zip(ckpts, hp["model"].split("+"), strict=True):
        if model == "emotion":
            raise CheckpointError(
                f"ckpt {path}: an emotion recognizer (model 'emotion'), not an action classifier; pass it as "
                "emotion_ckpt= for the emotion term, and an action classifier as ckpt"
            )
    layout = hp["layout"]
    transfer = _transfer_targets(cfg, layout, int(hp["num_classes"]), bool(hp.get("score_channel", False)))
    dm, split = checked_data(cfg, hp, shown, fabric)
    emotion = load_emotion(cfg.emotion_ckpt, layout) if cfg.get("emotion_ckpt") else None
    ds = dm.split_set(split)
    rows = attack_rows(len(ds), limit, subset)
    spec = {
        # one checkpoint is recorded as a path, several as a list with their fusion weights
        **checkpoint_spec(ckpts, fusion),
        "emotion_ckpt": str(Path(cfg.emotion_ckpt).resolve()) if cfg.get("emotion_ckpt") else None,
        "emotion_ckpt_sha256": file_sha256(cfg.emotion_ckpt) if cfg.get("emotion_ckpt") else None,
        "attack": name,
        # compile=false (ADMM's default, the eager steps) is left out: it is the run without the option
        "attack_kwargs": {k: v for k, v in attack.kwargs.items() if not (k == "compile" and v is False)},
        "targeted": targeted,
        "split": split,
        "num_samples": int(rows.size),
        # which clips: recorded only when a limit picks other than the first ones (the whole split is the
        # same run whatever the subset rule)
        **({"subset": subset} if subset != "first" and rows.size < len(ds) else {}),
        "batch_size": int(cfg.batch_size),
        "seed": int(cfg.seed),
        "data": dm.describe(),
    }
    run = AttackRun(
        classifier=classifier, layout=layout, attack=attack, out_dir=out_dir, spec=spec,
        batch_size=int(cfg.batch_size), seed=int(cfg.seed), emotion=emotion,
        num_classes=int(hp["num_classes"]),
    )  # fmt: skip
    run.build()  # bad attack settings fail here, before any work
    # -- the clips, windowed as the classifier saw them in evaluation --
    x, y, lengths, index = windowed_clips(dm, ds, rows)
    # the run's folder names it: a sequence of runs in one log (the demo, a sweep) stays apart
    visible = bool(cfg.trainer.get("enable_progress_bar", True))
    run.run_all(x, y, lengths, index, fabric, device, f"{name} on {split} ({out_dir.name})", progress_every_s,
                visible)  # fmt: skip
    if rank != 0:
        return {}
    merged = run.merge(index)
    per_sample = {k[2:]: torch.as_tensor(v) for k, v in merged.items() if k.startswith("m_")}
    t = torch.as_tensor
    target = t(merged["target"]) if targeted else None
    metrics = attack_metrics(
        t(merged["x"]), t(merged["x_adv"]), t(merged["lengths"]), layout, t(merged["y"]), t(merged["pred_clean"]),
        t(merged["pred_adv"]), target=target, grad_evals=t(merged["grad_evals"]),
        forward_evals=t(merged["forward_evals"]), per_sample=per_sample, budgets=budgets,
    )  # fmt: skip
    won = merged["success"] & merged["attacked"]
    for key in (k for k in sorted(merged) if k.startswith("e_") and merged[k].dtype.kind == "U"):
        names, counts = np.unique(merged[key][won], return_counts=True)  # e.g. the AutoAttack part that won
        metrics.update({f"{key[2:]}/{n}": int(c) for n, c in zip(names, counts, strict=True) if n})
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    metrics["threads"] = torch.get_num_threads()
    if not metrics["num_attacked"]:
        log.warning("nothing was attacked: %s", nothing_attacked(metrics))
    extra = {"config": OmegaConf.to_container(cfg, resolve=True), "versions": versions(), "spec": spec}
    write_outputs(out_dir, merged, metrics, extra, ds.data)
    if transfer:  # each target labels the adversarial clips: its columns and transfer/<name>/... metrics
        from lightning_skel.transfer import add_to_run

        metrics.update(add_to_run(out_dir, transfer, int(cfg.batch_size), str(device)))
    figures = write_report(
        out_dir, merged, metrics, layout, dm.class_names, f"{name} attack on {hp['model']} ({split})"
    )
    _log_attack(cfg, out_dir, metrics, figures)
    log.info("attack outputs written to %s", out_dir)
    return metrics


def _transfer_targets(cfg: DictConfig, layout: str, num_classes: int, score: bool) -> dict[str, Any]:
    """attack.yaml's ``transfer``: the target checkpoints (``[PATH, ...]``, ``[NAME=PATH, ...]`` or
    ``{NAME: PATH}``), each loaded and checked against the attacked classifier's layout and classes before
    any work (:func:`lightning_skel.transfer.load_targets`)."""
    from lightning_skel.transfer import load_targets, target_names

    given = cfg.get("transfer")
    if not given:
        return {}
    given = OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else given
    if isinstance(given, str):
        given = [given]
    names = target_names(given)
    for name, path in names.items():
        for p in [path] if isinstance(path, str) else path:
            if not Path(p).is_file():
                raise ValueError(f"transfer.{name}: no checkpoint at {p}")
    load_targets(names, layout, num_classes, score)
    return names


def run_classifier(cfg: DictConfig) -> tuple[list[str], list[float] | None, nn.Module, dict[str, Any], str]:
    """The classifier a run on checkpoints works on: ``cfg.ckpt`` (:func:`attack_checkpoints`), several fused
    with ``cfg.fusion_weights`` (absent or null: 1 each) by :func:`~lightning_skel.checkpoints.load_classifiers`.
    Attack and certification runs share it.

    Returns:
        ``(ckpts, fusion, classifier, hp, shown)``: the paths, the weights (floats, or None), the classifier,
        its hyper-parameters, and the paths as messages name them (``"a + b"``).

    Example:
        >>> from lightning_skel.systems.classification import ClassificationSystem
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", window=16)  # an untrained SGN
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> cfg = OmegaConf.create({"ckpt": ["sgn.ckpt", "sgn.ckpt"], "fusion_weights": [1, 0.5]})
        >>> ckpts, fusion, model, hp, shown = run_classifier(cfg)
        >>> shown, fusion, hp["model"]
        ('sgn.ckpt + sgn.ckpt', [1.0, 0.5], 'sgn+sgn')
    """
    ckpts = attack_checkpoints(cfg)
    fusion = cfg.get("fusion_weights")
    fusion = None if fusion is None else [float(w) for w in fusion]
    classifier, hp = load_classifiers(ckpts, fusion)
    return ckpts, fusion, classifier, hp, " + ".join(ckpts)


def checkpoint_spec(ckpts: list[str], fusion: list[float] | None) -> dict[str, Any]:
    """What identifies the model of a run on a checkpoint in the run's spec: its checkpoint files (path, and
    the sha256 of the bytes, so that other weights saved under the same path are another run) and, for a
    fusion of several, each one's weight.

    Args:
        ckpts: the checkpoint paths (:func:`attack_checkpoints`).
        fusion: the fusion weights of several, or None (default 1 each).

    Returns:
        ``{"ckpt": path, "ckpt_sha256": hex}`` for one checkpoint; lists of both and ``fusion_weights`` for
        several.

    Example:
        >>> _ = Path("joint.ckpt").write_bytes(b"weights"), Path("bone.ckpt").write_bytes(b"others")
        >>> spec = checkpoint_spec(["joint.ckpt", "bone.ckpt"], None)
        >>> sorted(spec), spec["fusion_weights"], len(spec["ckpt_sha256"][0])
        (['ckpt', 'ckpt_sha256', 'fusion_weights'], [1.0, 1.0], 64)
    """
    files = [Path(c) for c in ckpts]
    if len(files) == 1:
        return {"ckpt": str(files[0].resolve()), "ckpt_sha256": file_sha256(files[0])}
    return {
        "ckpt": [str(f.resolve()) for f in files],
        "ckpt_sha256": [file_sha256(f) for f in files],
        "fusion_weights": fusion or [1.0] * len(files),
    }


SUBSETS = ("spread", "first")  # attack.yaml's `subset`: which `limit` clips of a split an attack run takes


def check_rows(limit: int | None, subset: str) -> None:
    """Check attack.yaml's ``limit`` (a whole number of clips >= 1, or null: all) and ``subset`` (one of
    :data:`SUBSETS`); one ``ValueError`` names every bad one.

    Example:
        >>> check_rows(64, "spread")  # passes
        >>> check_rows(2.7, "first")
        Traceback (most recent call last):
        ValueError: attack.py: invalid setting(s): limit must be an integer >= 1 or null, got 2.7
    """
    check_params("attack.py", {
        "limit": (limit, limit is None or (type(limit) is int and limit >= 1), "an integer >= 1 or null"),
        "subset": (subset, subset in SUBSETS, f"one of {SUBSETS}"),
    }, "setting(s)")  # fmt: skip


def attack_rows(n: int, limit: int | None, subset: str = "spread") -> np.ndarray:
    """The positions in a split of ``n`` clips that an attack run takes.

    Args:
        n: clips in the split.
        limit: how many to take (null: all of them; at most ``n``).
        subset: ``"spread"`` (default): evenly over the split (datasets are stored ordered by class, so the
            first clips cover few classes); ``"first"``: the first ones.

    Returns:
        ``(min(limit, n),)`` int64 positions, increasing.

    Example:
        >>> attack_rows(10, 4), attack_rows(10, 4, "first"), attack_rows(3, None)
        (array([0, 3, 6, 9]), array([0, 1, 2, 3]), array([0, 1, 2]))
    """
    check_rows(limit, subset)
    if limit is None or limit >= n:
        return np.arange(n)
    if subset == "first":
        return np.arange(limit)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def torch_device(cfg: DictConfig) -> torch.device:
    """The device a single-process attack run uses: CUDA for ``trainer.accelerator`` ``gpu``/``cuda``, or
    ``auto`` with a GPU present; else the CPU.

    Example:
        >>> torch_device(OmegaConf.create({"trainer": {"accelerator": "cpu"}}))
        device(type='cpu')
    """
    acc = cfg.trainer.get("accelerator", "cpu")
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _log_attack(cfg: DictConfig, out_dir: Path, metrics: dict[str, Any], figures: dict[str, Path]) -> None:
    """Metrics and figures to W&B when it is configured (through Lightning's logger, offline by default)."""
    loggers = build_loggers(cfg, out_dir)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        lg.log_metrics({f"attack/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        if hasattr(lg, "log_image"):
            for key, path in figures.items():
                if path.suffix == ".png":
                    lg.log_image(f"attack/{key}", images=[str(path)])
        lg.save()
    finish_loggers(loggers)


def fingerprint(spec: dict[str, Any]) -> str:
    """A run's identity: the first 16 hex digits of the sha256 of ``spec`` as sorted JSON (what JSON cannot
    write, as its ``str``). Shards and the manifest record it; another spec is another run.

    Example:
        >>> fingerprint({"attack": "pgd", "seed": 0}) == fingerprint({"seed": 0, "attack": "pgd"})
        True
        >>> fingerprint({"attack": "pgd", "seed": 1}) == fingerprint({"attack": "pgd", "seed": 0})
        False
    """
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def targets_for(y: Tensor, index: Tensor, num_classes: int, seed: int) -> Tensor:
    """Target labels of a targeted run, one per clip, each other than its true label and fixed by the clip's
    index in its split and the seed (so independent of batching and ranks).

    Args:
        y: ``(N,)`` true labels in ``[0, num_classes)``.
        index: ``(N,)`` the clips' positions in their split.
        num_classes: classes of the classifier (>= 2).
        seed: the run's seed.

    Returns:
        ``(N,)`` labels, ``!= y`` everywhere.

    Example:
        >>> y = torch.tensor([0, 1, 11])
        >>> t = targets_for(y, index=torch.tensor([5, 6, 7]), num_classes=12, seed=0)
        >>> t, bool((t != y).all())
        (tensor([7, 7, 4]), True)
    """
    offset = ((index * 7919 + seed * 104729) % (num_classes - 1)) + 1
    return (y + offset) % num_classes


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size (clips per attack call and per shard) under 1 with a ``ValueError`` naming it.

    Example:
        >>> check_batch_size(128)  # passes
        >>> check_batch_size(0)
        Traceback (most recent call last):
        ValueError: attack run: invalid argument(s): batch_size must be >= 1 (clips per attack call ...), got 0
    """
    check_params(
        "attack run",
        {"batch_size": (batch_size, batch_size >= 1, ">= 1 (clips per attack call and per shard)")},
    )


@dataclass
class AttackRun:
    """Attacks clips (already windowed) batch by batch and writes one shard per batch under
    ``out_dir/shards``, resumable: a batch whose shard exists is not attacked again (see the module).

    Args:
        classifier: the model attacked, ``(N, C, T, V, M) -> (N, K)`` logits.
        layout: the clips' layout name.
        attack: the attack and its settings (:class:`~lightning_skel.attacks.spec.AttackSpec`); its seed, if
            its class takes one, is ``seed + batch``.
        out_dir: the run's folder; shards go to ``out_dir/shards``.
        spec: what the run is (checkpoints and their hashes, attack, clips, data); its :func:`fingerprint`
            guards ``out_dir`` against another run's shards.
        batch_size: clips per attack call and per shard (default 32, >= 1).
        seed: the run's seed (default 0): per-batch attack seeds and the targets of a targeted run.
        emotion: the emotion recognizer (:func:`~lightning_skel.checkpoints.load_emotion`) for the emotion
            term and metrics, or None (default).
        num_classes: the classifier's classes, for the targets of a targeted run (default 0: untargeted).

    Shards hold, per clip, the clean and adversarial coordinates ``(C, T, V, M)`` in metres, labels,
    predictions, success, the classifier passes spent (``grad_evals``, ``forward_evals``) and the per-sample
    metrics; :meth:`merge` returns them in sample order.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)  # windowed clips
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)
    >>> lengths, index = torch.full((4,), 8), torch.arange(4)
    >>> attack = AttackSpec.parse({"name": "pgd", "eps": 0.02, "steps": 3})
    >>> run = AttackRun(model, "ntu25", attack, Path("runs/pgd"), spec={"run": "demo"}, batch_size=2)
    >>> run.run(x, y, lengths, index)  # the batches it attacked; a rerun skips them
    [0, 1]
    >>> sorted(p.name for p in run.shard_dir.glob("*.npz"))
    ['batch_000000.npz', 'batch_000001.npz']
    >>> arrays = run.merge(index)
    >>> arrays["x_adv"].shape, arrays["success"].shape
    ((4, 3, 8, 25, 1), (4,))
    """

    classifier: nn.Module
    layout: str
    attack: AttackSpec
    out_dir: Path
    spec: dict[str, Any]  # what the run is: a fingerprint guards out_dir against another run's shards
    batch_size: int = 32
    seed: int = 0
    emotion: nn.Module | None = None
    num_classes: int = 0
    kind: ClassVar[str] = "attack"  # what the run is, as its errors name it

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)

    @property
    def shard_dir(self) -> Path:
        """``out_dir/shards``: the batches' shards and the run's manifest."""
        return self.out_dir / "shards"

    @property
    def key(self) -> str:
        """The run's fingerprint, recorded in the manifest and in every shard."""
        return fingerprint(self.spec)

    def check_out_dir(self, index: Tensor) -> None:
        """Refuse an out_dir that holds another run's shards, and any shard that is unreadable, of another run
        or not of the samples ``index`` puts in its batch; then record this run's fingerprint. Without a
        manifest the shards' own records decide."""
        manifest = self.shard_dir / "manifest.json"
        if manifest.is_file():
            try:
                theirs = json.loads(manifest.read_text())
            except (ValueError, OSError) as e:
                raise ValueError(
                    f"attack manifest {manifest} is unreadable ({type(e).__name__}: {e}); delete it (the shards "
                    "record their run themselves)"
                ) from e
            if theirs.get("fingerprint") != self.key:
                spec = theirs.get("spec") or {}
                differs = sorted(k for k in {*spec, *self.spec} if spec.get(k) != self.spec.get(k))
                raise ValueError(
                    f"out_dir {self.out_dir} holds shards of another {self.kind} run (fingerprint {theirs.get('fingerprint')}, "
                    f"this run {self.key}; the run differs in {', '.join(differs) or 'its fingerprint'}); choose "
                    f"another out_dir or delete {self.shard_dir}"
                )
        for b in range(self.num_batches(len(index))):
            if self.shard_path(b).is_file():
                self.read_shard(b, index, ("run", "index"))
        if not manifest.is_file():
            write_json(manifest, {"fingerprint": self.key, "spec": self.spec})

    def shard_path(self, b: int) -> Path:
        """Batch ``b``'s shard file, ``shards/batch_<b, 6 digits>.npz``."""
        return self.shard_dir / f"batch_{b:06d}.npz"

    def read_shard(self, b: int, index: Tensor, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Shard ``b``'s arrays (``keys``, or all), checked to be this run's and to hold the samples ``index``
        puts in batch ``b``; a :class:`ValueError` naming the shard file otherwise."""
        path = self.shard_path(b)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in (keys or f.files) if k in f.files}
        except Exception as e:  # numpy and zipfile raise many types for a damaged file; report them as one
            raise ValueError(
                f"{self.kind} shard {path} is unreadable ({type(e).__name__}: {e}); delete it to recompute its batch"
            ) from e
        run = str(arrays["run"]) if "run" in arrays else None
        if run != self.key:
            raise ValueError(
                f"{self.kind} shard {path} belongs to another {self.kind} run (run {run}, this run {self.key}); choose "
                f"another out_dir or delete {self.shard_dir}"
            )
        want = index[b * self.batch_size : (b + 1) * self.batch_size].cpu().numpy()
        got = arrays.get("index")
        if got is None or not np.array_equal(got, want):
            raise ValueError(
                f"{self.kind} shard {path} holds samples {_head(got)} where batch {b} of this run has {_head(want)}; "
                "delete it to recompute its batch"
            )
        return arrays

    def num_batches(self, n: int) -> int:
        """Batches of ``batch_size`` clips that ``n`` clips make (the last may be short)."""
        return (n + self.batch_size - 1) // self.batch_size

    def batches(self, n: int, rank: int = 0, world: int = 1) -> dict[int, slice]:
        """Rank ``rank``'s batches of ``n`` clips among ``world`` ranks (batch ``b`` is rank ``b % world``'s):
        batch id to its rows."""
        bs = self.batch_size
        return {
            b: slice(b * bs, min((b + 1) * bs, n)) for b in range(self.num_batches(n)) if b % world == rank
        }

    def run_all(
        self, x: Tensor, y: Tensor, lengths: Tensor, index: Tensor, fabric: Any, device: torch.device | str,
        what: str, every: float, show: bool = True,
    ) -> None:  # fmt: skip
        """:meth:`run` on this process's batches (all of them without ``fabric``, Lightning Fabric's
        ranks otherwise) with a :class:`~lightning_skel.progress.ClipProgress` titled ``what``, shown on rank
        0 if ``show`` (a line every ``every`` seconds off a terminal). Rank 0 first checks the shards already
        in ``out_dir`` (:meth:`check_out_dir`); every rank waits for the others before and after."""
        rank, world = (fabric.global_rank, fabric.world_size) if fabric is not None else (0, 1)
        if rank == 0:
            self.check_out_dir(index)  # the shards already there: this run's, of these samples, readable
        if fabric is not None:
            fabric.barrier()
        mine = sum(sl.stop - sl.start for sl in self.batches(len(y), rank, world).values())  # this rank's
        with ClipProgress(what, mine, every, enabled=show and rank == 0) as progress:
            self.run(x, y, lengths, index, rank, world, device, progress=progress)
        if fabric is not None:
            fabric.barrier()

    def run(
        self,
        x: Tensor,
        y: Tensor,
        lengths: Tensor,
        index: Tensor,
        rank: int = 0,
        world: int = 1,
        device: torch.device | str = "cpu",
        progress: ClipProgress | None = None,
    ) -> list[int]:
        """Attack this rank's batches that have no shard yet on ``device``; return the batch ids attacked now.
        ``x (N, C, T, V, M)``, ``y``, ``lengths`` and ``index`` ``(N,)`` are the run's clips, windowed, in
        sample order. ``progress`` counts the clips as they finish (those of reused shards first, with
        :meth:`ClipProgress.skip`)."""
        self.classifier.to(device)
        if self.emotion is not None:
            self.emotion.to(device)
        done_now = []
        mine = self.batches(len(y), rank, world)
        todo = [b for b in mine if not self.shard_path(b).is_file()]
        if len(todo) < len(mine):
            reused = sum(mine[b].stop - mine[b].start for b in mine if b not in todo)
            who = f"rank {rank}: " if world > 1 else ""
            log.info(
                "%sresumed: reused %d of %d shards (%d clips) in %s",
                who, len(mine) - len(todo), len(mine), reused, self.shard_dir,
            )  # fmt: skip
            if progress is not None:
                progress.skip(reused)
        for b in todo:
            sl = mine[b]
            self._attack_batch(
                b, x[sl].to(device), y[sl].to(device), lengths[sl].to(device), index[sl].to(device),
                None if progress is None else progress.advance,
            )  # fmt: skip
            done_now.append(b)
        return done_now

    def build(self, batch: int = 0):
        """The attack for batch ``batch`` (seeded ``seed + batch`` when its class takes a seed, so results do
        not depend on the rank; with the emotion recognizer when it takes one). Bad settings fail here."""
        accepted = set(inspect.signature(ATTACKS.get(self.attack.name).__init__).parameters)
        extra: dict[str, Any] = {}
        if "seed" in accepted:
            extra["seed"] = self.seed + batch
        if self.emotion is not None and "emotion_model" in accepted:
            extra["emotion_model"] = self.emotion
        return self.attack.build(self.classifier, self.layout, **extra)

    def _attack_batch(self, b: int, x, y, lengths, index, on_clips_done=None) -> None:
        attack = self.build(b)
        attack.on_clips_done = on_clips_done
        target = (
            targets_for(y, index, self.num_classes, self.seed)
            if self.attack.targeted
            else torch.full_like(y, -1)
        )
        # the attack labels the clean clips and attacks only those the classifier gets right
        res = attack(x, y, lengths, target if self.attack.targeted else None)
        pred_clean, pred_adv = res.pred_clean, res.pred_adv
        success, attacked = res.success, res.attacked
        # shards hold coordinates; a score channel, which the attack returns unchanged, is the shard's score
        x_adv, score = split_score(res.x_adv, attack.score_channel)
        x = attack.coordinates(x)
        metrics = per_sample_metrics(x, x_adv, lengths, self.layout, self.emotion)
        arrays = {
            "index": index, "x": x, "x_adv": x_adv, "y": y, "target": target, "lengths": lengths,
            "pred_clean": pred_clean, "pred_adv": pred_adv, "success": success, "attacked": attacked,
            "grad_evals": res.grad_evals, "forward_evals": res.forward_evals,
            **({} if score is None else {"score": score[:, 0]}),
            **{f"m_{k}": v for k, v in metrics.items()},
            **{f"e_{k}": v for k, v in res.extras.items()},
        }  # fmt: skip
        shard = {k: v.detach().cpu().numpy() for k, v in arrays.items()}
        for k, names in attack.extra_labels.items():  # indices to names; -1 (none) to ""
            if f"e_{k}" in shard:
                shard[f"e_{k}"] = np.array(["", *names])[shard[f"e_{k}"] + 1]
        write_npz(self.shard_path(b), {**shard, "run": np.array(self.key)})

    def merge(self, index: Tensor) -> dict[str, np.ndarray]:
        """All shards of the samples ``index`` in sample order, as arrays; a missing shard, or one that
        :meth:`read_shard` refuses, is an error."""
        batches = range(self.num_batches(len(index)))
        missing = [b for b in batches if not self.shard_path(b).is_file()]
        if missing:
            raise RuntimeError(f"{self.kind} shards missing for batches {missing[:10]} in {self.shard_dir}")
        parts = []
        for b in batches:
            part = self.read_shard(b, index)
            del part["run"]
            if parts and set(part) != set(parts[0]):
                raise ValueError(
                    f"{self.kind} shard {self.shard_path(b)} holds arrays {sorted(part)}, batch 0's "
                    f"{sorted(parts[0])}; delete it to recompute its batch"
                )
            parts.append(part)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _head(a: np.ndarray | None, k: int = 8) -> str:
    """The first ``k`` entries of an index array, for an error message."""
    return "none" if a is None else f"{a[:k].tolist()}{' ...' if a.size > k else ''}"
