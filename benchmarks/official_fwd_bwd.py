"""Forward+backward to the input of each imported published model against its official code, side by side:
the same fixture weights and input on both sides (shared/fixtures/official, README there), eval mode, the
gradient of the sum of the logits with respect to the input (what an attack computes), one thread, timed
interleaved (official, project, project, official, ...) so that both see the same machine state; per
case the median seconds of each side and the median and interquartile range of the per-pair ratio
project / official.

The official code is not part of the project: export each repository's model files outside the checkout
(the commits of the fixture README), e.g. for ST-GCN

    git --git-dir=<mirror of yysijie/st-gcn> archive HEAD net | tar -x -C /tmp/official/stgcn

(2s-AGCN: model graph; CTR-GCN: model graph; MS-G3D: model graph utils.py; SGN: model.py, under
/tmp/official/{agcn,ctrgcn,msg3d,sgn}; a mirror without its large blobs reports them missing, and the
model files still come through). The script copies them to a temporary folder and applies the
fixture README's device patches there (``.cuda(...)`` dropped, ``graph/__init__`` without the kinetics
and ucla graphs), then

    PYTHONPATH=$PWD .venv/bin/python benchmarks/official_fwd_bwd.py --official-root /tmp/official

``--profile MODEL`` prints torch.profiler's self time per op of both sides instead, side by side (nothing
is written).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from common import ROOT, save_results

from lightning_skel.models import build_model
from lightning_skel.models.convert import build_official

FIXTURES = ROOT.parent / "shared" / "fixtures" / "official"
MODELS = ("stgcn", "agcn", "ctrgcn", "msg3d", "sgn")
BATCHES = {"stgcn": (1, 3), "agcn": (1, 3), "ctrgcn": (1, 3), "msg3d": (1, 3), "sgn": (1, 3, 32)}
# The top-level packages the official repositories import from (each its own, under the same names).
PACKAGES = ("net", "model", "graph", "utils")
# The fixture README's device patches: (file, text, replacement); each text must occur in the file.
PATCHES = {
    "stgcn": [],
    "agcn": [
        ("model/agcn.py", "self.A.cuda(x.get_device())", "self.A.to(x.device)"),
        ("graph/__init__.py", "from . import kinetics", ""),
    ],
    "ctrgcn": [
        ("model/ctrgcn.py", "self.A.cuda(x.get_device())", "self.A.to(x.device)"),  # adaptive=False only
        ("graph/__init__.py", "from . import ucla", ""),
    ],
    "msg3d": [("graph/__init__.py", "from . import kinetics", "")],
    "sgn": [("model.py", ".cuda()", "")],
}
# float64 (logit, input gradient) tolerances relative to the largest magnitude, where not 1e-9: MS-G3D's
# official graph constants (float32 from numpy's float64 matmuls) differ here from those the fixture was
# made with, and the project builds, by an ulp in some entries: 1.4e-8 relative in the logits, and one
# clip's gradient moves past a kink (4e-4 relative). With the project's constants copied into the official
# model both agree to 1e-16.
FLOAT64_TOL = {"msg3d": (1e-7, 1e-3)}
# The graph buffers the official state_dicts do not hold (tests/test_official_models.py).
GRAPH_BUFFERS = {"ctrgcn": ".gcn1.A", "msg3d": ".A_binary"}


def official_model(root: Path, name: str, fixture: dict, batch: int) -> torch.nn.Module:
    """The official network of ``name`` (the fixture's class and constructor arguments) built from a
    patched copy of ``root/name``, the fixture's state_dict loaded strictly, in eval mode. SGN is built
    for ``batch`` (its one-hot inputs have a fixed batch size)."""
    src = root / name
    if not src.is_dir():
        raise SystemExit(f"{src}: no export of the official {name} code (see the docstring)")
    meta = fixture["meta"]
    tmp = Path(tempfile.mkdtemp(prefix=f"official_{name}_"))
    try:
        shutil.copytree(src, tmp / name)
        for rel, old, new in PATCHES[name]:
            path = tmp / name / rel
            text = path.read_text()
            if old not in text:
                raise SystemExit(
                    f"{path}: patch target {old!r} not found (another commit than the fixture's?)"
                )
            path.write_text(text.replace(old, new))
        module, _, cls = meta["class"].rpartition(".")
        _forget_packages()
        sys.path.insert(0, str(tmp / name))
        try:
            kwargs = dict(meta["constructor_kwargs"])
            if name == "sgn":
                kwargs["args"] = SimpleNamespace(batch_size=batch, train=1)
            net = getattr(importlib.import_module(module), cls)(**kwargs)
        finally:
            sys.path.remove(str(tmp / name))
            _forget_packages()  # the next repository has packages of the same names
    finally:
        shutil.rmtree(tmp)
    net.load_state_dict(fixture["state_dict"], strict=True)
    return net.eval()


def _forget_packages() -> None:
    for key in [k for k in sys.modules if k.split(".")[0] in PACKAGES]:
        del sys.modules[key]


def project_model(name: str, fixture: dict) -> torch.nn.Module:
    """The project's network holding the fixture's state_dict, in eval mode: the import's mapping for
    ST-GCN, 2s-AGCN and SGN (``build_official``); CTR-GCN and MS-G3D take the official keys as they are."""
    if name in ("stgcn", "agcn", "sgn"):
        return build_official(name, fixture["state_dict"])[0]
    net = build_model(name, 60, "ntu25", in_channels=3, num_persons=2, graph="official_ntu")
    result = net.load_state_dict(fixture["state_dict"], strict=False)
    graph = {k for k in net.state_dict() if k.endswith(GRAPH_BUFFERS[name])}
    if result.unexpected_keys or set(result.missing_keys) != graph:
        raise SystemExit(f"{name}: state_dict mismatch {result}")
    return net.eval()


def official_input(name: str, fixture: dict, batch: int) -> torch.Tensor:
    """``batch`` clips in the official layout: the fixture's first ones; SGN's 32 are its 15 test-time
    samplings repeated."""
    x = fixture["input"] if batch <= len(fixture["input"]) else fixture["input_test5"]
    return x.repeat((batch + len(x) - 1) // len(x), *[1] * (x.dim() - 1))[:batch].contiguous()


def to_project(name: str, x: torch.Tensor) -> torch.Tensor:
    """The project's input for the official one: SGN's ``(N, seg, 75)`` rows as ``(N, 3, seg, 25, 1)``."""
    if name != "sgn":
        return x.clone()
    return x.view(*x.shape[:2], 25, 3).permute(0, 3, 1, 2).unsqueeze(-1).contiguous()


def to_official_grad(name: str, g: torch.Tensor) -> torch.Tensor:
    return g if name != "sgn" else g.squeeze(-1).permute(0, 2, 3, 1).flatten(2)


def fwd_bwd(net: torch.nn.Module, x: torch.Tensor):
    """One timed unit: the logits and the gradient of their sum with respect to ``x``."""
    xx = x.detach().requires_grad_(True)
    logits = net(xx)
    (grad,) = torch.autograd.grad(logits.sum(), xx)
    return logits.detach(), grad


def check_same(name: str, batch: int, fixture: dict, official, project, x_off, x_proj) -> dict:
    """Both sides' float32 logits within 1e-4 x max|logit| (and the official's within that of the
    fixture's, for its own clips); in float64 their logits and input gradients within :data:`FLOAT64_TOL`
    x their largest magnitude. Fails loudly otherwise.

    float32 input gradients of these deep ReLU networks differ from float64 by up to 1 % of max|grad| on
    either side, so only float64 tells the two functions apart. The gradients are compared on the persons
    present: on an all-zero person every frame is the same, so the max-pooling branch of CTR-GCN's
    temporal convolution sees exact ties, and which frame takes the gradient depends on the rounding of
    the layers before (both are subgradients; that difference is recorded, not checked)."""
    lo, go = fwd_bwd(official, x_off)
    lp, gp = fwd_bwd(project, x_proj)
    gp = to_official_grad(name, gp)
    scale = float(lo.abs().max())
    rec = {"max_abs_logit": scale, "logit_diff": float((lp - lo).abs().max()),
           "max_abs_grad": float(go.abs().max()), "grad_diff_float32": float((gp - go).abs().max())}  # fmt: skip
    if batch <= len(fixture["input"]):
        rec["official_vs_fixture"] = float((lo - fixture["logits"][:batch]).abs().max())
        if not rec["official_vs_fixture"] <= 1e-4 * scale:
            raise SystemExit(f"{name} b{batch}: the official code does not reproduce the fixture: {rec}")
    if not rec["logit_diff"] <= 1e-4 * scale:
        raise SystemExit(f"{name} b{batch}: project and official logits differ: {rec}")
    o64, p64 = copy.deepcopy(official).double(), copy.deepcopy(project).double()
    if name == "sgn":  # plain attributes, not converted by .double()
        o64.spa, o64.tem = o64.spa.double(), o64.tem.double()
    lo, go = fwd_bwd(o64, x_off.double())
    lp, gp = fwd_bwd(p64, x_proj.double())
    gp = to_official_grad(name, gp)
    rec["logit_diff_float64"] = float((lp - lo).abs().max())
    diff = (gp - go).abs()
    if x_off.dim() == 5:  # (N, C, T, V, M): the persons that are all zero apart
        absent = (x_off == 0).flatten(1, 3).all(1)  # (N, M)
        per_person = diff.permute(0, 4, 1, 2, 3)[:, :, None]  # (N, M, 1, C, T, V)
        if absent.any():
            rec["grad_diff_float64_absent_persons"] = float(per_person[absent].max())
        diff = per_person[~absent]
    rec["grad_diff_float64"] = float(diff.max())
    tol_logit, tol_grad = FLOAT64_TOL.get(name, (1e-9, 1e-9))
    if not (
        rec["logit_diff_float64"] <= tol_logit * lo.abs().max()
        and rec["grad_diff_float64"] <= tol_grad * go.abs().max()
    ):
        raise SystemExit(f"{name} b{batch}: project and official differ in float64: {rec}")
    return rec


def time_calls(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def quartiles(v: list[float]) -> tuple[float, float, float]:
    if len(v) < 2:
        return v[0], v[0], v[0]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


def bench_case(official, project, x_off, x_proj, seconds: float, min_pairs: int, max_pairs: int,
               sample_s: float) -> dict:  # fmt: skip
    """Interleaved pairs (the order alternating, ABBA) until ``seconds`` have passed (at least
    ``min_pairs``, at most ``max_pairs``); each sample is the mean of ``calls`` calls, ``calls`` chosen so
    that a sample takes about ``sample_s``."""

    def run_official():
        return fwd_bwd(official, x_off)

    def run_project():
        return fwd_bwd(project, x_proj)

    est = time_calls(run_official, 1) + time_calls(run_project, 1)  # also the warm-up
    est = min(est, time_calls(run_official, 1) + time_calls(run_project, 1)) / 2
    calls = max(1, round(sample_s / est))
    t_off, t_proj = [], []
    start = time.perf_counter()
    while len(t_off) < max_pairs and (len(t_off) < min_pairs or time.perf_counter() - start < seconds):
        if len(t_off) % 2 == 0:
            t_off.append(time_calls(run_official, calls))
            t_proj.append(time_calls(run_project, calls))
        else:
            t_proj.append(time_calls(run_project, calls))
            t_off.append(time_calls(run_official, calls))
    ratios = [p / o for p, o in zip(t_proj, t_off, strict=True)]
    q1, med, q3 = quartiles(ratios)
    return {
        "official_s": statistics.median(t_off),
        "project_s": statistics.median(t_proj),
        "ratio": med,
        "ratio_q1": q1,
        "ratio_q3": q3,
        "ratio_of_medians": statistics.median(t_proj) / statistics.median(t_off),
        "pairs": len(ratios),
        "calls_per_sample": calls,
        "wall_s": time.perf_counter() - start,
        "official_samples_s": t_off,
        "project_samples_s": t_proj,
    }


def profile(name: str, official, project, x_off, x_proj, rows: int, repeats: int) -> None:
    """torch.profiler's self CPU time per op of both sides, ``repeats`` profiled calls each, interleaved:
    a table of ms per call, official, project and the difference, the largest differences first."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sides = {"official": (official, x_off), "project": (project, x_proj)}
    totals: dict[str, dict[str, list[float]]] = {side: {} for side in sides}  # op: [ms, calls]
    for net, x in sides.values():
        fwd_bwd(net, x)
    for i in range(repeats):
        for side in sides if i % 2 == 0 else reversed(sides):
            net, x = sides[side]
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                fwd_bwd(net, x)
            for e in prof.key_averages():
                t = totals[side].setdefault(e.key, [0.0, 0])
                t[0] += e.self_cpu_time_total / 1e3 / repeats
                t[1] += e.count / repeats
    ops = set(totals["official"]) | set(totals["project"])
    zero = [0.0, 0]

    def diff(op: str) -> float:
        return totals["project"].get(op, zero)[0] - totals["official"].get(op, zero)[0]

    print(f"==== {name} batch {len(x_off)}: self CPU ms per call (calls per call), mean of {repeats}")
    print(f"{'op':58s} {'official':>16s} {'project':>16s} {'diff':>9s}")
    for side in sides:
        totals[side]["TOTAL"] = [sum(v[0] for v in totals[side].values()), 0]
    for op in ["TOTAL", *sorted(ops, key=lambda o: -abs(diff(o)))[:rows]]:
        o, q = totals["official"].get(op, zero), totals["project"].get(op, zero)
        print(f"{op[:58]:58s} {o[0]:9.1f} ({o[1]:4.0f}) {q[0]:9.1f} ({q[1]:4.0f}) {diff(op):+9.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-root", type=Path, default=Path("/tmp/official"),
                        help="the exported official code, one folder per model (stgcn agcn ctrgcn msg3d sgn)")  # fmt: skip
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default: 1 3 (SGN also 32)")
    parser.add_argument("--seconds", type=float, default=35.0, help="timing per case (model, batch)")
    parser.add_argument("--min-pairs", type=int, default=6)
    parser.add_argument("--max-pairs", type=int, default=100)
    parser.add_argument("--sample-s", type=float, default=0.25, help="about how long one sample runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", choices=MODELS, default=None, help="print the profiler table of MODEL")
    parser.add_argument("--profile-batch", type=int, default=3)
    parser.add_argument("--profile-repeats", type=int, default=6, help="profiled calls of each side")
    parser.add_argument("--rows", type=int, default=25, help="rows of the profiler table")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "official_fwd_bwd.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.profile:
        fx = torch.load(args.fixtures / f"{args.profile}.pt", weights_only=True)
        b = args.profile_batch
        official = official_model(args.official_root, args.profile, fx, b)
        project = project_model(args.profile, fx)
        for p in (*official.parameters(), *project.parameters()):
            p.requires_grad_(False)
        x = official_input(args.profile, fx, b)
        check_same(args.profile, b, fx, official, project, x, to_project(args.profile, x))
        profile(
            args.profile, official, project, x, to_project(args.profile, x), args.rows, args.profile_repeats
        )
        return 0

    results, checks, start = [], {}, time.perf_counter()
    for name in args.models:
        fx = torch.load(args.fixtures / f"{name}.pt", weights_only=True)
        project = project_model(name, fx)
        for batch in args.batches or BATCHES[name]:
            official = official_model(args.official_root, name, fx, batch)
            # an attack differentiates to the input only: no parameter gradients on either side
            for p in (*official.parameters(), *project.parameters()):
                p.requires_grad_(False)
            x_off = official_input(name, fx, batch)
            x_proj = to_project(name, x_off)
            checks[f"{name}_b{batch}"] = check_same(name, batch, fx, official, project, x_off, x_proj)
            rec = {"model": name, "batch": batch, "input_shape": list(x_off.shape),
                   "loadavg_1min_before": os.getloadavg()[0],
                   **bench_case(official, project, x_off, x_proj, args.seconds, args.min_pairs,
                                args.max_pairs, args.sample_s)}  # fmt: skip
            rec["loadavg_1min_after"] = os.getloadavg()[0]
            results.append(rec)
            print(f"{name:7s} b{batch:<3d} official {1e3 * rec['official_s']:9.2f} ms  project "
                  f"{1e3 * rec['project_s']:9.2f} ms  ratio {rec['ratio']:.3f} "
                  f"[{rec['ratio_q1']:.3f}, {rec['ratio_q3']:.3f}]  ({rec['pairs']} pairs x "
                  f"{rec['calls_per_sample']} calls)", flush=True)  # fmt: skip

    meta = {name: {k: torch.load(args.fixtures / f"{name}.pt", weights_only=True)["meta"][k]
                   for k in ("repo", "commit", "class", "constructor_kwargs")} for name in args.models}  # fmt: skip
    save_results(args.out, {
        "what": "forward+backward to the input (sum of logits), eval mode, fixture weights and input, "
                "no parameter gradients; ratio = project / official per interleaved pair (median, "
                "quartiles)",
        "threads": args.threads,
        "seconds_per_case": args.seconds,
        "min_pairs": args.min_pairs,
        "sample_s": args.sample_s,
        "total_wall_s": time.perf_counter() - start,
        "official": meta,
        "patches": {k: [f"{f}: {o!r} -> {n!r}" for f, o, n in v] for k, v in PATCHES.items()},
        "checks": checks,
        "results": results,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
