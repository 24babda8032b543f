"""The zoo benchmark: every attack on every checkpoint, white-box and transferred to every other checkpoint.

``python zoo.py models='{hcn: A.ckpt, sgn: B.ckpt}' attacks=[admm,smart,ifgsm,mifgsm]`` runs ``attack.py``
for each model and attack (in ``out_dir/<model>/<attack>``, each resumable as attack runs are), then labels
each run's adversarial clips with every model (:mod:`lightning_skel.transfer`), and writes into ``out_dir``:

- ``whitebox.csv`` / ``whitebox.md``: per model and attack the success rate, gradient and forward-only
  evaluations per fooled clip (Square's queries are the latter) and the median of every size and dynamic
  metric over the fooled clips;
- ``transfer_<attack>.csv``, ``transfer.md`` and ``transfer_<attack>.png``: the source x target matrix of
  transfer success (over the clips the source attacked; the diagonal is the white-box success rate).

The tables go to W&B too with ``logger=wandb``. A rerun reads every finished run back.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from lightning_skel.utils import atomic_open, machine_info, torch_threads, write_json

log = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WHITEBOX = ("success_rate", "grad_evals", "forward_evals", "rms_mm_median", "linf_mm_median", "delta_bone_median",
            "delta_angle_deg_median", "delta_speed_median", "delta_acc_mm_median", "num_attacked",
            "wall_time_s")  # fmt: skip


def read_json(path: Path) -> dict[str, Any]:
    """A finished run's JSON file (``metrics.json``, ``transfer.json``) as a dict.

    Example:
        >>> _ = Path("metrics.json").write_text('{"success_rate": 1.0, "rms_mm_median": null}')
        >>> read_json(Path("metrics.json"))
        {'success_rate': 1.0, 'rms_mm_median': None}
    """
    return json.loads(path.read_text())


def _models(cfg: DictConfig) -> dict[str, str | list[str]]:
    models = OmegaConf.to_container(cfg.models, resolve=True) if cfg.get("models") is not None else None
    if not isinstance(models, dict) or not models:
        raise ValueError(
            f"zoo: models must be a mapping NAME: CHECKPOINT (or a list of them, fused), got {models!r}"
        )
    attacks = list(cfg.attacks or [])
    if not attacks:
        raise ValueError("zoo: attacks is empty; give attack config names, e.g. attacks=[admm,pgd]")
    known = sorted(p.stem for p in (CONFIGS / "attack").glob("*.yaml"))
    unknown = [a for a in attacks if a not in known]
    if unknown:
        raise ValueError(f"zoo: unknown attack config(s) {unknown}; known: {known}")
    for name, path in models.items():
        for p in [path] if isinstance(path, str) else path:
            if not Path(p).is_file():
                raise ValueError(f"zoo: models.{name}: no checkpoint at {p}")
    return models


def _compose(overrides: list[str]) -> DictConfig:
    """attack.py's config with ``overrides``, inside a Hydra app or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("attack", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("attack", overrides=overrides)


def _ckpt(path: str | list[str]) -> str:
    return f"ckpt={path}" if isinstance(path, str) else f"ckpt=[{','.join(path)}]"


