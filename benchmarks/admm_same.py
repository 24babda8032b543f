"""Does a change to the attack code change what ADMM finds? Runs ADMM at ``configs/attack/admm.yaml`` and at
``admm_strict``'s weights and thresholds on the first correctly classified UTD-MHAD test clips of each
checkpoint, with the ``lightning_skel`` of ``--code`` (a checkout, e.g. a ``git worktree`` of an earlier
commit), and saves every clip's adversarial example, label, success, evaluations and distance; with two
saves it compares them clip by clip.

``--dtype float64`` runs the classifiers and the clips in float64 (the classifiers' rounding then hides
nothing: a change that alters the attack's arithmetic shows). ``--configs`` picks the runs: ``admm`` and
``admm_strict`` (the default), and ``admm_emotion`` / ``admm_emotion_linear`` (admm.yaml with the emotion
term at weight 1, exact and linearised over the z block, ``emotion_every = z_steps``, against an untrained
``emotion`` recognizer from the model registry built with seed 0: the same weights in both checkouts),
``admm_compiled`` (admm.yaml with ``compile=True``) and ``admm_search`` (admm.yaml with three rounds of the
search over c, ``binary_search_steps=3``).

    git worktree add --detach /tmp/before HEAD~1
    .venv/bin/python benchmarks/admm_same.py --code /tmp/before --save runs/admm_same/before.pt \\
        --ckpt hcn=runs/bench_utd/utd_hcn/checkpoints/last.ckpt sgn=runs/bench_utd/utd_sgn/checkpoints/last.ckpt
    .venv/bin/python benchmarks/admm_same.py --code . --save runs/admm_same/after.pt --ckpt ...
    .venv/bin/python benchmarks/admm_same.py --compare runs/admm_same/before.pt runs/admm_same/after.pt \\
        [--out benchmarks/results/admm_same_NAME.txt]

(``--compare`` takes comma-separated lists of saves on each side, e.g. one save per checkpoint.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIGS = ("admm", "admm_strict", "admm_emotion", "admm_emotion_linear", "admm_compiled", "admm_search")
DTYPES = ("float32", "float64")
FIELDS = ("success", "grad_evals", "forward_evals", "iterations", "pred_adv", "distance")


def configs(code: Path, names: list[str]) -> dict[str, dict]:
    """ADMMAttack's arguments for each of ``names`` (:data:`CONFIGS`) from ``code``'s configs (the strict one
    merged over admm.yaml, as Hydra's defaults list does). Read here, not with ``common.admm_kwargs``: the
    ``common`` this script imports is ``code``'s (so that the attack and its data are ``code``'s), and a
    checkout older than that helper has none."""
    from omegaconf import OmegaConf

    folder = code / "configs" / "attack"
    admm = OmegaConf.to_container(OmegaConf.load(folder / "admm.yaml"))
    strict = OmegaConf.to_container(OmegaConf.load(folder / "admm_strict.yaml"))
    admm.pop("name"), admm.pop("targeted")
    emotion = {**admm, "weights": {**admm["weights"], "emotion": 1.0}}
    every = {
        "admm": admm,
        "admm_strict": OmegaConf.to_container(
            OmegaConf.merge(admm, {k: v for k, v in strict.items() if k != "defaults"})
        ),
        "admm_emotion": emotion,
        "admm_emotion_linear": {**emotion, "emotion_every": admm["z_steps"]},
        "admm_compiled": {**admm, "compile": True},
        "admm_search": {**admm, "binary_search_steps": 3},
    }
    return {name: every[name] for name in names}


def recognizer(layout: str, dtype):
    """An untrained ``emotion`` model from the registry (slim: 16 channels, temporal kernel 9), seed 0."""
    import torch

    from lightning_skel.models import build_model

    torch.manual_seed(0)
    model = build_model("emotion", 4, layout, num_persons=1, channels=16, temporal_kernel=9)
    return model.to(dtype).eval()


def run(code: Path, ckpts: list[str], limit: int, save: Path, names: list[str], dtype: str) -> None:
    sys.path.insert(0, str(code.resolve()))
    sys.path.insert(0, str(code.resolve() / "benchmarks"))
    import torch

    import lightning_skel

    if not Path(lightning_skel.__file__).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"--code {code}: imported lightning_skel from {lightning_skel.__file__} instead")
    from common import correct_test_clips

    from lightning_skel.attacks import build_attack

    torch.set_num_threads(1)
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "dtype": dtype, "runs": {}}
    kwargs_of = configs(code, names)
    for spec in ckpts:
        name, ckpt = spec.split("=", 1)
        model, layout, x, y, lengths = correct_test_clips(ckpt, "cpu", limit)
        model, x = model.to(getattr(torch, dtype)), x.to(getattr(torch, dtype))
        for config, kwargs in kwargs_of.items():
            if kwargs["weights"].get("emotion"):
                kwargs = {**kwargs, "emotion_model": recognizer(layout, x.dtype)}
            res = build_attack("admm", model, layout, **kwargs)(x, y, lengths)
            out["runs"][f"{name}/{config}"] = {
                "x_adv": res.x_adv, "distance": res.extras["distance"],
                **{k: getattr(res, k) for k in FIELDS if k != "distance"},
            }  # fmt: skip
            print(f"{name}/{config}: success {res.success.float().mean():.3f}", flush=True)
    save.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, save)


def load(paths: str) -> dict:
    """The saves ``paths`` (comma-separated) as one: their commands, dtypes and runs together."""
    import torch

    saves = [torch.load(p, weights_only=True) for p in paths.split(",")]
    runs = {k: v for save in saves for k, v in save["runs"].items()}
    return {
        "commands": [s["command"] for s in saves],
        "dtypes": sorted({s["dtype"] for s in saves}),
        "runs": runs,
    }


def compare(a_paths: str, b_paths: str, out: Path | None = None) -> int:
    """Print (and with ``out`` write) a table of the runs of the saves ``a_paths`` against those of
    ``b_paths`` (each comma-separated), clip by clip; 1 if any differ."""
    import torch

    a, b = load(a_paths), load(b_paths)
    lines = [*(f"# before: {c}" for c in a["commands"]), *(f"# after: {c}" for c in b["commands"]),
             f"# compare: {' '.join([Path(sys.executable).name, *sys.argv])}",
             f"# dtype: before {', '.join(a['dtypes'])}, after {', '.join(b['dtypes'])}", "",
             "| run | clips | x_adv bit-identical | " + " | ".join(FIELDS) + " |",
             "|---|---|---|" + "---|" * len(FIELDS)]  # fmt: skip
    differ = 0
    for key in sorted(set(a["runs"]) | set(b["runs"])):
        if key not in a["runs"] or key not in b["runs"]:
            lines.append(f"| {key} | only {'before' if key in a['runs'] else 'after'} |")
            differ += 1
            continue
        ra, rb = a["runs"][key], b["runs"][key]
        same = (ra["x_adv"] == rb["x_adv"]).flatten(1).all(1)
        equal = {k: torch.equal(ra[k], rb[k]) for k in FIELDS}
        cells = " | ".join("equal" if v else "DIFFER" for v in equal.values())
        lines.append(f"| {key} | {len(same)} | {int(same.sum())}/{len(same)} | {cells} |")
        differ += int(not same.all()) + sum(not v for v in equal.values())
    lines += ["", "every run bit-identical" if not differ else f"{differ} difference(s)"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--ckpt", nargs="+", default=[], help="NAME=PATH of trained UTD classifiers")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["admm", "admm_strict"])
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="of the classifiers and clips")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="saves, each comma-separated")
    parser.add_argument("--out", type=Path, help="with --compare: also write the table here")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare, args.out)
    if not args.ckpt or args.save is None:
        parser.error("give --ckpt and --save, or --compare BEFORE AFTER")
    run(args.code, args.ckpt, args.limit, args.save, args.configs, args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
