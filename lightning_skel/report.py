"""The outputs of an attack run: adversarial.npz, per_sample.csv, metrics.json, report.md and its figures.

``merged`` holds the attack's per-clip arrays, each ``(N, ...)``: ``x`` and ``x_adv`` ``(N, C, T, V, M)``
(the clean and the adversarial clips, windowed), ``y``, ``lengths``, ``index`` (the row in the source),
``target`` (-1 untargeted), ``pred_clean``, ``pred_adv``, ``grad_evals`` and ``forward_evals`` (the
classifier's forward-backward and forward-only passes spent), ``attacked``, ``success``, the
metrics ``m_<name>`` (:mod:`lightning_skel.attacks.metrics`) and, with a score channel, ``score``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lightning_skel.attacks.metrics import median
from lightning_skel.data.io import ATTACK_INT, PER_SAMPLE_INT, SkeletonData, save_npz
from lightning_skel.utils import atomic_open, write_json
from lightning_skel.viz import frame_strip, save_figure, save_gif

HISTOGRAMS = (("rms_mm", "RMS joint displacement (mm)"), ("delta_bone", "relative bone-length change"),
              ("delta_angle_deg", "bone-angle change (deg)"), ("delta_speed", "relative joint-speed change"))  # fmt: skip


def adversarial_data(merged: dict[str, np.ndarray], source: SkeletonData) -> SkeletonData:
    """The attack's clips as a skeleton-npz dict (:mod:`lightning_skel.data.io`).

    ``x`` is the adversarial clips as the classifier saw them (windowed), ``x_clean`` the clean ones,
    ``score`` their keypoint scores where the classifier took a score channel (unchanged by the attack).
    Then the attack's per-clip results, and the source rows' layout, class names and per-clip facts
    (subject, view, emotion, sample name), so that the file trains, evaluates and is attacked like any other.

    Args:
        merged: the attack's per-clip arrays (the module doc).
        source: the attacked skeleton-npz dict; ``merged["index"]`` are its rows.

    Example:
        >>> x, idx, won = np.zeros((2, 3, 16, 20, 1), np.float32), np.arange(2), np.ones(2, bool)
        >>> distances = {f"m_{key}": np.array([5.0, 7.0]) for key, _ in HISTOGRAMS}
        >>> merged = dict(x=x, x_adv=x + 0.01, y=idx, lengths=np.full(2, 16), target=np.full(2, -1),
        ...               index=idx, pred_clean=idx, pred_adv=1 - idx, grad_evals=np.array([10, 12]),
        ...               forward_evals=np.array([2, 2]), attacked=won, success=won, **distances)
        >>> source = {"layout": "kinect20", "class_names": ["wave", "clap"]}
        >>> data = adversarial_data(merged, source)
        >>> data["x"].shape, data["success"]
        ((2, 3, 16, 20, 1), array([ True,  True]))
    """
    rows = merged["index"]
    data: SkeletonData = {
        "x": merged["x_adv"], "x_clean": merged["x"], "y": merged["y"], "lengths": merged["lengths"],
        "layout": source["layout"], "class_names": source["class_names"],
        **{k: merged[k].astype(np.int64) for k in ATTACK_INT},
        "attacked": merged["attacked"].astype(bool), "success": merged["success"].astype(bool),
    }  # fmt: skip
    if "score" in merged:
        data["score"] = merged["score"]
    for key in (*PER_SAMPLE_INT, "sample_name"):
        if key in source:
            data[key] = np.asarray(source[key])[rows]
    if "emotion_names" in source:
        data["emotion_names"] = source["emotion_names"]
    return data


def write_per_sample_csv(path: Path, merged: dict[str, np.ndarray], source: SkeletonData) -> Path:
    """Write ``path``, a CSV with a row per clip: its source row, sample name, labels, class names, metrics.

    Blank where nothing was measured: the target of an untargeted attack, and the success, gradient and
    forward evaluations and distances of a clip that was not attacked (and any NaN). The attack's own
    per-clip values, ``merged["e_<key>"]`` (its ``extras``), become columns ``attack_<key>``: numbers
    (blank where NaN or inf, or a count of -1) or names (AutoAttack's ``component``, "" for none).

    Example:
        >>> x, idx, won = np.zeros((2, 3, 16, 20, 1), np.float32), np.arange(2), np.ones(2, bool)
        >>> distances = {f"m_{key}": np.array([5.0, 7.0]) for key, _ in HISTOGRAMS}
        >>> merged = dict(x=x, x_adv=x + 0.01, y=idx, lengths=np.full(2, 16), target=np.full(2, -1),
        ...               index=idx, pred_clean=idx, pred_adv=1 - idx, grad_evals=np.array([10, 12]),
        ...               forward_evals=np.array([2, 2]), attacked=won, success=won, **distances)
        >>> source = {"layout": "kinect20", "class_names": ["wave", "clap"]}
        >>> _ = write_per_sample_csv(Path("per_sample.csv"), merged, source)
        >>> with open("per_sample.csv") as f:
        ...     row = next(csv.DictReader(f))
        >>> row["y_name"], row["pred_adv_name"], row["target"], row["rms_mm"]  # untargeted: no target
        ('wave', 'clap', '', '5')
    """
    names = np.asarray(source["class_names"], dtype=str)
    attacked = merged["attacked"].astype(bool)
    targeted = merged["target"] >= 0

    def ints(values: np.ndarray, shown: np.ndarray | bool = True) -> np.ndarray:
        return np.where(shown, values.astype(np.int64).astype(str), "")

    rows = merged["index"]
    sample = np.asarray(source["sample_name"])[rows] if "sample_name" in source else np.full(len(rows), "")
    cols = {
        "index": ints(rows), "sample_name": sample, "y": ints(merged["y"]), "y_name": names[merged["y"]],
        "target": ints(merged["target"], targeted),
        "target_name": np.where(targeted, names[merged["target"]], ""),
        "pred_clean": ints(merged["pred_clean"]), "pred_adv": ints(merged["pred_adv"]),
        "pred_adv_name": names[merged["pred_adv"]], "attacked": ints(attacked),
        "success": ints(merged["success"], attacked), "grad_evals": ints(merged["grad_evals"], attacked),
        "forward_evals": ints(merged["forward_evals"], attacked),
    }  # fmt: skip
    for key in sorted(k for k in merged if k.startswith("m_")):
        v = merged[key].astype(np.float64)
        cols[key[2:]] = np.where(attacked & np.isfinite(v), np.char.mod("%.6g", v), "")
    for key in sorted(k for k in merged if k.startswith("e_")):  # the attack's own values (its extras)
        v = merged[key]
        if v.dtype.kind == "U":
            text = v
        elif v.dtype.kind == "f":
            text = np.where(np.isfinite(v), np.char.mod("%.6g", v), "")
        else:
            text = ints(v, v >= 0)
        cols[f"attack_{key[2:]}"] = np.where(attacked, text, "")
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(zip(*cols.values(), strict=True))
    return path


def histogram_figure(merged: dict[str, np.ndarray]) -> Figure:
    """Histograms of the successful clips' distances (:data:`HISTOGRAMS`), with their medians.

    ``merged`` needs ``success`` and ``attacked``; a metric ``m_<name>`` of :data:`HISTOGRAMS` that it
    lacks (a run that did not record it) leaves its panel empty, titled "not recorded".

    Example:
        >>> won = np.ones(2, bool)
        >>> distances = {f"m_{key}": np.array([5.0, 7.0]) for key, _ in HISTOGRAMS}
        >>> fig = histogram_figure({"success": won, "attacked": won, **distances})
        >>> [ax.get_xlabel() for ax in fig.axes][:2]
        ['RMS joint displacement (mm)', 'relative bone-length change']
    """
    won = merged["success"] & merged["attacked"]
    fig = Figure(figsize=(9, 6))
    for ax, (key, label) in zip(fig.subplots(2, 2).flat, HISTOGRAMS, strict=True):
        # float64: float32 values a few ulps apart have too narrow a range for float32 bin edges
        if f"m_{key}" not in merged:
            ax.set_title("not recorded", fontsize=9)
            values = np.zeros(0)
        else:
            values = merged[f"m_{key}"][won].astype(np.float64)
        if values.size:
            ax.hist(values, bins=min(30, max(5, values.size // 3)), color="tab:blue", alpha=0.8)
            ax.axvline(median(values), color="k", ls="--", lw=1, label=f"median {median(values):.3g}")
            ax.legend(fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("successful clips")
    fig.tight_layout()
    return fig


def success_curve_figure(merged: dict[str, np.ndarray]) -> Figure:
    """The success rate of the attacked clips against the gradient evaluations spent, a step curve.

    ``merged`` needs ``attacked``, ``success`` and ``grad_evals``.

    Example:
        >>> won = np.ones(2, bool)
        >>> fig = success_curve_figure({"attacked": won, "success": won, "grad_evals": np.array([10, 12])})
        >>> fig.axes[0].get_xlabel()
        'classifier gradient evaluations per clip'
    """
    attacked = merged["attacked"].astype(bool)
    evals = merged["grad_evals"][attacked]
    won = merged["success"][attacked].astype(bool)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    if evals.size:
        budgets = np.unique(np.concatenate([[0], evals]))
        rate = (won[None, :] & (evals[None, :] <= budgets[:, None])).mean(1)
        ax.step(budgets, rate, where="post")
    ax.set_xlabel("classifier gradient evaluations per clip")
    ax.set_ylabel("success rate (attacked clips)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def nothing_attacked(metrics: dict[str, Any]) -> str:
    """Why an attack run attacked no clip, for its log and report.md; ``metrics`` are the run's.

    Example:
        >>> nothing_attacked({"num_samples": 0})
        'the split holds no clips'
    """
    n = metrics["num_samples"]
    if not n:
        return "the split holds no clips"
    return (
        f"the classifier got none of the {n} clips right (clean accuracy {metrics['clean_accuracy']:.3g}), and "
        "only clips it classifies correctly are attacked, so the success rate and the distances are undefined; "
        "check that the checkpoint fits the data, or attack more clips (limit, subset=spread)"
    )


def write_report(
    out_dir: Path,
    merged: dict[str, np.ndarray],
    metrics: dict[str, Any],
    layout: str,
    class_names: list[str],
    title: str,
    num_examples: int = 3,
    gif: bool = True,
) -> dict[str, Path]:
    """Write ``out_dir/report.md`` and its figures under ``out_dir/figures``; returns the figures by name.

    A run that attacked no clip gets a report that says so and why, and no figures.

    Args:
        out_dir: the run's folder.
        merged: the attack's per-clip arrays (the module doc).
        metrics: the run's metrics (docs/METHOD.md section 5).
        layout: the clips' layout.
        class_names: the class names.
        title: the report's title.
        num_examples: the successful clips drawn clean against adversarial (default 3).
        gif: also animate the first successful clip (default true).

    Example:
        >>> x, idx, won = np.zeros((2, 3, 16, 20, 1), np.float32), np.arange(2), np.ones(2, bool)
        >>> distances = {f"m_{key}": np.array([5.0, 7.0]) for key, _ in HISTOGRAMS}
        >>> merged = dict(x=x, x_adv=x + 0.01, y=idx, lengths=np.full(2, 16), target=np.full(2, -1),
        ...               index=idx, pred_clean=idx, pred_adv=1 - idx, grad_evals=np.array([10, 12]),
        ...               forward_evals=np.array([2, 2]), attacked=won, success=won, **distances)
        >>> source = {"layout": "kinect20", "class_names": ["wave", "clap"]}
        >>> paths = write_report(Path("run"), merged, {"num_attacked": 2}, "kinect20", source["class_names"],
        ...                      "ADMM", num_examples=1, gif=False)
        >>> sorted(paths), Path("run/report.md").is_file()
        (['example_0', 'histograms', 'success_curve'], True)
    """
    if not metrics.get("num_attacked"):
        lines = [f"# {title}", "", f"Nothing was attacked: {nothing_attacked(metrics)}.", "",
                 "| metric | value |", "|---|---|",
                 *[f"| {k} | {metrics[k]:.4g} |" for k in ("num_samples", "num_attacked", "clean_accuracy")
                   if k in metrics and metrics[k] == metrics[k]], ""]  # fmt: skip
        with atomic_open(out_dir / "report.md", "w") as f:
            f.write("\n".join(lines))
        return {}
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {
        "histograms": save_figure(histogram_figure(merged), fig_dir / "distance_histograms.png"),
        "success_curve": save_figure(success_curve_figure(merged), fig_dir / "success_vs_iterations.png"),
    }
    won = np.nonzero(merged["success"] & merged["attacked"])[0]
    for k, i in enumerate(won[:num_examples]):
        labels = [
            f"clean: {class_names[merged['y'][i]]}",
            f"adversarial: {class_names[merged['pred_adv'][i]]}",
        ]
        fig = frame_strip([merged["x"][i], merged["x_adv"][i]], layout, int(merged["lengths"][i]), labels=labels,
                          title=f"sample {int(merged['index'][i])}: rms {merged['m_rms_mm'][i]:.1f} mm")  # fmt: skip
        paths[f"example_{k}"] = save_figure(fig, fig_dir / f"example_{k}.png")
    if gif and won.size:
        i = won[0]
        paths["gif"] = save_gif(
            [merged["x"][i], merged["x_adv"][i]], layout, fig_dir / "attacked_clip.gif", int(merged["lengths"][i]),
            labels=[f"clean: {class_names[merged['y'][i]]}", f"adversarial: {class_names[merged['pred_adv'][i]]}"],
        )  # fmt: skip
    rows = [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()
            if isinstance(v, (int, float))]  # fmt: skip
    lines = [
        f"# {title}",
        "",
        "Metrics of docs/METHOD.md section 5: success over the clips the clean model classified correctly;",
        "distances (means and medians) over the successful ones; robust accuracy over all clips.",
        "",
        "| metric | value |",
        "|---|---|",
        *rows,
        "",
        "## Clean and adversarial skeletons",
        "",
        *[f"![{name}](figures/{p.name})" for name, p in paths.items() if name.startswith("example_")],
        "",
        "## Distances of the successful clips",
        "",
        f"![histograms](figures/{paths['histograms'].name})",
        "",
        "## Success against the attack's budget",
        "",
        f"![success curve](figures/{paths['success_curve'].name})",
        "",
    ]
    if "gif" in paths:
        lines += ["## One attacked clip", "", f"![attacked clip](figures/{paths['gif'].name})", ""]
    with atomic_open(out_dir / "report.md", "w") as f:
        f.write("\n".join(lines))
    return paths


def write_outputs(
    out_dir: Path,
    merged: dict[str, np.ndarray],
    metrics: dict[str, Any],
    extra: dict[str, Any],
    source: SkeletonData,
) -> None:
    """Write adversarial.npz (:func:`adversarial_data`), per_sample.csv and metrics.json into ``out_dir``.

    metrics.json holds ``metrics`` and ``extra``, as strict JSON. ``merged["index"]`` are rows of ``source``.

    Example:
        >>> x, idx, won = np.zeros((2, 3, 16, 20, 1), np.float32), np.arange(2), np.ones(2, bool)
        >>> distances = {f"m_{key}": np.array([5.0, 7.0]) for key, _ in HISTOGRAMS}
        >>> merged = dict(x=x, x_adv=x + 0.01, y=idx, lengths=np.full(2, 16), target=np.full(2, -1),
        ...               index=idx, pred_clean=idx, pred_adv=1 - idx, grad_evals=np.array([10, 12]),
        ...               forward_evals=np.array([2, 2]), attacked=won, success=won, **distances)
        >>> source = {"layout": "kinect20", "class_names": ["wave", "clap"]}
        >>> write_outputs(Path("run"), merged, {"success_rate": 1.0}, {"attack": "admm"}, source)
        >>> sorted(p.name for p in Path("run").iterdir())
        ['adversarial.npz', 'metrics.json', 'per_sample.csv']
    """
    save_npz(out_dir / "adversarial.npz", adversarial_data(merged, source))
    write_per_sample_csv(out_dir / "per_sample.csv", merged, source)
    write_json(out_dir / "metrics.json", {**metrics, **extra})
