"""ADMM's inner steps per outer step (``delta_steps``, ``z_steps``): success, evaluations, distances, cost.

METHOD's candidate check (one classifier forward per outer step) and the z block's arithmetic are paid once
per outer step, so more delta steps per outer step spread them over more gradient evaluations and lower the
issue's cost ratio. This measures what that does to the attack itself: the clips of a UTD checkpoint
(correctly classified test clips, the first ``--limit``) attacked with ``configs/attack/admm.yaml`` at each
``--steps`` pair, the pairs interleaved over ``--rounds``; per pair the wall time, success, gradient
evaluations per fooled clip, the dynamic metrics of the fooled clips, and the cost ratio (wall / (the
batch-equivalent gradient evaluations x one forward+backward of ``max_rows`` clips, timed before and after
each attack)).

    OMP_NUM_THREADS=1 python3 benchmarks/admm_inner_steps.py --ckpt runs/bench_utd/utd_hcn/checkpoints/last.ckpt \\
        --limit 128 --steps 5,5 10,5 10,10 --rounds 2 --out benchmarks/results/admm_inner_steps_hcn.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import admm_kwargs, correct_test_clips, fwd_bwd_timer, save_results, timed_attack

from lightning_skel.attacks import build_attack
from lightning_skel.attacks.metrics import attack_metrics

REPORTED = (
    "success_rate",
    "grad_evals",
    "rms_mm",
    "delta_bone",
    "delta_angle_deg",
    "delta_speed",
    "delta_acc_mm",
)


def steps_pair(text: str) -> tuple[int, int]:
    """``DELTA,Z``; their range is ADMM's to check (when the attacks are built, before any work)."""
    try:
        d, z = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--steps takes DELTA,Z pairs of integers, got {text!r}") from None
    return d, z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--rows", type=int, default=32, help="max_rows: the clips in flight")
    parser.add_argument("--steps", type=steps_pair, nargs="+", default=[(5, 5), (10, 5), (10, 10)])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model, layout, x, y, lengths = correct_test_clips(args.ckpt, "cpu", args.limit)
    # every pair's attack built (and its arguments checked) before any is timed
    base = {**admm_kwargs(), "max_rows": args.rows}
    attacks = {
        (d, z): build_attack("admm", model, layout, **base, delta_steps=d, z_steps=z) for d, z in args.steps
    }
    fwd_bwd = fwd_bwd_timer(model, x, args.rows)

    runs: dict[str, list[dict]] = {f"{d},{z}": [] for d, z in args.steps}
    for rnd in range(args.rounds):
        for (d, z), attack in attacks.items():
            res, rec, _ = timed_attack(attack, x, y, lengths, fwd_bwd, args.rows)
            metrics = attack_metrics(
                x, res.x_adv, lengths, layout, y, y, res.pred_adv, grad_evals=res.grad_evals
            )
            run = {k: rec[k] for k in ("wall_s", "fwd_bwd_s", "ratio")} | {k: metrics[k] for k in REPORTED}
            runs[f"{d},{z}"].append(run)
            print(f"round {rnd} delta_steps={d} z_steps={z}: " + ", ".join(f"{k} {v:.4g}" for k, v in run.items()),
                  flush=True)  # fmt: skip
    summary = {pair: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for pair, rs in runs.items()}
    save_results(args.out, {"ckpt": args.ckpt, "clips": len(y), "rows": args.rows, "threads": torch.get_num_threads(),
                            "median": summary, "runs": runs})  # fmt: skip


if __name__ == "__main__":
    main()
