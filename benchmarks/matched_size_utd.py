"""ADMM against PGD, SMART and Zheng et al. at matched perturbation size on UTD-MHAD cross-subject (issue: the
ADMM attack).

docs/METHOD.md section 5: "a comparison either tunes each method to the same median ``rms_mm``, or plots each
dynamic metric against ``rms_mm`` across a sweep". Each baseline is run over a sweep of its size knob
(PGD: the L-infinity radius ``eps``; SMART, as its authors define it: its step ``lr``, which sets how far it
overshoots the decision boundary; Zheng et al. 2020: its Adam step ``lr``, which with its fixed
``max_iter * inner_steps`` steps bounds how far ``x'`` can travel), giving curves of ``delta_bone``,
``delta_angle_deg``, ``delta_speed`` and ``delta_acc_mm`` (means over the fooled clips) against the median
``rms_mm``. Each ADMM configuration is one point; the baselines' curves are interpolated (linearly, between
the two sweep points that bracket it) at ADMM's median ``rms_mm``, and the ratio ADMM / baseline is
reported: the aims are at most 1/3 on bone length and at most 1/2 on angle, speed and acceleration.
A point outside a baseline's sweep is reported as not bracketed, never extrapolated.

Every run is an ``attack.py`` run on the same test clips (``--limit``), resumable (finished runs are read
back from their ``metrics.json``). The ADMM points are the attack benchmark's runs of the same names
(``--admm-runs``, ``benchmarks/attack_utd.py``'s run folder, with the same ``NAME=`` per checkpoint), run
here only where that benchmark has not run them. ``--sweep`` replaces a baseline's sweep values (e.g. fewer
points on a heavy classifier); each point records its knob. Writes a JSON of every point and ratio, and a
figure of the curves per classifier (``matched_size_<NAME>[_<subset>][<--tag>].png``).

    .venv/bin/python benchmarks/matched_size_utd.py --ckpt hcn=runs/bench_utd/utd_hcn/checkpoints/last.ckpt \
        [--limit 64] [--batch-size 32] [--subset first|spread] [--split test|train] \
        [--variant admm_strict_bone20 attack=admm_strict attack.weights.bone=20] \
        [--sweep zheng2020 0.00003 0.0001 0.001] [--tag _authors_smart]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from common import (
    ROOT,
    add_subset_argument,
    attacked,
    ckpt_override,
    named_ckpts,
    save_results,
    subset_suffix,
)

METRICS = ("delta_bone", "delta_angle_deg", "delta_speed", "delta_acc_mm")
TARGET_RATIO = {"delta_bone": 1 / 3, "delta_angle_deg": 1 / 2, "delta_speed": 1 / 2, "delta_acc_mm": 1 / 2}
ADMM: dict[str, list[str]] = {
    "admm": ["attack=admm"],
    "admm_strict": ["attack=admm_strict"],
}
SWEEPS: dict[str, tuple[str, list[float]]] = {
    "pgd": ("eps", [0.002, 0.003, 0.005, 0.008, 0.012, 0.02]),
    "smart": ("lr", [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]),
    "zheng2020": ("lr", [0.00001, 0.00002, 0.00003, 0.0001, 0.001]),
}


def interpolate(points: list[dict], rms: float, metric: str) -> float | None:
    """The baseline's ``metric`` at median rms ``rms``, linear between the two bracketing sweep points."""
    pts = sorted((p["rms_mm_median"], p[metric]) for p in points if p["num_success"] > 0)
    xs = np.array([p[0] for p in pts])
    if len(xs) < 2 or not xs[0] <= rms <= xs[-1]:
        return None
    return float(np.interp(rms, xs, [p[1] for p in pts]))


def compare(admm: dict, baseline: list[dict]) -> dict:
    out = {}
    for metric in METRICS:
        base = interpolate(baseline, admm["rms_mm_median"], metric)
        ratio = None if base is None or base == 0 else admm[metric] / base
        out[metric] = {
            "admm": admm[metric],
            "baseline_at_matched_rms": base,
            "ratio": ratio,
            "target": TARGET_RATIO[metric],
            "met": None if ratio is None else ratio <= TARGET_RATIO[metric],
        }
    return out


