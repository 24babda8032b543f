"""Does a change to the attack code change what ADMM finds? Runs ADMM at ``configs/attack/admm.yaml`` and at
``admm_strict``'s weights and thresholds on the first correctly classified UTD-MHAD test clips of each
checkpoint, with the ``lightning_skel`` of ``--code`` (a checkout, e.g. a ``git worktree`` of an earlier
commit), and saves every clip's adversarial example, label, success, gradient evaluations and distance; with two
saves it compares them clip by clip.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/admm_same.py --code /tmp/before --save runs/admm_same/before.pt \\
        --ckpt hcn=runs/bench_utd/utd_hcn/checkpoints/last.ckpt sgn=runs/bench_utd/utd_sgn/checkpoints/last.ckpt
    .venv/bin/python benchmarks/admm_same.py --code . --save runs/admm_same/after.pt --ckpt ...
    .venv/bin/python benchmarks/admm_same.py --compare runs/admm_same/before.pt runs/admm_same/after.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configs(code: Path) -> dict[str, dict]:
    """ADMMAttack's arguments for ``attack=admm`` and ``attack=admm_strict`` from ``code``'s configs (the
    strict one merged over admm.yaml, as Hydra's defaults list does). Read here, not with
    ``common.admm_kwargs``: the ``common`` this script imports is ``code``'s (so that the attack and its
    data are ``code``'s), and a checkout older than that helper has none."""
    from omegaconf import OmegaConf

    folder = code / "configs" / "attack"
    admm = OmegaConf.load(folder / "admm.yaml")
    strict = OmegaConf.load(folder / "admm_strict.yaml")
    out = {}
    for name, cfg in (
        ("admm", admm),
        ("admm_strict", OmegaConf.merge(admm, {k: v for k, v in strict.items() if k != "defaults"})),
    ):
        kwargs = OmegaConf.to_container(cfg)
        kwargs.pop("name"), kwargs.pop("targeted")
        out[name] = kwargs
    return out


def run(code: Path, ckpts: list[str], limit: int, save: Path) -> None:
    sys.path.insert(0, str(code.resolve()))
    sys.path.insert(0, str(code.resolve() / "benchmarks"))
    import torch

    import lightning_skel

    if not Path(lightning_skel.__file__).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"--code {code}: imported lightning_skel from {lightning_skel.__file__} instead")
    from common import correct_test_clips

    from lightning_skel.attacks import build_attack

    torch.set_num_threads(1)
    out = {}
    kwargs_of = configs(code)
    for spec in ckpts:
        name, ckpt = spec.split("=", 1)
        model, layout, x, y, lengths = correct_test_clips(ckpt, "cpu", limit)
        for config, kwargs in kwargs_of.items():
            res = build_attack("admm", model, layout, **kwargs)(x, y, lengths)
            out[f"{name}/{config}"] = {
                "x_adv": res.x_adv, "success": res.success, "grad_evals": res.grad_evals,
                "distance": res.extras["distance"], "pred_adv": res.pred_adv,
            }  # fmt: skip
            print(f"{name}/{config}: success {res.success.float().mean():.3f}", flush=True)
    save.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, save)


def compare(a_path: Path, b_path: Path) -> int:
    import torch

    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    differ = 0
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            print(f"{key}: only in {a_path if key in a else b_path}")
            differ += 1
            continue
        same = (a[key]["x_adv"] == b[key]["x_adv"]).flatten(1).all(1)
        fields = [k for k in ("success", "grad_evals", "distance", "pred_adv") if k in a[key] and k in b[key]]
        equal = {k: torch.equal(a[key][k], b[key][k]) for k in fields}
        print(
            f"{key}: {int(same.sum())}/{len(same)} clips bit-identical; "
            + ", ".join(f"{k} {'equal' if v else 'DIFFER'}" for k, v in equal.items())
        )
        differ += int(not same.all()) + sum(not v for v in equal.values())
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--ckpt", nargs="+", default=[], help="NAME=PATH of trained UTD classifiers")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not args.ckpt or args.save is None:
        parser.error("give --ckpt and --save, or --compare BEFORE AFTER")
    run(args.code, args.ckpt, args.limit, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
