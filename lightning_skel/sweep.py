"""Hydra sweeps (``train.py -m``, ``attack.py -m``): a folder per job, and one table of every job's metrics.

Hydra runs a sweep's jobs one after another (or through a launcher plugin) with the same ``out_dir``;
:func:`job_out_dir` gives each job its own folder inside it, and :class:`SweepSummary`, a Hydra callback the
configs install, writes ``summary.md``, ``summary.csv`` and ``summary.png`` into the sweep's folder as its
jobs end: per job its overrides, its folder and the metrics its ``metrics.json`` holds, so that an ablation
(``attack.py -m ckpt=... attack.weights.bone=0,1 attack.weights.speed=0,1``) reads as one table.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from lightning_skel.utils import atomic_open, write_json

if TYPE_CHECKING:  # Hydra loads this module for every run: torch and matplotlib wait until needed
    from matplotlib.figure import Figure
from lightning_skel.viz import save_figure

log = logging.getLogger(__name__)

ROW_FILE = "sweep_job.json"  # each job's row of the summary, in <sweep folder>/<job number>/
MAX_NAME = 120  # a file name stops at 255 bytes
# keys naming the input files that make a job what it is: a job's name gives each by short_file_name, though
# the configs exclude them from Hydra's override_dirname (a path does not make a folder name)
FILE_KEYS = ("ckpt", "emotion_ckpt", "init_from", "data.path", "data.train_path", "data.val_path",
             "data.test_path")  # fmt: skip


def short_file_name(value: Any) -> str:
    """A file, or a list of files, as a readable folder-name part.

    Each file's folder and stem (a ``checkpoints`` folder skipped), joined by ``+``, then a hash of the
    absolute paths, which tells apart files whose short forms agree.

    Example:
        >>> short_file_name("runs/utd_hcn/checkpoints/last.ckpt")
        'utd_hcn.last-...'
    """
    files = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]

    def readable(file: str) -> str:
        path = Path(file)
        folder = next((p.name for p in path.parents if p.name and p.name != "checkpoints"), "")
        return f"{folder}.{path.stem}" if folder else path.stem

    digest = hashlib.sha1("\n".join(os.path.abspath(f) for f in files).encode()).hexdigest()[:8]
    return "+".join(readable(f) for f in files) + f"-{digest}"


def job_overrides(hydra: DictConfig) -> str:
    """A job's overrides as its folder and summary row name them.

    Hydra's ``override_dirname`` (the job's overrides, sorted, without the configs' ``exclude_keys``), with
    the :data:`FILE_KEYS` among them given by :func:`short_file_name` instead of left out, so that jobs over
    other checkpoints or data differ.

    Args:
        hydra: the job's Hydra config (``HydraConfig.get()``, or a job config's ``hydra``).

    Example:
        >>> from omegaconf import OmegaConf
        >>> dirname = {"exclude_keys": ["ckpt", "out_dir"], "item_sep": ",", "kv_sep": "="}
        >>> task = ["ckpt=runs/utd_hcn/checkpoints/last.ckpt", "attack.weights.bone=0", "out_dir=runs/x"]
        >>> job = {"config": {"override_dirname": dirname}}
        >>> hydra = OmegaConf.create({"job": job, "overrides": {"task": task}})
        >>> job_overrides(hydra)
        'attack.weights.bone=0,ckpt=utd_hcn.last-...'
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    opts = hydra.job.config.override_dirname
    lines = []
    for override in OverridesParser.create().parse_overrides(list(hydra.overrides.task)):
        key = override.key_or_group
        if key in FILE_KEYS and override.value():
            lines.append(f"{override.get_key_element()}={short_file_name(override.value())}")
        elif key not in opts.exclude_keys:
            lines.append(override.input_line)
    return opts.item_sep.join(sorted(lines)).replace("=", opts.kv_sep)


def job_folder_name(num: int, override_dirname: str) -> str:
    """``<num>_<overrides>``, path separators replaced; a name over :data:`MAX_NAME` is cut and hashed.

    The hash of the whole name keeps two long names apart.

    Example:
        >>> job_folder_name(3, "attack.weights.bone=0")
        '3_attack.weights.bone=0'
    """
    name = f"{num}_{override_dirname}".rstrip("_").replace(os.sep, "_")
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def job_out_dir(cfg: DictConfig, distributed: bool = False) -> Path:
    """``cfg.out_dir``; under a Hydra multirun, one folder per job inside it, named by the job's number and
    its overrides (``3_attack.weights.bone=0``; input files by a short form, :func:`job_overrides`), written
    back into ``cfg.out_dir`` so that whatever interpolates it follows. The jobs of a sweep would otherwise
    share one folder: a training sweep's jobs would overwrite each other's checkpoints, and an attack
    sweep's second job would find the first one's shards. Rerun, the same sweep finds its jobs' folders
    again, so each resumes.

    A ``distributed`` job of a sweep needs its processes started from outside (torchrun, SLURM), each
    running the sweep: Lightning's own launcher would start every other process with the whole command
    line, ``-m`` and all, and each would run the whole sweep; that is refused here, before any work.

    Example:
        >>> from omegaconf import OmegaConf
        >>> job_out_dir(OmegaConf.create({"out_dir": "runs/attack"}))  # not in a sweep
        PosixPath('runs/attack')
    """
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        if distributed and not any(k in os.environ for k in ("LOCAL_RANK", "SLURM_PROCID")):
            raise ValueError(
                "a Hydra sweep (-m) of DDP jobs must be started by torchrun or SLURM (each process runs the "
                "sweep); Lightning's launcher would run the whole sweep again in every process it starts. "
                "Run the jobs one by one, or e.g. `torchrun --nproc-per-node N train.py -m ...`"
            )
        hydra = HydraConfig.get()
        cfg.out_dir = str(Path(cfg.out_dir) / job_folder_name(hydra.job.num, job_overrides(hydra)))
    return Path(cfg.out_dir)


