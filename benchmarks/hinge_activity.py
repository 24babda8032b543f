"""How often each hinge of ADMM's distance is open in the z steps: the share of clips whose bone, angle and
speed terms have a non-zero gradient (what ``distances.active_rows`` selects), and the share of z steps in
which no clip's is, on the first correctly classified UTD-MHAD test clips of a checkpoint, with
``configs/attack/admm.yaml`` and with ``admm_strict``'s weights and thresholds (every hinge at 0).

Also how many of the z steps' clips a cheap bound would prove to have a closed angle hinge, which would let
the angle term skip their angles: each bone turns by at most ``asin(|b' - b| / |b|)`` (pi once
``|b' - b| >= |b|``), an angle between two bones changes by at most the sum of their turns, so the mean of
that sum over a clip's valid entries, if under tau, proves the hinge closed (``angle_bound_certified_share``;
``angle_bound_certified_but_open`` counts proofs that met an open hinge, which must be 0).

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
from lightning_skel.skeleton.layouts import get_layout


def triplet_bones(layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The bone index of each triplet's two bones (its parent side and its child side)."""
    spec = get_layout(layout)
    child, parent = spec.bone_index
    bone = {frozenset((int(a), int(b))): i for i, (a, b) in enumerate(zip(child, parent, strict=True))}
    p, j, c = spec.triplet_index
    pairs = [
        (bone[frozenset((int(a), int(m)))], bone[frozenset((int(b), int(m)))])
        for a, m, b in zip(p, j, c, strict=True)
    ]
    return torch.tensor([u for u, _ in pairs]), torch.tensor([v for _, v in pairs])


def bound_certifies(term, clean, adv, iu: torch.Tensor, iv: torch.Tensor) -> torch.Tensor:
    """``(N,)``: the clips whose angle hinge the rotation bound proves closed (1e-4 rad spared for rounding)."""
    ratio = (adv.bone_vectors - clean.bone_vectors).norm(dim=1) / clean.bone_lengths  # (N, T, B, M)
    turn = torch.where(ratio < 1, torch.asin(ratio.clamp(max=1)), torch.full_like(ratio, torch.pi))
    bound = turn[:, :, iu] + turn[:, :, iv]  # (N, T, K, M)
    mean = (bound * term.entry_weights(clean, bound, clean.frame_mask)).flatten(1).sum(1)
    return mean < term.tau - 1e-4


def measure(model, layout: str, x, y, lengths, variant: str) -> dict:
    """Per hinged term: the share of clips it left open over every z step, and the share of z steps in
    which it left none open; for the angle term also the share the rotation bound proves closed."""
    clips, steps = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0])
    certified = [0, 0]  # clips proved closed, of which open
    iu, iv = triplet_bones(layout)
    attack = build_attack("admm", model, layout, **admm_kwargs(variant))

    def counting(term: str):
        """The term's ``value_and_row_grad`` (called by the z steps only), counting its open clips."""
        method = type(attack.distance.terms[term]).value_and_row_grad

        def wrapped(self, clean, adv, *args):
            value, rows, g = method(self, clean, adv, *args)
            opened = value.shape[0] if rows is None else rows.numel()
            clips[term][0] += opened
            clips[term][1] += value.shape[0]
            steps[term][0] += int(opened == 0)
            steps[term][1] += 1
            if term == "angle":  # a proof of a closed hinge must never meet an open one: counted to check
                proved = bound_certifies(self, clean, adv, iu, iv)
                certified[0] += int(proved.sum())
                certified[1] += int((proved & (value > 0)).sum())
            return value, rows, g

        return wrapped

    with contextlib.ExitStack() as stack:
        for term in ("bone", "angle", "speed"):
            cls = type(attack.distance.terms[term])
            stack.enter_context(mock.patch.object(cls, "value_and_row_grad", counting(term)))
        attack(x, y, lengths)
    out = {
        t: {"open_clip_share": clips[t][0] / clips[t][1], "steps_with_none_open": steps[t][0] / steps[t][1]}
        for t in clips
    }
    out["angle"]["angle_bound_certified_share"] = certified[0] / clips["angle"][1]
    out["angle"]["angle_bound_certified_but_open"] = certified[1]
    return out


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