def attack_runs(cfg: DictConfig, models: Mapping[str, Any]) -> dict[tuple[str, str], dict]:
    """Runs (or reads back) every model x attack; their metrics by ``(model, attack)``. ``cfg`` is zoo.yaml's
    (``out_dir``, ``attacks``, ``split``, ``limit``, ``subset``, ``batch_size``, ``threads``, ``seed``,
    ``attack_overrides``), ``models`` ``{name: checkpoint}``; a run with a ``metrics.json`` is read back.

    Example:
        >>> cfg = OmegaConf.create({"out_dir": "zoo_a", "attacks": ["pgd"], "split": "test",
        ...                         "subset": "spread", "batch_size": 8, "threads": 1, "seed": 0})
        >>> Path("zoo_a/hcn/pgd").mkdir(parents=True)
        >>> _ = Path("zoo_a/hcn/pgd/metrics.json").write_text('{"success_rate": 0.5}')  # finished: read back
        >>> attack_runs(cfg, {"hcn": "hcn.ckpt"})
        {('hcn', 'pgd'): {'success_rate': 0.5}}
    """
    from lightning_skel.attack_run import run_attack

    out = Path(cfg.out_dir)
    overrides = cfg.get("attack_overrides")
    extra = OmegaConf.to_container(overrides, resolve=True) if overrides is not None else {}
    common = [f"data.split={cfg.split}", f"subset={cfg.subset}", f"batch_size={cfg.batch_size}",
              f"threads={cfg.threads}", f"seed={cfg.seed}"]  # fmt: skip
    if cfg.get("limit") is not None:
        common.append(f"limit={cfg.limit}")
    results = {}
    for model, path in models.items():
        for attack in cfg.attacks:
            run = out / model / attack
            done = run / "metrics.json"
            if not done.is_file():
                log.info("zoo: %s on %s -> %s", attack, model, run)
                run_attack(_compose([_ckpt(path), f"attack={attack}", f"out_dir={run}", *common,
                                     *extra.get(attack, [])]))  # fmt: skip
            results[model, attack] = read_json(done)
    return results


def transfer_runs(cfg: DictConfig, models: Mapping[str, Any]) -> dict[tuple[str, str], dict]:
    """Every run's clips labelled by every model (``transfer.json`` in the run's folder, read back when it
    names the same targets).

    Example:
        >>> cfg = OmegaConf.create({"out_dir": "zoo_t", "attacks": ["pgd"], "batch_size": 8})
        >>> Path("zoo_t/hcn/pgd").mkdir(parents=True)
        >>> saved = '{"targets": {"hcn": "hcn.ckpt"}, "transfer/hcn/success_rate": 0.5}'
        >>> _ = Path("zoo_t/hcn/pgd/transfer.json").write_text(saved)
        >>> transfer_runs(cfg, {"hcn": "hcn.ckpt"})  # the same targets: read back
        {('hcn', 'pgd'): {'targets': {'hcn': 'hcn.ckpt'}, 'transfer/hcn/success_rate': 0.5}}
    """
    from lightning_skel.transfer import evaluate_file

    out = Path(cfg.out_dir)
    results = {}
    for model in models:
        for attack in cfg.attacks:
            run = out / model / attack
            saved = run / "transfer.json"
            if saved.is_file() and read_json(saved).get("targets") == dict(models):
                results[model, attack] = read_json(saved)
                continue
            results[model, attack] = evaluate_file(run / "adversarial.npz", models, run, int(cfg.batch_size))
    return results


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(_cell(v) for v in r) + " |" for r in rows)]) + "\n"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[_cell(v) for v in r] for r in rows])


