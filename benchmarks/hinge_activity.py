"""How often each hinge of ADMM's distance is open in the z steps: the share of clips whose bone, angle and
speed terms have a non-zero gradient (what ``distances.active_rows`` selects), and the share of z steps in
which no clip's is, on the first correctly classified UTD-MHAD test clips of a checkpoint, with
``configs/attack/admm.yaml`` and with ``admm_strict``'s weights and thresholds (every hinge at 0).

    .venv/bin/python benchmarks/hinge_activity.py --ckpt runs/bench_utd/utd_hcn/checkpoints/last.ckpt \\
        --out benchmarks/results/hinge_activity_hcn.json
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import defaultdict
from pathlib import Path
from unittest import mock

import torch
from common import admm_kwargs, correct_test_clips, save_results

from lightning_skel.attacks import build_attack


def measure(model, layout: str, x, y, lengths, variant: str) -> dict:
    """Per hinged term: the share of clips it left open over every z step, and the share of z steps in
    which it left none open."""
    clips, steps = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0])
    attack = build_attack("admm", model, layout, **admm_kwargs(variant))

    def counting(term: str):
        """The term's ``value_and_row_grad`` (called by the z steps only), counting its open clips."""
        method = type(attack.distance.terms[term]).value_and_row_grad

        def wrapped(self, clean, adv):
            value, rows, g = method(self, clean, adv)
            opened = value.shape[0] if rows is None else rows.numel()
            clips[term][0] += opened
            clips[term][1] += value.shape[0]
            steps[term][0] += int(opened == 0)
            steps[term][1] += 1
            return value, rows, g

        return wrapped

    with contextlib.ExitStack() as stack:
        for term in ("bone", "angle", "speed"):
            cls = type(attack.distance.terms[term])
            stack.enter_context(mock.patch.object(cls, "value_and_row_grad", counting(term)))
        attack(x, y, lengths)
    return {
        t: {"open_clip_share": clips[t][0] / clips[t][1], "steps_with_none_open": steps[t][0] / steps[t][1]}
        for t in clips
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, layout, x, y, lengths = correct_test_clips(args.ckpt, "cpu", args.limit)
    results = {}
    for variant in ("admm", "admm_strict"):
        results[variant] = measure(model, layout, x, y, lengths, variant)
        print(variant, results[variant], flush=True)
    if args.out:
        save_results(args.out, {"results": results, "clips": len(y)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
