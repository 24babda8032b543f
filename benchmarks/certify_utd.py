"""Certified against empirical L2 robustness on UTD-MHAD cross-subject (issue: randomized smoothing).

For each model and noise level ``sigma`` it trains the model's UTD recipe with Gaussian-noise augmentation
(``train.py experiment=utd_<model> callbacks=noise callbacks.noise.sigma=<sigma>``; SGN for 15 epochs
instead of its recipe's 100, to fit a 2-core machine), certifies the last checkpoint by randomized smoothing
(Cohen et al., ICML 2019: ``certify.py``, ``n0``, ``n``, ``alpha``) on the test split, and attacks the same
checkpoint's *base* classifier (not the smoothed one) on ``--attack-limit`` spread test clips: AutoAttack in
the L2 ball of each radius (``attack=autoattack attack.norm=l2 attack.eps=<r>``) and ADMM, whose robust
accuracy within each L2 size counts a clip as robust when ADMM failed or fooled it only beyond that size
(``budgets={l2: [...]}``: ``robust_accuracy_l2_le_<r in metres>``, docs/METHOD.md section 5). Radii are
L2 norms over the valid entries of the windowed clip, in millimetres, for the certificate and the attacks
alike (docs/METHOD.md section 8).

Every train, certify and attack run has its own folder under ``--runs``; a finished one is read back from its
``metrics.json`` (a killed benchmark resumes; an unfinished training resumes from its ``last.ckpt``, an
unfinished certification from its shards). Writes ``benchmarks/results/certify_utd.json`` (results of
earlier invocations kept) and ``certify_utd.png``, and prints a markdown table.

    .venv/bin/python benchmarks/certify_utd.py [--models hcn sgn] [--sigmas-mm 5 10 20]
        [--certify-limit N]   (certify N test clips spread over the split instead of all 430)
        [--certify-batch B]   (noisy copies per forward pass; on a CPU 200 ran faster than certify.py's 1000)
        [--autoattack-components apgd-ce ...]   (AutoAttack's version=custom: fewer passes than standard)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from common import ROOT, add_trainer_option, attacked, certified, save_results, trained, use_trainer

from lightning_skel.attacks.autoattack import COMPONENTS, VERSIONS

# train.py overrides per model beyond experiment=utd_<model>: SGN's 100-epoch recipe takes hours on 2 cores
MODELS: dict[str, list[str]] = {"hcn": [], "sgn": ["trainer.max_epochs=15"]}
SIGMAS_MM = (5.0, 10.0, 20.0)
RADII_MM = (0.0, 2.5, 5.0, 10.0, 20.0)  # certified accuracy at these L2 radii
ATTACK_RADII_MM = (2.5, 5.0, 10.0, 20.0)  # the attacks' L2 balls and ADMM's L2 budgets


def metres(mm: float) -> str:
    """A size in mm as the override string in metres (``2.5`` -> ``0.0025``)."""
    return f"{mm / 1000:g}"


def mm_or_none(m: float | None) -> float | None:
    """A size in metres as mm; None for an undefined one (NaN in a run's result, null read back)."""
    return None if m is None or math.isnan(m) else 1000 * m


def model_dir(runs: Path, model: str, sigma_mm: float) -> Path:
    return runs / f"{model}_sigma{sigma_mm:g}mm"


def certified_curve(out: Path) -> tuple[list[float], list[float]]:
    """The exact certified-accuracy curve of a certify run (its certified_accuracy.csv)."""
    with (out / "certified_accuracy.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [float(r["radius_mm"]) for r in rows], [float(r["certified_accuracy"]) for r in rows]


def robust_after_first(out: Path, metrics: dict) -> float | None:
    """The robust accuracy an AutoAttack run would have had with its first component alone (APGD-CE in the
    standard version): its robust accuracy plus the clips the later components fooled, which the run counts
    (``component/<part>`` in metrics.json). A run written before those counts tells the clips by their
    gradient evaluations in per_sample.csv: the first component spends at most ``n_iter + 1`` on a clip it
    fools, and the later ones add theirs."""
    spec = metrics["config"]["attack"]
    version = spec.get("version", "standard")
    parts = spec["attacks"] if version == "custom" else VERSIONS[version]
    if len(parts) < 2:
        return None
    if any(k.startswith("component/") for k in metrics):
        later = sum(metrics.get(f"component/{p}", 0) for p in parts[1:])
        return metrics["robust_accuracy"] + later / metrics["num_samples"]
    with (out / "per_sample.csv").open() as f:
        rows = list(csv.DictReader(f))
    held = sum(r["attacked"] == "1" and int(r["grad_evals"]) > int(spec.get("n_iter", 100)) + 1 for r in rows)
    return held / len(rows)


def measure(model: str, sigma_mm: float, args: argparse.Namespace) -> dict:
    """Train, certify and attack one model at one sigma; the row of the results file."""
    base = model_dir(args.runs, model, sigma_mm)
    quiet = ["threads=1", "trainer.enable_progress_bar=false"]
    train_extra = [*MODELS[model], *args.train_overrides]
    train = trained(base / "train", [f"experiment=utd_{model}", "callbacks=noise",
                                     f"callbacks.noise.sigma={metres(sigma_mm)}", "threads=1", *train_extra])  # fmt: skip
    ckpt = train["last_checkpoint"]
    rows = [] if args.certify_limit is None else [f"limit={args.certify_limit}", "subset=spread"]
    cert_dir = base / "".join(["certify", "" if args.certify_limit is None else f"_limit{args.certify_limit}_spread",
                               "" if args.certify_batch == 1000 else f"_batch{args.certify_batch}"])  # fmt: skip
    cert = certified(cert_dir, [f"ckpt={ckpt}", f"sigma={metres(sigma_mm)}", f"n0={args.n0}", f"n={args.n}",
                                f"alpha={args.alpha:g}", f"batch={args.certify_batch}", *rows, *quiet])  # fmt: skip
    clips = [f"limit={args.attack_limit}", "subset=spread"]
    parts = args.autoattack_components
    version = [] if parts is None else ["attack.version=custom", f"attack.attacks=[{','.join(parts)}]"]
    which = "" if parts is None else "_" + "+".join(parts)
    auto = {}
    for r in args.attack_radii_mm:
        ball = ["attack=autoattack", "attack.norm=l2", f"attack.eps={metres(r)}", *version]
        auto[r] = attacked(base / f"autoattack{which}_l2_{r:g}mm", [f"ckpt={ckpt}", *ball, *clips, *quiet])
    budgets = "budgets={l2: [" + ", ".join(metres(r) for r in args.attack_radii_mm) + "]}"
    admm = attacked(base / "admm_l2_budgets", [f"ckpt={ckpt}", "attack=admm", budgets, *clips, *quiet])
    first = auto[args.attack_radii_mm[0]]
    return {
        "train": {
            "overrides": train_extra,
            "epochs": train["epochs"],
            "wall_time_s": train["wall_time_s"],
            "checkpoint": ckpt,
            "test_acc_best_val_checkpoint": train["test/acc"],
        },
        "certify": {
            "num_clips": cert["num_samples"],
            "limit": args.certify_limit,
            "batch": args.certify_batch,
            "clean_acc_base": cert["clean_accuracy"],
            "abstain_rate": cert["abstain_rate"],
            "certified_acc": {f"{r:g}": cert[f"certified_accuracy_l2_mm_{r:g}"] for r in args.radii_mm},
            "average_certified_radius_mm": cert["average_certified_radius_mm"],
            "curve": dict(zip(("radius_mm", "certified_acc"), certified_curve(cert_dir), strict=True)),
            "wall_time_s": cert["wall_time_s"],
        },
        "autoattack_l2": {
            "version": "standard" if parts is None else f"custom: {', '.join(parts)}",
            "num_clips": first["num_samples"],
            "clean_acc_base": first["clean_accuracy"],
            "robust_acc": {f"{r:g}": a["robust_accuracy"] for r, a in auto.items()},
            "first_component": (parts or VERSIONS["standard"])[0],
            "robust_acc_first_component_alone": {
                f"{r:g}": robust_after_first(base / f"autoattack{which}_l2_{r:g}mm", a)
                for r, a in auto.items()
            },
            "wall_time_s": {f"{r:g}": a["wall_time_s"] for r, a in auto.items()},
        },
        "admm_within_l2": {
            "num_clips": admm["num_samples"],
            "clean_acc_base": admm["clean_accuracy"],
            "robust_acc": {
                f"{r:g}": admm[f"robust_accuracy_l2_le_{r / 1000:g}"] for r in args.attack_radii_mm
            },
            "robust_acc_unbounded": admm["robust_accuracy"],
            "l2_mm_median_of_fooled": mm_or_none(admm["l2_median"]),
            "wall_time_s": admm["wall_time_s"],
        },
    }


def figure(results: dict, path: Path) -> None:
    """Certified accuracy of the smoothed classifier against the L2 radius (a panel per model, a colour per
    sigma), with the empirical robust accuracy of its base classifier under AutoAttack (squares) and ADMM
    within the L2 size (triangles)."""
    from matplotlib.figure import Figure

    from lightning_skel.viz import save_figure

    fig = Figure(figsize=(5.2 * len(results), 4.2))
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False)[0]
    for ax, (model, rows) in zip(axes, results.items(), strict=True):
        right = 0.0
        for i, (sigma, row) in enumerate(sorted(rows.items(), key=lambda kv: float(kv[0]))):
            colour, cert = f"C{i}", row["certify"]
            radius, acc = cert["curve"]["radius_mm"], cert["curve"]["certified_acc"]
            end = max(radius[-1], max(map(float, row["autoattack_l2"]["robust_acc"]))) * 1.05
            right = max(right, end)
            ax.step([*radius, end], [*acc, 0.0], where="pre", color=colour,
                    label=f"sigma {sigma} mm: certified ({cert['num_clips']} clips)")  # fmt: skip
            version = row["autoattack_l2"]["version"]
            auto = "AutoAttack" if version == "standard" else f"AutoAttack ({version})"
            marks = {"autoattack_l2": ("s", auto), "admm_within_l2": ("^", "ADMM within L2")}
            for key, (marker, what) in marks.items():
                emp = row[key]["robust_acc"]
                ax.plot([float(r) for r in emp], list(emp.values()), marker, color=colour, fillstyle="none",
                        linestyle=":", label=f"sigma {sigma} mm: base, {what}")  # fmt: skip
        ax.set_xlim(0, right)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("L2 radius over the valid joints (mm)")
        ax.set_title(f"{model}: smoothed certified (lines), base under attack (markers)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    save_figure(fig, path)


def table(results: dict, radii: list[float], attack_radii: list[float]) -> str:
    """The results as a markdown table: a row per model and sigma."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}"

    heads = ["model", "sigma (mm)", "clean (base)", *[f"cert {r:g}" for r in radii],
             *[f"AA {r:g}" for r in attack_radii], *[f"ADMM {r:g}" for r in attack_radii]]  # fmt: skip
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for model, rows in results.items():
        for sigma, row in sorted(rows.items(), key=lambda kv: float(kv[0])):
            cert, aa, admm = row["certify"], row["autoattack_l2"], row["admm_within_l2"]
            cells = [model, sigma, pct(cert["clean_acc_base"]),
                     *[pct(cert["certified_acc"].get(f"{r:g}")) for r in radii],
                     *[pct(aa["robust_acc"].get(f"{r:g}")) for r in attack_radii],
                     *[pct(admm["robust_acc"].get(f"{r:g}")) for r in attack_radii]]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sigmas-mm", type=float, nargs="+", default=list(SIGMAS_MM))
    parser.add_argument("--radii-mm", type=float, nargs="+", default=list(RADII_MM),
                        help="radii of the certified accuracy (certify.py's radii_mm default)")  # fmt: skip
    parser.add_argument("--attack-radii-mm", type=float, nargs="+", default=list(ATTACK_RADII_MM),
                        help="AutoAttack's L2 balls and ADMM's L2 budgets (mm)")  # fmt: skip
    parser.add_argument("--n0", type=int, default=100, help="selection noise samples per clip")
    parser.add_argument("--n", type=int, default=1000, help="estimation noise samples per clip")
    parser.add_argument("--alpha", type=float, default=0.001, help="probability that a certificate is wrong")
    parser.add_argument("--certify-limit", type=int, default=None,
                        help="certify N test clips spread over the split (default: all)")  # fmt: skip
    parser.add_argument("--certify-batch", type=int, default=1000, help="noisy copies per forward pass")
    parser.add_argument("--autoattack-components", nargs="+", default=None, choices=COMPONENTS,
                        help="run AutoAttack's version=custom with these (default: version=standard)")  # fmt: skip
    parser.add_argument("--attack-limit", type=int, default=64, help="test clips attacked (spread)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_certify")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "certify_utd.json")
    parser.add_argument("train_overrides", nargs="*", help="extra train.py overrides for every training run")
    add_trainer_option(parser)
    args = parser.parse_args()
    use_trainer(args.trainer)
    results: dict = json.loads(args.out.read_text())["results"] if args.out.is_file() else {}
    for model in args.models:
        for sigma in args.sigmas_mm:
            results.setdefault(model, {})[f"{sigma:g}"] = measure(model, sigma, args)
            save_results(args.out, {
                "benchmark": "UTD-MHAD cross-subject: certified (randomized smoothing) vs empirical L2 robustness",
                "notes": [
                    "certified accuracy: the smoothed classifier g (Cohen et al. 2019) of the noise-trained last "
                    "checkpoint, n0/n/alpha below, on the test split (certify.num_clips; a limit spreads them)",
                    "autoattack_l2 and admm_within_l2: the BASE classifier f of the same checkpoint, not the "
                    "smoothed g, on attack_limit test clips spread over the split",
                    "admm_within_l2: ADMM (dynamic distance, attack=admm defaults) counted as fooling a clip only "
                    "if its perturbation's L2 norm is <= the radius (robust_accuracy_l2_le_<r in m>)",
                    "radii: L2 norm in mm over the valid entries of the windowed clip, for certificate and attacks",
                    "sgn: trained for 15 epochs (trainer.max_epochs=15), not its recipe's 100, to fit the machine",
                ],
                "settings": {"n0": args.n0, "n": args.n, "alpha": args.alpha, "radii_mm": args.radii_mm,
                             "attack_radii_mm": args.attack_radii_mm, "attack_limit": args.attack_limit,
                             "attack_subset": "spread", "train_overrides": {m: MODELS[m] for m in MODELS}},
                "results": results,
            })  # fmt: skip
    figure(results, args.out.with_suffix(".png"))
    print(table(results, args.radii_mm, args.attack_radii_mm))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