class SweepSummary(Callback):
    """A Hydra callback: ``summary.md``, ``summary.csv`` and ``summary.png`` in the sweep's folder.

    A row per job: its number, status, overrides (:func:`job_overrides`), ``out_dir`` and ``metrics``.
    Each job writes its row into ``<sweep folder>/<job number>/`` as it ends (:data:`ROW_FILE`), so the
    summary also gathers the jobs a launcher ran in other processes. The summary is rewritten after each
    job, so a sweep that a failed job ends (Hydra raises its error once every job has run) still has one.

    Args:
        metrics: the keys of each job's ``metrics.json`` to show; a job without one leaves them empty.

    Example:
        >>> for job, rate in enumerate([0.9, 1.0]):
        ...     row = {"job": job, "status": "completed", "success_rate": rate}  # what each job writes
        ...     _ = write_json(Path("sweep", str(job), ROW_FILE), row)
        >>> SweepSummary(metrics=["success_rate"]).write(Path("sweep"))
        >>> sorted(p.name for p in Path("sweep").glob("summary.*"))
        ['summary.csv', 'summary.md', 'summary.png']
    """

    def __init__(self, metrics: Sequence[str]) -> None:
        self.metrics = list(metrics)
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The sweep's folder as the sweep resolves it: a job's own config resolves hydra.sweep.dir with its
        # own values, so with out_dir=runs/attack_${attack.name} a sweep over attack=pgd,smart would
        # otherwise scatter its rows over one folder per attack.
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        # under DDP (torchrun) every process ends the job: rank 0 writes its row
        from pytorch_lightning.utilities import rank_zero_only

        if HydraConfig.get().mode != RunMode.MULTIRUN or rank_zero_only.rank != 0:
            return
        out_dir = Path(job_return.cfg.out_dir)  # the job's own: run.py's job_out_dir set it
        failed = job_return.status == JobStatus.FAILED
        saved = out_dir / "metrics.json"  # a failed job's may be an earlier run's: not read
        metrics = json.loads(saved.read_text()) if not failed and saved.is_file() else {}
        row = {
            "job": int(config.hydra.job.num),
            "status": "failed" if failed else "completed",
            "overrides": job_overrides(config.hydra),
            "out_dir": str(out_dir),
            **{k: metrics.get(k) for k in self.metrics},
        }
        sweep_dir = self.sweep_dir or Path(config.hydra.sweep.dir)  # the latter in a launcher's worker
        write_json(sweep_dir / str(row["job"]) / ROW_FILE, row)
        self.write(sweep_dir, final=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.write(self.sweep_dir or Path(config.hydra.sweep.dir))

    def write(self, sweep_dir: Path, final: bool = True) -> None:
        """The summary of the rows the jobs in ``sweep_dir`` have written so far (rewritten after each job,
        so that a sweep stopped by a failed or killed job keeps the rows of those that ended)."""
        rows = sorted(
            (json.loads(p.read_text()) for p in sweep_dir.glob(f"*/{ROW_FILE}")), key=lambda r: r["job"]
        )
        if not rows:  # at the end of a sweep, only if every job died before it ended
            log.warning("sweep %s: no job left a row for the summary", sweep_dir)
            return
        cols = ["job", "status", "overrides", "out_dir", *self.metrics]
        with atomic_open(sweep_dir / "summary.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(cols)
            writer.writerows([[_cell(r.get(c)) for c in cols] for r in rows])
        table = [
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
            *("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows),
        ]
        fig = summary_figure(rows, self.metrics)
        picture = []
        if fig is not None:
            save_figure(fig, sweep_dir / "summary.png")
            picture = ["", "![every job's metrics](summary.png)"]
        with atomic_open(sweep_dir / "summary.md", "w") as f:
            f.write(f"# Sweep of {len(rows)} jobs\n\n" + "\n".join([*table, *picture]) + "\n")
        if final:
            log.info("sweep summary written to %s:\n%s", sweep_dir / "summary.md", "\n".join(table))


def summary_figure(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> Figure | None:
    """A bar chart per metric, a bar per job (by number, in ``rows``' order); ``None`` without any value.

    Only the metrics that at least one job has a finite value of are drawn.

    Example:
        >>> fig = summary_figure([{"job": 0, "acc": 0.5}, {"job": 1, "acc": 0.7}], ["acc", "loss"])
        >>> [ax.get_title() for ax in fig.axes]
        ['acc']
    """

    def value(row: dict[str, Any], key: str) -> float:
        v = row.get(key)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.nan

    shown = [m for m in metrics if any(math.isfinite(value(r, m)) for r in rows)]
    if not shown:
        return None
    ncols = min(len(shown), 4)
    nrows = math.ceil(len(shown) / ncols)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows + 0.4), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    jobs = [str(r["job"]) for r in rows]
    for ax, key in zip(axes, shown, strict=False):
        ax.bar(jobs, [value(r, key) for r in rows], color="tab:blue")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("job", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    fig.suptitle("every job of the sweep (its overrides: summary.md)", fontsize=10)
    return fig


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
