"""``attack.py`` on each imported published model over the six real NTU RGB+D recordings, end to end.

For each of ST-GCN, 2s-AGCN, SGN, CTR-GCN and MS-G3D: the official ``state_dict`` of the fixtures
(shared/fixtures/official, README there) goes through ``lightning_skel.models.convert``; the six raw
``.skeleton`` files of shared/data/ntu60_samples are prepared with that repository's body selection
(``prepare ntu --pipeline``); ``attack.py`` then runs each listed attack on all six clips through the
checkpoint's own input pipeline, and the adversarial clips are checked against the prepared ones: padding
frames and absent persons bit-identical. The fixtures' weights are the official code's initialisation, not
trained ones (the released files cannot be downloaded here), so each clip is labelled as the imported
model labels it: every clip is then correctly classified and attacked.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/published_ntu_attack.py --models agcn --out benchmarks/results/published_ntu_attack_agcn.json

Runs go to ``runs/published_ntu/<model>/<attack>``; a finished run is read back on a rerun.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, attacked, save_results

import lightning_skel
from lightning_skel.data.io import load_npz, save_npz
from lightning_skel.data.prepare import prepare
from lightning_skel.models.convert import OFFICIAL_FORMATS, convert

SHARED = ROOT.parent / "shared"
MODELS = ("stgcn", "agcn", "sgn", "ctrgcn", "msg3d")
KEEP = ("success_rate", "grad_evals", "rms_mm_median", "linf_mm_median", "delta_bone_median",
        "delta_speed_median", "wall_time_s")  # fmt: skip


def imported(name: str, runs: Path) -> tuple[Path, Path]:
    """The project checkpoint of the fixture's official weights, and the six recordings prepared with the
    model's body selection, every clip in the test split and labelled by the imported model."""
    runs.mkdir(parents=True, exist_ok=True)
    ckpt, npz = runs / f"{name}.ckpt", runs / "ntu_six_relabelled.npz"
    if not ckpt.is_file():
        fx = torch.load(SHARED / "fixtures" / "official" / f"{name}.pt", weights_only=True)
        official = runs / f"{name}_official.pt"
        torch.save({"state_dict": fx["state_dict"]}, official)
        convert(name, official, ckpt, "ntu60_xsub")
        official.unlink()
    if not npz.is_file():
        pipeline = OFFICIAL_FORMATS[name].pipeline
        out = prepare("ntu", SHARED / "data" / "ntu60_samples", runs / f"ntu_{pipeline}.npz", split="xsub60",
                      progress=False, options={"pipeline": pipeline})  # fmt: skip
        data = load_npz(out.out)
        model = lightning_skel.load_classifier(ckpt)
        with torch.no_grad():
            pred = model(torch.from_numpy(data["x"]), torch.from_numpy(data["lengths"]).long()).argmax(1)
        # all six in the test split; the data module wants a training split too: the same six again
        n = len(pred)
        both = {
            k: np.concatenate([v, v]) for k, v in data.items() if isinstance(v, np.ndarray) and len(v) == n
        }
        both["y"] = np.concatenate([pred.numpy(), pred.numpy()])
        both["split"] = np.repeat(np.array(["test", "train"]), n)
        save_npz(npz, {**data, **both})
    return ckpt, npz


def untouched(run: Path) -> bool:
    """The adversarial clips of ``run`` keep every padding frame and absent person of the clean ones."""
    out = np.load(run / "adversarial.npz")
    x, x_adv, lengths = out["x_clean"], out["x"], out["lengths"]
    frames = np.arange(x.shape[2])[None, :] >= lengths[:, None]
    fixed = np.broadcast_to(frames[:, None, :, None, None], x.shape)
    fixed = fixed | np.broadcast_to((x == 0).all(axis=(1, 2, 3), keepdims=True), x.shape)
    return bool(fixed.any()) and bool((x_adv[fixed] == x[fixed]).all())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--attacks", nargs="+", default=["admm", "pgd"])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "published_ntu")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "published_ntu_attack.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: dict[str, dict] = {}
    for name in args.models:
        ckpt, npz = imported(name, args.runs / name)
        for attack in args.attacks:
            run = args.runs / name / attack
            start = time.perf_counter()
            m = attacked(run, [f"ckpt={ckpt}", f"data.path={npz}", "data.split=test", f"attack={attack}",
                               "threads=1", "batch_size=6"])  # fmt: skip
            rows.setdefault(name, {})[attack] = {
                **{k: m.get(k) for k in KEEP},
                "num_attacked": m["num_attacked"],
                "padding_and_absent_untouched": untouched(run),
                "frames": int(np.load(run / "adversarial.npz")["x"].shape[2]),
            }
            print(f"{name:<7} {attack:<5} success {m['success_rate']:.3f}  grad evals {m['grad_evals']:.1f}  "
                  f"rms {m['rms_mm_median']:.2f} mm  untouched {rows[name][attack]['padding_and_absent_untouched']}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        save_results(args.out, {"benchmark": "attack.py on imported official checkpoints, six NTU clips",
                                "results": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