def heatmap(matrix: np.ndarray, names: Sequence[str], attack: str):
    """The transfer matrix ``(sources, targets)`` of success rates as an annotated heatmap.

    Example:
        >>> fig = heatmap(np.array([[0.9, 0.2], [0.3, 1.0]]), ["hcn", "sgn"], "pgd")  # rows: sources
        >>> fig.axes[0].get_title(), [t.get_text() for t in fig.axes[0].texts]
        ('pgd: transfer success', ['0.90', '0.20', '0.30', '1.00'])
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 + 0.9 * len(names), 1.0 + 0.8 * len(names)))
    ax = fig.add_subplot()
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("target")
    ax.set_ylabel("source (white-box on the diagonal)")
    ax.set_title(f"{attack}: transfer success")
    for (i, j), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def write_tables(cfg: DictConfig, models: Sequence[str], white: Mapping, transfer: Mapping) -> dict[str, Any]:
    """whitebox.{csv,md}, transfer_<attack>.{csv,png} and transfer.md; the tables, for the loggers.

    Example:
        >>> cfg = OmegaConf.create({"out_dir": "zoo_w", "attacks": ["pgd"]})
        >>> white = {("hcn", "pgd"): {"success_rate": 1.0, "num_attacked": 4}}  # attack_runs'
        >>> transfer = {("hcn", "pgd"): {"transfer/hcn/success_rate": 1.0}}  # transfer_runs'
        >>> sorted(write_tables(cfg, ["hcn"], white, transfer))
        ['zoo/transfer_pgd', 'zoo/whitebox']
        >>> sorted(p.name for p in Path("zoo_w").iterdir())
        ['transfer.md', 'transfer_pgd.csv', 'transfer_pgd.png', 'whitebox.csv', 'whitebox.md']
    """
    from lightning_skel.viz import save_figure

    out = Path(cfg.out_dir)
    header = ["model", "attack", *WHITEBOX]
    rows = [[m, a, *(white[m, a].get(k) for k in WHITEBOX)] for m in models for a in cfg.attacks]
    _write_csv(out / "whitebox.csv", header, rows)
    with atomic_open(out / "whitebox.md", "w") as f:
        f.write(_markdown(header, rows))
    tables = {"zoo/whitebox": (header, rows)}
    md = []
    for attack in cfg.attacks:
        matrix = np.array([[transfer[s, attack].get(f"transfer/{t}/success_rate", math.nan) for t in models]
                           for s in models], dtype=float)  # fmt: skip
        t_header = ["source \\ target", *models]
        t_rows = [[s, *matrix[i]] for i, s in enumerate(models)]
        _write_csv(out / f"transfer_{attack}.csv", t_header, t_rows)
        save_figure(heatmap(matrix, list(models), attack), out / f"transfer_{attack}.png")
        md.append(f"### {attack}\n\n{_markdown(t_header, t_rows)}")
        tables[f"zoo/transfer_{attack}"] = (t_header, t_rows)
    with atomic_open(out / "transfer.md", "w") as f:
        f.write("\n".join(md))
    return tables


def run_zoo(cfg: DictConfig) -> dict[str, Any]:
    """The zoo benchmark of ``cfg`` (configs/zoo.yaml); returns ``{"whitebox": ..., "transfer": ...}`` keyed
    ``"<model>/<attack>"``. Every input is checked before the first attack runs.

    Example:
        >>> cfg = OmegaConf.create({"models": {"hcn": "missing.ckpt"}, "attacks": ["pgd"]})
        >>> run_zoo(cfg)  # every input checked before the first attack runs
        Traceback (most recent call last):
        ValueError: zoo: models.hcn: no checkpoint at missing.ckpt
    """
    from lightning_skel.run import build_loggers, finish_loggers

    models = _models(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    white = attack_runs(cfg, models)
    with torch_threads(cfg.get("threads", "auto")):
        transfer = transfer_runs(cfg, models)
    tables = write_tables(cfg, list(models), white, transfer)
    loggers = build_loggers(cfg, out)
    for lg in loggers:
        if hasattr(lg, "log_table"):
            for key, (header, rows) in tables.items():
                lg.log_table(key, columns=list(header), data=[[_cell(v) for v in r] for r in rows])
        if hasattr(lg, "log_image"):
            for attack in cfg.attacks:
                lg.log_image(f"zoo/transfer_{attack}", images=[str(out / f"transfer_{attack}.png")])
    finish_loggers(loggers)
    summary = {"whitebox": {f"{m}/{a}": {k: r.get(k) for k in WHITEBOX} for (m, a), r in white.items()},
               "transfer": {f"{m}/{a}": r for (m, a), r in transfer.items()}}  # fmt: skip
    config = OmegaConf.to_container(cfg, resolve=True)
    write_json(out / "zoo.json", {**summary, "config": config, "machine": machine_info()})
    log.info("zoo: tables in %s (whitebox.md, transfer.md)", out)
    return summary