def figure(model: str, admm: dict[str, dict], sweeps: dict[str, list[dict]], path: Path) -> None:
    import matplotlib.ticker
    from matplotlib.figure import Figure

    from lightning_skel.viz import save_figure

    fig = Figure(figsize=(4.2 * len(METRICS), 3.6))
    axes = fig.subplots(1, len(METRICS))
    for ax, metric in zip(axes, METRICS, strict=True):
        for name, points in sweeps.items():
            pts = sorted((p["rms_mm_median"], p[metric]) for p in points if p["num_success"] > 0)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
        for name, res in admm.items():
            ax.plot(res["rms_mm_median"], res[metric], "*", markersize=14, label=name)
        ax.set_xlabel("median rms_mm")
        ax.set_ylabel(metric)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{model}: dynamic metrics against perturbation size (UTD-MHAD cross-subject)")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True,
                        help="NAME=PATH of trained UTD classifiers (NAME=PATH,PATH: the sum of their scores)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=64, help="attack only N clips of the split")
    parser.add_argument(
        "--split",
        default="test",
        help="the split attacked (train: choose an ADMM configuration without the test clips)",
    )
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "OVERRIDE"),
                        help="one more ADMM point: its run name, then its attack.py overrides")  # fmt: skip
    add_subset_argument(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_matched")
    parser.add_argument("--admm-runs", type=Path, default=ROOT / "runs" / "bench_attack",
                        help="where the ADMM runs are (attack_utd.py's --runs)")  # fmt: skip
    parser.add_argument("--sweep", nargs="+", action="append", default=[], metavar=("ATTACK", "VALUE"),
                        help="a baseline's sweep values instead of the default ones: its name, then the values "
                        f"of its knob ({', '.join(f'{a}: {k}' for a, (k, _) in SWEEPS.items())})")  # fmt: skip
    parser.add_argument("--tag", default="", help="appended to the figures' names, e.g. _authors_smart")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "matched_size_utd.json")
    args = parser.parse_args()
    sweeps = dict(SWEEPS)
    for attack, *values in args.sweep:
        if attack not in SWEEPS or not values:
            parser.error(f"--sweep {attack}: give one of {sorted(SWEEPS)}, then its knob's values")
        try:
            sweeps[attack] = (SWEEPS[attack][0], sorted(float(v) for v in values))
        except ValueError:
            parser.error(f"--sweep {attack} {' '.join(values)}: the values must be numbers")
    ckpts = named_ckpts(parser, args.ckpt)
    variants = dict(ADMM)
    for name, *overrides in args.variant:
        if not overrides:
            parser.error(f"--variant {name}: give its attack.py overrides after the name")
        variants[name] = overrides
    results: dict = json.loads(args.out.read_text())["results"] if args.out.is_file() else {}

    def save() -> None:
        save_results(args.out, {"results": results})

    for model, ckpt in ckpts.items():
        common = [
            ckpt_override(ckpt),
            f"batch_size={args.batch_size}",
            f"limit={args.limit}",
            f"subset={args.subset}",
            f"data.split={args.split}",
        ]
        # rebuilt from the runs on disk
        row = results[model] = {"limit": args.limit, "admm": {}, "sweeps": {}, "compare": {}}
        for name, overrides in variants.items():
            row["admm"][name] = _numbers(attacked(args.admm_runs / model / name, [*common, *overrides]))
            save()
        for attack, (knob, values) in sweeps.items():
            row["sweeps"][attack] = [
                {knob: v, **_numbers(attacked(args.runs / model / f"{attack}_{knob}{v:g}",
                                              [*common, f"attack={attack}", f"attack.{knob}={v}"]))}
                for v in values
            ]  # fmt: skip
            save()
        row["compare"] = {
            name: {attack: compare(res, row["sweeps"][attack]) for attack in sweeps}
            for name, res in row["admm"].items()
        }
        save()
        suffix = subset_suffix(args.subset) + args.tag
        figure(model, row["admm"], row["sweeps"], args.out.with_name(f"matched_size_{model}{suffix}.png"))
        for name, per_attack in row["compare"].items():
            for attack, cmp in per_attack.items():
                cells = "  ".join(
                    f"{m} {'n/a' if c['ratio'] is None else format(c['ratio'], '.2f')}"
                    for m, c in cmp.items()
                )
                print(f"{model} {name} vs {attack} at {row['admm'][name]['rms_mm_median']:.1f} mm: {cells}")
    print(f"wrote {args.out}")
    return 0


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


if __name__ == "__main__":
    sys.exit(main())
