"""Forward+backward time of the dynamic distance's kinematics: the project's forms against the direct ones,
and the distance's closed-form gradient against autograd's.

The attacks differentiate bone vectors and bone angles on every step. ``lightning_skel.skeleton.features``
computes bones and triplet bones as products with a +-1 difference matrix and the cross product component
by component; the direct forms index the joints (whose backward is a scatter-add) and call
``torch.linalg.cross``. Both are timed here side by side, alternating, on UTD-sized batches (kinect20,
T=64, 32 clips), with the whole ADMM distance (bone, angle and speed terms) on top of each. ADMM's z step
takes D's gradient from ``DynamicDistance.value_and_grad`` (closed forms); it is timed against autograd
through the same terms, on the full batch and on ``--small-batch`` clips (the few still attacked at the
end of a run).

    .venv/bin/python benchmarks/distance_grad.py [--batch 32] [--small-batch 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch
from common import ROOT, save_results, seconds_per_call

from lightning_skel.attacks.distances import DynamicDistance
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.layouts import get_layout


def direct_bone_vectors(x, layout):
    child, parent = F._indices(get_layout(layout).name, "bone_index", x.device)  # cached, as before
    return x[:, :, :, child] - x[:, :, :, parent]


def direct_triplet_bones(x, layout):
    p, j, c = F._indices(get_layout(layout).name, "triplet_index", x.device)
    return x[:, :, :, p] - x[:, :, :, j], x[:, :, :, c] - x[:, :, :, j]


def direct_cross_components(u, v):
    return torch.linalg.cross(u, v, dim=1).unbind(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--small-batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50, help="timed calls per repeat")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distance_grad.json")
    args = parser.parse_args()
    layout = get_layout("kinect20")
    gen = torch.Generator().manual_seed(0)
    rest = torch.as_tensor(layout.rest_array, dtype=torch.float32).T
    x = rest[None, :, None, :, None] + 0.02 * torch.randn(
        args.batch, 3, 64, layout.num_joints, 1, generator=gen
    )
    z = (0.003 * torch.randn(x.shape, generator=gen)).requires_grad_(True)
    mask = F.valid_mask(x)
    dist = DynamicDistance(layout)

    def distance_step() -> None:
        total, _ = dist(dist.kinematics(x, mask), dist.kinematics(x + z, mask))
        torch.autograd.grad(total.sum(), z)

    def bones_step() -> None:
        torch.autograd.grad(F.bone_vectors(x + z, layout).pow(2).sum(), z)

    def angles_step() -> None:
        torch.autograd.grad(F.bone_angles(x + z, layout).sum(), z)

    direct = (
        mock.patch.object(F, "bone_vectors", direct_bone_vectors),
        mock.patch.object(F, "triplet_bones", direct_triplet_bones),
        mock.patch.object(F, "cross_components", direct_cross_components),
    )
    cases = {"bones": bones_step, "angles": angles_step, "distance": distance_step}
    times: dict[str, dict[str, list[float]]] = {k: {"project": [], "direct": []} for k in cases}
    grads = {}
    for n in (args.batch, args.small_batch):
        clean = dist.reference(x[:n], mask[:n])
        zn = z.detach()[:n]

        def autograd_step(clean=clean, zn=zn) -> None:
            zz = zn.clone().requires_grad_(True)
            total, _ = dist(clean, dist.kinematics(x[: len(zz)] + zz, clean.mask))
            torch.autograd.grad(total.sum(), zz)

        def closed_form_step(clean=clean, zn=zn) -> None:
            dist.value_and_grad(clean, dist.kinematics(x[: len(zn)] + zn, clean.mask))

        grads[n] = {"autograd": autograd_step, "closed_form": closed_form_step}
    grad_times = {n: {k: [] for k in fns} for n, fns in grads.items()}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name]["project"].append(seconds_per_call(fn, args.calls))
            with direct[0], direct[1], direct[2]:
                times[name]["direct"].append(seconds_per_call(fn, args.calls))
        for n, fns in grads.items():
            for k, fn in fns.items():
                grad_times[n][k].append(seconds_per_call(fn, args.calls))
    results = {}
    for name, t in times.items():
        p, d = statistics.median(t["project"]), statistics.median(t["direct"])
        results[name] = {"project_ms": 1e3 * p, "direct_ms": 1e3 * d, "speedup": d / p}
        print(f"{name:<9} project {1e3 * p:6.2f} ms  direct {1e3 * d:6.2f} ms  speed-up {d / p:4.2f}x")
    for n, t in grad_times.items():
        a, c = statistics.median(t["autograd"]), statistics.median(t["closed_form"])
        results[f"distance_gradient_{n}_clips"] = {
            "autograd_ms": 1e3 * a,
            "closed_form_ms": 1e3 * c,
            "speedup": a / c,
        }
        print(
            f"D's gradient, {n} clips: autograd {1e3 * a:6.2f} ms  closed form {1e3 * c:6.2f} ms  speed-up {a / c:4.2f}x"
        )
    save_results(args.out, {"results": results, "batch": args.batch, "threads": torch.get_num_threads()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
