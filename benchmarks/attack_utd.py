"""Attack benchmark on UTD-MHAD cross-subject test clips (issue: the ADMM attack).

For each trained classifier (checkpoints from benchmarks/train_utd.py) it runs attack.py's ``run_attack``
with ADMM at the project's defaults (``attack=admm``), at METHOD's plain defaults (``admm_method``) and
asking for exact preservation (``attack=admm_strict``), untargeted and targeted; with the emotion term,
exact and linearised (``emotion_every``); SMART and PGD; the ADMM ablation (each term switched off in
turn); and measures the cost per classifier gradient evaluation: the attack's wall time divided by
(grad_evals x the time of one classifier forward+backward on the same batch), both measured in this run.
Runs whose metrics.json exists are not repeated (a killed benchmark resumes).

    .venv/bin/python benchmarks/attack_utd.py --ckpt hcn=runs/bench_utd/utd_hcn/checkpoints/last.ckpt \
        [--emotion-ckpt runs/bench_emotion/fold0/checkpoints/last.ckpt] [--limit 64] [--only admm pgd]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from common import (
    ROOT,
    admm_kwargs,
    attacked,
    ckpt_override,
    correct_test_clips,
    fwd_bwd_timer,
    named_ckpts,
    save_results,
    synchronize,
    timed_attack,
)

TERMS = ("bone", "angle", "speed", "emotion")


def plan(emotion: bool) -> dict[str, list[str]]:
    runs = {
        "admm": ["attack=admm"],
        "admm_targeted": ["attack=admm", "attack.targeted=true"],
        "admm_method": [
            "attack=admm",
            "attack.patience=null",
            "attack.c_growth=1.0",
        ],  # METHOD's plain defaults
        "admm_strict": ["attack=admm_strict"],
        "admm_strict_targeted": ["attack=admm_strict", "attack.targeted=true"],
        "smart": ["attack=smart"],
        "smart_balanced": ["attack=smart_balanced"],
        "zheng2020": ["attack=zheng2020"],
        "pgd": ["attack=pgd"],
    }
    if emotion:
        runs["admm_emotion"] = ["attack=admm", "attack.weights.emotion=1.0"]
        runs["admm_emotion_linear"] = ["attack=admm", "attack.weights.emotion=1.0", "attack.emotion_every=5"]
    for term in TERMS:
        if term == "emotion" and not emotion:
            continue
        base = ["attack=admm"] + (["attack.weights.emotion=1.0"] if emotion else [])
        runs[f"admm_no_{term}"] = [*base, f"attack.weights.{term}=0.0"]
    return runs


def cost_ratios(
    ckpt: str,
    configs: dict[str, dict],
    emotion_ckpt: str | None,
    batch: int,
    repeats: int,
    device: str = "cpu",
    clips: int | None = None,
) -> dict:
    """Per ADMM configuration: wall time of the attack on ``clips`` correctly classified test clips streamed
    through ``batch`` rows (``max_rows``; ``clips = batch``: one batch attacked at once) divided by (the
    batch-equivalent number of classifier gradient evaluations, their sum over the clips / ``batch``, x one
    forward+backward of the classifier on ``batch`` clips). The classifier, the clips and the recognizer are
    loaded once; every repeat times the forward+backward (10 calls) right before and right after each
    attack and takes the mean of the two, so that both halves of a ratio see the same machine state (on
    this shared machine its speed drifts by 10-30 % within minutes), and the median of ``repeats`` ratios
    is reported (with every repeat's figures). ``ratio_in_run`` divides by the median full-batch gradient
    evaluation timed inside the attack instead (:func:`gradient_evaluations`; CPU only).
    ``ratio_per_call`` divides by (the classifier's gradient calls x one forward+backward on ``batch``
    clips): where a forward+backward costs the same for any number of rows (a GPU, launch-bound on these
    small classifiers), the calls on the rows left as the last runs drain cost a full one each but count
    as a fraction in ``ratio``; this one counts them whole, leaving the attack's own overhead.
    On a GPU every timing ends with a synchronisation, and the breakdown (CPU timers around asynchronous
    kernels) is not taken."""
    from lightning_skel.attacks import build_attack
    from lightning_skel.checkpoints import load_emotion

    dev = torch.device(device)

    clips = batch if clips is None else clips
    model, layout, x, y, lengths = correct_test_clips(ckpt, device, clips, max(512, 2 * clips))
    emotion = load_emotion(emotion_ckpt, layout).to(dev) if emotion_ckpt else None
    attacks = {
        name: build_attack("admm", model, layout, **{**kw, "max_rows": batch}, emotion_model=emotion if kw["weights"].get("emotion") else None)
        for name, kw in configs.items()
    }  # fmt: skip
    fwd_bwd = fwd_bwd_timer(model, x, batch, dev)

    runs: dict[str, list[dict]] = {name: [] for name in attacks}
    warmup: dict[str, float] = {}
    for name, attack in attacks.items():
        # warm-up: the first calls build the backends' kernels for every batch size (and compile the
        # compiled configurations' z steps: for a full batch, for any smaller one, and for one row, which
        # torch.compile specialises; its time is theirs)
        start = time.perf_counter()
        attack(x[:batch], y[:batch], lengths[:batch])
        attack(x[:1], y[:1], lengths[:1])
        synchronize(dev)
        warmup[name] = time.perf_counter() - start
    for _ in range(repeats):
        for name, attack in attacks.items():
            res, rec, seen = timed_attack(attack, x, y, lengths, fwd_bwd, batch, dev,
                                          around=gradient_evaluations(attack, batch, dev))  # fmt: skip
            wall, t_fb, evals = rec["wall_s"], rec["fwd_bwd_s"], rec["batch_equivalent_grad_evals"]
            in_run, calls = seen["full_batch_s"], seen["calls"]
            rec.update(gradient_calls=calls, ratio_per_call=wall / (calls * t_fb),
                       success_rate=float(res.success.float().mean()),
                       forward_passes=int(res.forward_evals.sum()))  # fmt: skip
            if in_run:
                t_in = statistics.median(in_run)
                rec.update(fwd_bwd_in_run_s=t_in, full_batch_grad_evals=len(in_run),
                           ratio_in_run=wall / (evals * t_in))  # fmt: skip
            runs[name].append(rec)
    breakdown = {
        name: cost_breakdown(attack, x, y, lengths, fwd_bwd(), batch) if dev.type == "cpu" else None
        for name, attack in attacks.items()
    }
    return {
        name: {
            "breakdown": breakdown[name],
            "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
            "ratio": statistics.median(r["ratio"] for r in rs),
            "ratio_in_run": statistics.median(r["ratio_in_run"] for r in rs)
            if "ratio_in_run" in rs[0]
            else None,
            "ratio_per_call": statistics.median(r["ratio_per_call"] for r in rs),
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "warmup_s": warmup[name],
            "fwd_bwd_s": statistics.median(r["fwd_bwd_s"] for r in rs),
            "batch_equivalent_grad_evals": statistics.median(r["batch_equivalent_grad_evals"] for r in rs),
            "batch": batch,
            "clips": len(y),
            "threads": torch.get_num_threads(),
            "repeats": rs,
        }
        for name, rs in runs.items()
    }


class _Calls:
    """``attack.model``, logging each forward pass in ``log`` as ``(rows, start, seconds, records_graph)``:
    with a graph, a gradient pass's; without, ADMM's eager confirmation of a compiled check. Every other
    attribute is the classifier's. Instrumenting this instead of the classifier's own ``forward`` leaves
    ADMM's candidate check untouched: it holds the classifier itself (compiled, with ``compile=True``, and
    patching the classifier would make torch.compile trace it again inside the timed run)."""

    def __init__(self, model) -> None:
        self._model, self.log = model, []

    def __call__(self, x, *args, **kwargs):
        start = time.perf_counter()
        out = self._model(x, *args, **kwargs)
        self.log.append((x.shape[0], start, time.perf_counter() - start, torch.is_grad_enabled()))
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


@contextlib.contextmanager
def gradient_evaluations(attack, batch: int, dev: torch.device):
    """Yields a dict that fills, while the block runs ``attack``, with the number of its classifier
    gradient evaluations (``calls``: the input gradients it takes) and, on a CPU, the time of each one on a
    full batch of ``batch`` clips (``full_batch_s``, from the forward pass to the input gradient): the
    ratio's denominator measured inside the attack itself, at the machine state the attack ran in (the
    forward+backward timed before and after an attack drifts by 10-30 % on this shared machine). Not timed
    on a GPU, where timing single evaluations would add synchronisations to the attack."""
    from unittest import mock

    seen: dict = {"calls": 0, "full_batch_s": []}
    input_grad = attack.input_grad
    calls = _Calls(attack.model) if dev.type == "cpu" else None

    def timed_grad(loss, inputs):
        g = input_grad(loss, inputs)
        seen["calls"] += 1
        if calls is not None:  # this gradient's forward pass is the last one logged
            rows, begun, _, graph = calls.log[-1]
            if graph and rows == batch:
                seen["full_batch_s"].append(time.perf_counter() - begun)
        return g

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(attack, "input_grad", timed_grad))
        if calls is not None:
            stack.enter_context(mock.patch.object(attack, "model", calls))
        yield seen


def cost_breakdown(attack, x, y, lengths, t_fb: float, batch: int) -> dict[str, float]:
    """Where one more (instrumented) run of ``attack`` spends its time, each part in units of the ratio's
    denominator (grad_evals x one forward+backward): the classifier's forward and backward inside the
    gradient evaluations, its forward-only candidate checks (with ``compile=True`` the compiled check and
    its eager confirmations), the distance's value and gradient in the z steps (with the exact emotion
    term, its recognizer's passes), the linearised emotion term's passes, the Adam steps, and the rest
    (bookkeeping, the candidates' distances, the rho and dual updates). With ``compile=True``: the compiled
    delta steps, z steps and candidates' distances, each timed whole."""
    from unittest import mock

    from lightning_skel.attacks.base import BatchAdam

    spent: dict[str, float] = dict.fromkeys(
        ("forward", "backward", "candidate_forward", "z_distance", "adam"), 0.0
    )

    def timed(key, fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[key] += time.perf_counter() - start
            return out

        return run

    calls = _Calls(attack.model)
    patches = [
        mock.patch.object(attack, "model", calls),
        mock.patch.object(attack, "input_grad", timed("backward", attack.input_grad)),
        mock.patch.object(attack, "_labels", timed("candidate_forward", attack._labels)),
    ]
    if attack.compile:
        # the compiled steps are timed whole (distance and Adam); patching what they call would change the
        # functions their graphs were compiled from and compile them again inside the timed run
        del spent["z_distance"], spent["adam"]
        names = {"_delta_step": "delta_steps_compiled", "_z_step": "z_steps_compiled",
                 "_candidate_distance": "candidate_distance_compiled"}  # fmt: skip
        spent.update(dict.fromkeys(names.values(), 0.0))
        compiled = attack._compiled
        patches.append(mock.patch.dict(compiled, {k: timed(v, compiled[k]) for k, v in names.items()}))
    else:
        patches += [
            mock.patch.object(
                attack.distance, "value_and_grad", timed("z_distance", attack.distance.value_and_grad)
            ),
            mock.patch.object(BatchAdam, "step", timed("adam", BatchAdam.step)),
        ]
    if attack.emotion_every > 1 and "emotion" in attack.distance.active:  # the linearised term's own passes
        spent["emotion_linearised"] = 0.0
        term = attack.distance.terms["emotion"]
        patches.append(
            mock.patch.object(term, "value_and_grad", timed("emotion_linearised", term.value_and_grad))
        )
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        start = time.perf_counter()
        res = attack(x, y, lengths)
        wall = time.perf_counter() - start
    spent["forward"] = sum(seconds for _, _, seconds, graph in calls.log if graph)
    unit = float(res.grad_evals.sum()) / batch * t_fb
    return {
        **{k: v / unit for k, v in spent.items()},
        "rest": (wall - sum(spent.values())) / unit,
        "total": wall / unit,
        "forward_passes": int(res.forward_evals.sum()),
        # the rows the eager classifier labelled for a compiled check (its only calls without a graph)
        "confirmed_rows": sum(rows for rows, _, _, graph in calls.log if not graph),
    }


def cost_configs(emotion: bool) -> dict[str, dict]:
    """The ADMM configurations whose cost is measured: configs/attack/admm.yaml, and with the emotion term,
    exact and linearised over each z block; each with ADMM's own steps run eagerly and, as
    ``<name>_compiled``, through torch.compile (``compile``)."""
    admm = admm_kwargs()
    configs = {"admm": admm}
    if emotion:
        with_e = {**admm, "weights": {**admm["weights"], "emotion": 1.0}}
        configs["admm_emotion"] = with_e
        configs["admm_emotion_linear"] = {**with_e, "emotion_every": with_e["z_steps"]}
    return {
        f"{name}{suffix}": {**kwargs, "compile": compiled}
        for name, kwargs in configs.items()
        for suffix, compiled in (("", False), ("_compiled", True))
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt",
        nargs="+",
        required=True,
        help="NAME=PATH of trained UTD classifiers; NAME=PATH,PATH attacks the sum of their scores "
        "(2s-AGCN's joint and bone streams)",
    )
    parser.add_argument("--emotion-ckpt", default=None)
    parser.add_argument("--limit", type=int, default=None, help="attack only the first N test clips")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--cost-clips",
        type=int,
        default=None,
        help="clips streamed through --batch-size rows in the cost measurement (default: one batch)",
    )
    parser.add_argument("--cost-repeats", type=int, default=5, help="repeats of the cost measurement")
    parser.add_argument("--device", default="cpu", help="the cost measurement's device (cpu, cuda)")
    parser.add_argument(
        "--cost-configs",
        nargs="+",
        default=None,
        help="measure the cost of these configurations only (admm, admm_emotion, admm_emotion_linear, "
        "each also as <name>_compiled); "
        "the others already in --out are kept",
    )
    parser.add_argument("--only", nargs="*", default=None, help="run only these entries of the plan")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_attack")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "attack_utd.json")
    parser.add_argument("overrides", nargs="*", help="extra attack.py overrides for every run")
    args = parser.parse_args()
    all_configs = cost_configs(args.emotion_ckpt is not None)
    unknown = sorted(set(args.cost_configs or ()) - set(all_configs))
    if unknown:
        parser.error(f"--cost-configs: unknown {unknown}; known here: {sorted(all_configs)}")
    ckpts = named_ckpts(parser, args.ckpt)
    results: dict = json.loads(args.out.read_text())["results"] if args.out.is_file() else {}
    for model_name, ckpt in ckpts.items():
        for run_name, overrides in plan(args.emotion_ckpt is not None).items():
            if args.only and run_name not in args.only:
                continue
            extra = [ckpt_override(ckpt), f"batch_size={args.batch_size}", *overrides, *args.overrides]
            if args.limit:
                extra += [f"limit={args.limit}", "subset=first"]  # the first N, as --limit says
            if args.emotion_ckpt:
                extra.append(f"emotion_ckpt={args.emotion_ckpt}")
            metrics = attacked(args.runs / model_name / run_name, extra)
            results.setdefault(model_name, {})[run_name] = {
                k: v for k, v in metrics.items() if isinstance(v, (int, float))
            }
            save_results(args.out, {"results": results})
        if args.only is None or "cost" in args.only:
            configs = {k: v for k, v in all_configs.items() if k in (args.cost_configs or all_configs)}
            cost = cost_ratios(
                ckpt,
                configs,
                args.emotion_ckpt,
                args.batch_size,
                args.cost_repeats,
                args.device,
                args.cost_clips,
            )
            results.setdefault(model_name, {}).setdefault("cost", {}).update(cost)
            save_results(args.out, {"results": results})
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
