"""A certification run over a data split: randomized smoothing of a checkpoint's classifier, clip by clip
(docs/METHOD.md section 8).

It reuses the attack runs' machinery (:class:`~lightning_skel.attack_run.AttackRun`): the checkpoint
or fused checkpoints, the data split and ``limit`` as attack.py takes them, results written per batch of
``batch_size`` clips under ``out_dir/shards/`` atomically (a rerun of the same command skips the batches
done; shards of another run are refused), batch ``b`` on rank ``b % world_size`` under
``trainer.strategy=ddp``, and rank 0 merging. The noise of batch ``b`` comes from a generator seeded by
``(seed, b)``, so the results do not depend on the rank or on a resume.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from lightning_skel.attack_run import (
    AttackRun,
    attack_rows,
    check_batch_size,
    check_rows,
    checked_data,
    checkpoint_spec,
    launch,
    run_classifier,
    torch_device,
    windowed_clips,
)
from lightning_skel.attacks.spec import AttackSpec
from lightning_skel.certify.smoothing import (
    ABSTAIN,
    SmoothedClassifier,
    certified_accuracy,
    certified_accuracy_curve,
    check_smoothing_args,
)
from lightning_skel.progress import every_s
from lightning_skel.run import (
    build_loggers,
    check_config_numbers,
    finish_loggers,
    is_distributed,
    processes_per_node,
)
from lightning_skel.sweep import job_out_dir
from lightning_skel.utils import (
    atomic_open,
    check_params,
    log_once,
    torch_threads,
    versions,
    write_json,
    write_npz,
)
from lightning_skel.viz import save_figure

log = logging.getLogger(__name__)

# certify.yaml's numbers (lightning_skel.run.check_config_numbers): a string there is refused by key
CERTIFY_NUMBERS = {
    "seed": "int", "batch_size": "int", "batch": "int", "n0": "int", "n": "int", "sigma": "float",
    "alpha": "float", "limit": "int?", "fusion_weights.*": "float", "radii_mm.*": "float",
}  # fmt: skip
MM = 1000.0  # millimetres per metre: radii are certified in the clips' metres and reported in mm


@dataclass
class CertifyRun(AttackRun):
    """Certifies ``x`` (already windowed) in batches of ``batch_size`` clips and writes one shard per batch
    under ``out_dir/shards``: :class:`AttackRun`'s resumable, sharded, rank-split run, with randomized
    smoothing (:class:`SmoothedClassifier` of ``sigma`` metres, ``n0`` selection and ``n`` estimation
    samples at level ``alpha``, ``batch`` noisy copies per forward pass) in place of an attack.

    Args:
        classifier, layout, attack, out_dir, spec, batch_size: as :class:`AttackRun` (``classifier`` the
            model smoothed, ``(N, C, T, V, M) -> (N, K)`` logits; ``layout`` the clips' layout name;
            ``attack`` ``AttackSpec("smoothing")``, a label of the run).
        seed: the run's seed (default 0), mixed with the batch's number into each batch's noise seed
            (:meth:`batch_seed`).
        emotion, num_classes: as :class:`AttackRun`, unused by certification (defaults None and 0).
        sigma: the noise's standard deviation, metres (default 0.01).
        n0: noisy copies per clip that select the top class (default 100).
        n: noisy copies per clip that estimate its probability (default 1000).
        alpha: the certificate's failure probability (default 0.001).
        batch: noisy copies per forward pass (default 1000).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x, y = torch.randn(4, 3, 8, 25, 1), torch.tensor([0, 1, 2, 3])
    >>> lengths, index = torch.full((4,), 8), torch.arange(4)
    >>> run = CertifyRun(model, "ntu25", AttackSpec("smoothing"), Path("runs/c"), {"run": "demo"},
    ...                  batch_size=2, sigma=0.01, n0=10, n=50, alpha=0.01, batch=50)
    >>> run.run(x, y, lengths, index)  # the batches it certified
    [0, 1]
    >>> merged = run.merge(index)  # prediction, radius_mm, p_lower, ... per clip
    >>> merged["prediction"].shape, merged["radius_mm"].shape
    ((4,), (4,))
    """

    sigma: float = 0.01
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    batch: int = 1000
    kind: ClassVar[str] = "certification"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_smoothing_args("certify", n0=self.n0, n=self.n, alpha=self.alpha)
        self.smoothed = SmoothedClassifier(self.classifier, self.sigma, self.batch)

    def batch_seed(self, b: int) -> int:
        """The seed of batch ``b``'s noise: mixed from the run's seed and ``b``."""
        return int(np.random.SeedSequence([self.seed, b]).generate_state(1, np.uint64)[0])

    def build(self, batch: int = 0) -> SmoothedClassifier:
        """The smoothed classifier (the same for every batch: a batch's seed is :meth:`batch_seed`)."""
        return self.smoothed

    def _attack_batch(self, b: int, x, y, lengths, index, on_clips_done=None) -> None:
        cert = self.smoothed.certify(x, lengths, self.n0, self.n, self.alpha, seed=self.batch_seed(b))
        with torch.no_grad():  # the base classifier's label of the clean clip, for comparison
            base = self.classifier.eval()(x).argmax(1)
        arrays = {
            "index": index, "y": y, "lengths": lengths, "prediction": cert.prediction,
            "abstain": cert.abstain, "correct": cert.prediction == y, "radius_mm": cert.radius * MM,
            "p_lower": cert.p_lower, "count": cert.count, "selected": cert.selected, "base_prediction": base,
        }  # fmt: skip
        shard = {k: v.detach().cpu().numpy() for k, v in arrays.items()}
        write_npz(self.shard_path(b), {**shard, "run": np.array(self.key)})
        if on_clips_done is not None:
            on_clips_done(len(y))


def check_certify_config(cfg: DictConfig) -> None:
    """certify.yaml's settings, all at once, before any checkpoint or data is read: sigma, n0, n, alpha,
    batch (:func:`check_smoothing_args`), batch_size, limit and subset, and the radii of the metrics.

    Example:
        >>> cfg = OmegaConf.create({"sigma": 0.01, "batch": 100, "n0": 10, "n": 100, "alpha": 0.001,
        ...                         "batch_size": 8, "radii_mm": [0, 5]})
        >>> check_certify_config(cfg)  # passes
        >>> check_certify_config(OmegaConf.merge(cfg, {"radii_mm": []}))
        Traceback (most recent call last):
        ValueError: certify.py: invalid setting(s): radii_mm must be a non-empty list of radii >= 0 ..., got []
    """
    check_smoothing_args(
        "certify.py", sigma=cfg.sigma, batch=cfg.batch, n0=cfg.n0, n=cfg.n, alpha=cfg.alpha, what="setting(s)"
    )
    check_batch_size(int(cfg.batch_size))
    check_rows(cfg.get("limit"), cfg.get("subset", "spread"))
    radii = OmegaConf.to_container(cfg.radii_mm, resolve=True) if cfg.get("radii_mm") is not None else None
    ok = isinstance(radii, list) and bool(radii) and all(r >= 0 for r in radii)
    check_params("certify.py", {"radii_mm": (radii, ok, "a non-empty list of radii >= 0 (mm)")}, "setting(s)")


def run_certify(cfg: DictConfig) -> dict[str, Any]:
    """Certify a trained classifier on a data split by randomized smoothing as ``cfg`` (configs/certify.yaml)
    says; write per_sample.csv, certificates.npz, metrics.json, certified_accuracy.csv and
    figures/certified_accuracy.png into ``out_dir`` and return the aggregate metrics. Every input is checked
    before any work. Under ``trainer.strategy=ddp`` (Lightning Fabric) the batches are split across ranks.
    Torch's threads are ``cfg.threads`` for the run (:func:`utils.torch_threads`).

    Example:
        >>> cfg = OmegaConf.create({"ckpt": "last.ckpt", "sigma": "0.01", "trainer": {}})  # a string
        >>> run_certify(cfg)  # refused before any checkpoint or data is read
        Traceback (most recent call last):
        ValueError: certify config: invalid setting(s): sigma must be a number, got '0.01'
    """
    with torch_threads(cfg.get("threads", "auto"), processes_per_node(cfg)) as n:
        log_once(log, "torch threads: %d (threads=%s)", n, cfg.get("threads", "auto"))
        return _run_certify(cfg)


def _run_certify(cfg: DictConfig) -> dict[str, Any]:
    check_config_numbers(cfg, CERTIFY_NUMBERS, "certify config")
    check_certify_config(cfg)
    job_out_dir(cfg, is_distributed(cfg))
    return launch(cfg, _certify_main)


def _certify_main(fabric, cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    progress_every_s = every_s(cfg, "certify.py")
    rank = fabric.global_rank if fabric is not None else 0
    device = fabric.device if fabric is not None else torch_device(cfg)
    out_dir = Path(cfg.out_dir)
    # -- every input checked before any work --
    ckpts, fusion, classifier, hp, shown = run_classifier(cfg)
    dm, split = checked_data(cfg, hp, shown, fabric)
    ds = dm.split_set(split)
    subset, limit = cfg.get("subset", "spread"), cfg.get("limit")
    rows = attack_rows(len(ds), limit, subset)
    settings = {k: cfg[k] for k in ("sigma", "n0", "n", "alpha", "batch")}
    spec = {
        **checkpoint_spec(ckpts, fusion),
        "certify": "smoothing",
        # batch shapes the noise stream (the copies of a forward pass are drawn together): a setting of the run
        **{k: float(v) if k in ("sigma", "alpha") else int(v) for k, v in settings.items()},
        "split": split,
        "num_samples": int(rows.size),
        **({"subset": subset} if subset != "first" and rows.size < len(ds) else {}),
        "batch_size": int(cfg.batch_size),
        "seed": int(cfg.seed),
        "data": dm.describe(),
    }
    run = CertifyRun(
        classifier=classifier, layout=hp["layout"], attack=AttackSpec("smoothing"), out_dir=out_dir,
        spec=spec, batch_size=int(cfg.batch_size), seed=int(cfg.seed), num_classes=int(hp["num_classes"]),
        sigma=float(cfg.sigma), n0=int(cfg.n0), n=int(cfg.n), alpha=float(cfg.alpha), batch=int(cfg.batch),
    )  # fmt: skip
    x, y, lengths, index = windowed_clips(dm, ds, rows)
    what = f"certify sigma={float(cfg.sigma):g} on {split} ({out_dir.name})"
    run.run_all(x, y, lengths, index, fabric, device, what, progress_every_s,
                bool(cfg.trainer.get("enable_progress_bar", True)))  # fmt: skip
    if rank != 0:
        return {}
    merged = run.merge(index)
    radii = [float(r) for r in cfg.radii_mm]
    metrics = certify_metrics(merged, radii)
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    metrics["threads"] = torch.get_num_threads()
    extra = {"config": OmegaConf.to_container(cfg, resolve=True), "versions": versions(), "spec": spec}
    curve = certified_accuracy_curve(merged["prediction"], merged["y"], merged["radius_mm"])
    figure = write_certify_outputs(out_dir, merged, metrics, extra, curve, ds.data, radii, float(cfg.sigma))
    _log_certify(cfg, out_dir, metrics, curve, figure)
    log.info("certification outputs written to %s", out_dir)
    return metrics


def certify_metrics(merged: dict[str, np.ndarray], radii_mm: list[float]) -> dict[str, Any]:
    """The aggregates of a run's per-clip results: the clip count, the base classifier's clean accuracy, the
    abstention rate, the certified accuracy at each radius of ``radii_mm``
    (``certified_accuracy_l2_mm_<r>``) and the average certified radius in mm (a wrong or abstained clip
    counts 0).

    Example:
        >>> merged = {"y": np.array([0, 1, 2]), "prediction": np.array([0, ABSTAIN, 2]),
        ...           "base_prediction": np.array([0, 1, 0]), "abstain": np.array([False, True, False]),
        ...           "radius_mm": np.array([3.0, np.nan, 8.0])}
        >>> m = certify_metrics(merged, [0, 5])
        >>> m["abstain_rate"], m["certified_accuracy_l2_mm_5"], m["average_certified_radius_mm"]
        (0.3333333333333333, 0.3333333333333333, 3.6666666666666665)
    """
    pred, y, radius = merged["prediction"], merged["y"], merged["radius_mm"]
    n = len(y)
    right = (pred == y) & (pred != ABSTAIN)
    acc = certified_accuracy(pred, y, radius, radii_mm)
    return {
        "num_samples": n,
        "clean_accuracy": float((merged["base_prediction"] == y).mean()) if n else float("nan"),
        "abstain_rate": float(merged["abstain"].mean()) if n else float("nan"),
        **{f"certified_accuracy_l2_mm_{r:g}": float(a) for r, a in zip(radii_mm, acc, strict=True)},
        "average_certified_radius_mm": float(np.where(right, radius, 0.0).mean()) if n else float("nan"),
    }


def write_certify_outputs(
    out_dir: Path,
    merged: dict[str, np.ndarray],
    metrics: dict[str, Any],
    extra: dict[str, Any],
    curve: tuple[np.ndarray, np.ndarray],
    source: dict[str, Any],
    radii_mm: list[float],
    sigma: float,
) -> Path:
    """certificates.npz (the per-clip arrays), per_sample.csv (a row per clip, with class names; prediction
    and radius blank where the smoothed classifier abstains), metrics.json, certified_accuracy.csv (the
    curve) and figures/certified_accuracy.png; returns the figure's path. Every file is written atomically.

    Args:
        out_dir: the run's folder (created where missing).
        merged: the per-clip arrays ``(N,)`` of :meth:`CertifyRun.merge`; metrics: :func:`certify_metrics`'s;
            extra: more keys for metrics.json (config, versions, spec).
        curve: :func:`certified_accuracy_curve` in mm; source: the data, for ``class_names`` (and
            ``sample_name`` where it has them); radii_mm, sigma (metres): for the figure (:func:`curve_figure`).

    Example:
        >>> keys = ("index", "y", "correct", "count", "selected", "base_prediction")  # a run's arrays
        >>> merged = {k: np.array([0, 1]) for k in keys} | {
        ...     "prediction": np.array([0, ABSTAIN]), "abstain": np.array([False, True]),
        ...     "radius_mm": np.array([3.0, np.nan]), "p_lower": np.array([0.9, 0.4])}
        >>> curve = certified_accuracy_curve(merged["prediction"], merged["y"], merged["radius_mm"])
        >>> source = {"class_names": ["wave", "clap"]}  # the data's, for per_sample.csv
        >>> metrics = certify_metrics(merged, [0])
        >>> write_certify_outputs(Path("out"), merged, metrics, {}, curve, source, [0], sigma=0.01)
        PosixPath('out/figures/certified_accuracy.png')
        >>> sorted(p.name for p in Path("out").iterdir())
        ['certificates.npz', 'certified_accuracy.csv', 'figures', 'metrics.json', 'per_sample.csv']
    """
    write_npz(out_dir / "certificates.npz", merged)
    names = np.asarray(source["class_names"], dtype=str)
    rows, pred, abstain = merged["index"], merged["prediction"], merged["abstain"].astype(bool)
    sample = np.asarray(source["sample_name"])[rows] if "sample_name" in source else np.full(len(rows), "")
    shown = np.where(abstain, 0, pred)  # a valid class index to look a name up with; blanked below
    cols = {
        "index": rows.astype(str), "sample_name": sample, "y": merged["y"].astype(str),
        "y_name": names[merged["y"]], "prediction": np.where(abstain, "", pred.astype(str)),
        "prediction_name": np.where(abstain, "", names[shown]), "abstain": abstain.astype(int).astype(str),
        "correct": merged["correct"].astype(int).astype(str),
        "radius_mm": np.where(abstain, "", np.char.mod("%.6g", merged["radius_mm"])),
        "p_lower": np.char.mod("%.6g", merged["p_lower"]), "count": merged["count"].astype(str),
        "selected": merged["selected"].astype(str), "base_prediction": merged["base_prediction"].astype(str),
    }  # fmt: skip
    with atomic_open(out_dir / "per_sample.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(zip(*cols.values(), strict=True))
    radius, accuracy = curve
    with atomic_open(out_dir / "certified_accuracy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["radius_mm", "certified_accuracy"])
        w.writerows([f"{r:.6g}", f"{a:.6g}"] for r, a in zip(radius, accuracy, strict=True))
    write_json(out_dir / "metrics.json", {**metrics, **extra})
    return save_figure(
        curve_figure(curve, metrics, radii_mm, sigma), out_dir / "figures" / "certified_accuracy.png"
    )


def curve_figure(
    curve: tuple[np.ndarray, np.ndarray], metrics: dict[str, Any], radii_mm: list[float], sigma: float
) -> Figure:
    """Certified accuracy against the L2 radius in mm (a step per certified clip), the radii of the metrics
    marked: ``curve`` as :func:`certified_accuracy_curve` gives it (radii in mm), ``metrics`` with
    ``num_samples`` and ``certified_accuracy_l2_mm_<r>`` for each of ``radii_mm``, ``sigma`` in metres.

    Example:
        >>> curve = (np.array([0.0, 4.0, 12.0]), np.array([0.5, 0.5, 0.25]))  # certified_accuracy_curve
        >>> metrics = {"num_samples": 4, "certified_accuracy_l2_mm_5": 0.25}
        >>> curve_figure(curve, metrics, [5], sigma=0.01).axes[0].get_title()
        'randomized smoothing, sigma = 10 mm (4 clips)'
    """
    radius, accuracy = curve
    right = max([*radii_mm, float(radius.max()) if radius.size else 0.0]) * 1.05 or 1.0
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    # beyond the largest certified radius no clip is certified: the curve drops to 0 there
    ax.step([*radius, right], [*accuracy, 0.0], where="pre", color="tab:blue")
    marks = [metrics[f"certified_accuracy_l2_mm_{r:g}"] for r in radii_mm]
    ax.plot(radii_mm, marks, "o", color="tab:orange", label="radii_mm (metrics.json)")
    ax.set_xlabel("L2 radius over valid joints (mm)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, right)
    ax.set_title(f"randomized smoothing, sigma = {sigma * MM:g} mm ({metrics['num_samples']} clips)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def _log_certify(
    cfg: DictConfig,
    out_dir: Path,
    metrics: dict[str, Any],
    curve: tuple[np.ndarray, np.ndarray],
    figure: Path,
) -> None:
    """Metrics, the curve as a table and its figure to W&B when it is configured (offline by default)."""
    loggers = build_loggers(cfg, out_dir)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        lg.log_metrics({f"certify/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
        if hasattr(lg, "log_table"):
            rows = [[float(r), float(a)] for r, a in zip(*curve, strict=True)]
            lg.log_table("certify/certified_accuracy", columns=["radius_mm", "certified_accuracy"], data=rows)
        if hasattr(lg, "log_image"):
            lg.log_image("certify/certified_accuracy_curve", images=[str(figure)])
        lg.save()
    finish_loggers(loggers)
