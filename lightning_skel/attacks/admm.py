"""The ADMM attack with the dynamic distance (docs/METHOD.md section 3).

Liu, Xu, Zheng, "Emotion Loss Attacking: Adversarial Attack Perception for Skeleton based on
Multi-dimensional Features" (arXiv 2406.19815), on the ADMM framework of Zhao et al. 2018 and the bone /
angle / speed constraints of Zheng et al. (arXiv 2005.07151). Finds ``x' = x + delta`` that the classifier
gets wrong (or labels as a target) with the smallest dynamic distance ``D(x, x')``:

    delta <- argmin c * L_cls(x + delta) + rho/2 |delta - z + u|^2      (I_delta Adam steps, warm start)
    z     <- argmin D(x, x + z)          + rho/2 |delta - z + u|^2      (I_z Adam steps, warm start)
    u     <- u + delta - z

The candidate after each outer step is ``x + z``; per sample the successful candidate with the smallest D
is kept, and a sample stops once it has one whose hinge terms are all zero, or (with ``patience``) once it
has been fooled and its best D has not fallen by more than ``min_improvement`` (relative) for ``patience``
outer steps: the hinges of a fooling candidate are often not all reachable, and without this a fooled
sample spends every remaining step polishing D. ``rho`` follows residual
balancing (Boyd et al. 2011, section 3.4.1). ``c`` is fixed, grows for samples not yet fooled
(``c_growth``), or is searched per sample over ``binary_search_steps`` rounds as in C&W.

The emotion term needs the emotion recognizer's forward and backward on every z step, which can cost more
than the classifier's. ``emotion_every = k > 1`` linearises it: its gradient is recomputed every k z steps
and reused in between, and the one that starts a z block is taken where the previous candidate was scored
(that candidate is where the block starts), so ``k = z_steps`` runs the recognizer once per outer step
instead of ``z_steps + 1`` times. A stale gradient can overshoot when the emotion weight dominates D.

Shapes: ``x (N, C, T, V, M)``; every per-sample quantity ``(N,)``. Only the samples still being attacked go
through the networks, at most ``max_rows`` at a time (``"auto"``: by device, :meth:`ADMMAttack.rows_for`):
a call with more samples streams them, each finished sample's row going to the next waiting one, so the
networks see full batches until the last runs drain (on one CPU thread this took HCN's cost per gradient
evaluation from 1.31 to 1.25, docs/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    BatchAdam,
    append_rows,
    is_success,
    margin_loss,
)
from lightning_skel.attacks.distances import DynamicDistance
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params


def _norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1)


COMPILED = ("_delta_step", "_z_step", "_candidate_distance")  # the arithmetic ``compile=True`` compiles
# A compiled candidate check's label is confirmed by the classifier itself (eager) where the check's two top
# logits are closer than this, relative to 1 + |top logit|: compiled and eager logits differ by rounding
# only (HCN, SGN and 2s-AGCN on UTD-MHAD on a CPU: at most 1.6e-6 relative, 6 000 times under this,
# benchmarks/check_rounding.py; a GPU's TF32 convolutions round at about 1e-3 relative, not measured
# here), so a label whose gap is wider is the eager label. On HCN 1-2 % of the checked clips are confirmed
# (docs/RESULTS.md, "compiled check").
CHECK_TOLERANCE = 1e-2
AUTO_ROWS = {"cpu": 32, "cuda": 256}  # max_rows="auto" by device type (other accelerators: as CUDA)


@ATTACKS.register("admm")
class ADMMAttack(Attack):
    name = "admm"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        emotion_model: nn.Module | None = None,
        weights: Mapping[str, float] | None = None,
        tau: Mapping[str, float] | None = None,
        hinge: str = "mean",
        c: float = 1.0,
        c_growth: float = 1.0,
        c_max: float = 1e4,
        binary_search_steps: int = 1,
        kappa: float = 1.0,
        rho: float = 1.0,
        lr: float = 1e-3,
        lr_z: float | None = None,
        max_iter: int = 100,
        delta_steps: int = 5,
        z_steps: int = 5,
        balance: float = 10.0,
        early_stop: bool = True,
        patience: int | None = None,
        min_improvement: float = 0.01,
        emotion_every: int = 1,
        max_rows: int | str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(model, layout, targeted)
        rules = {
            "c": (c, c > 0, "> 0"),
            "c_growth": (c_growth, c_growth >= 1, ">= 1"),
            "binary_search_steps": (binary_search_steps, binary_search_steps >= 1, ">= 1"),
            "kappa": (kappa, kappa >= 0, ">= 0"),
            "rho": (rho, rho > 0, "> 0"),
            "lr": (lr, lr > 0, "> 0"),
            "max_iter": (max_iter, max_iter >= 1, ">= 1"),
            "delta_steps": (delta_steps, delta_steps >= 1, ">= 1"),
            "z_steps": (z_steps, z_steps >= 1, ">= 1"),
            "balance": (balance, balance > 1, "> 1"),
            "patience": (patience, patience is None or patience >= 1, ">= 1 or null"),
            "min_improvement": (min_improvement, min_improvement >= 0, ">= 0"),
            "emotion_every": (emotion_every, emotion_every >= 1, ">= 1"),
            "compile": (compile, isinstance(compile, bool), "true or false"),
            "early_stop": (early_stop, isinstance(early_stop, bool), "true or false"),
            "max_rows": (
                max_rows,
                max_rows is None or max_rows == "auto" or (not isinstance(max_rows, str) and max_rows >= 1),
                ">= 1, 'auto' or null",
            ),
        }
        check_params("admm", rules, "hyper-parameter(s)")
        self.distance = DynamicDistance(self.layout, weights, tau, emotion_model, hinge)
        self.c, self.c_growth, self.c_max = float(c), float(c_growth), float(c_max)
        self.binary_search_steps = int(binary_search_steps)
        self.kappa, self.rho0 = float(kappa), float(rho)
        self.lr, self.lr_z = float(lr), float(lr_z if lr_z is not None else lr)
        self.max_iter, self.delta_steps, self.z_steps = int(max_iter), int(delta_steps), int(z_steps)
        self.balance, self.early_stop = float(balance), early_stop
        self.patience, self.min_improvement = patience, float(min_improvement)
        self.emotion_every = int(emotion_every)
        self.max_rows = max_rows if max_rows in (None, "auto") else int(max_rows)
        self.compile = compile
        # the candidates' forward-only check, compiled with compile=True (on its first call: torch.compile
        # returns at once); the gradient passes stay eager, the networks' forward and backward being the
        # user's and the unit the attack's cost is measured in (docs/RESULTS.md)
        self._check_model = torch.compile(model, dynamic=None) if compile else model

    def rows_for(self, device: torch.device) -> int | None:
        """The clips in flight on ``device``: ``max_rows``, or for ``"auto"`` the measured best of each kind
        of device (docs/RESULTS.md): 32 on a CPU (one thread: 32 and 64 rows attack HCN's test clips within 5 %
        of each other and 1.3-1.5x faster than all at once), 256 on a GPU (an H200 runs 256 rows about as fast
        as all 399 clips at once and 32 rows 4-7x slower: the small classifiers are launch-bound there)."""
        if self.max_rows == "auto":
            return AUTO_ROWS.get(device.type, AUTO_ROWS["cuda"])
        return self.max_rows

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        """Every ADMM run of every sample (one per round of the search over c), streamed through at most
        ``max_rows`` rows: a row whose run ends (early stop or ``max_iter``) is handed to the next waiting
        run, so the networks see full batches until the queue is empty, and the per-call overhead of ever
        smaller batches is paid once per call instead of once per batch.

        The state of the rows in flight is kept compact: when runs end, every per-row tensor (the iterates,
        the dual, Adam's moments, rho, c, the clean side's kinematics) is cut down to the remaining rows
        and new runs are appended once, so that the inner steps run on whole tensors, without gathering and
        scattering rows at every step. Each row's arithmetic depends on its own sample only, so a sample's
        result does not depend on which samples share the batch with it."""
        n = x.shape[0]
        dev = x.device
        mask = self.mask(x, lengths)
        maskf = mask.to(x.dtype)
        clean = self.distance.reference(x, mask)
        best_x = x.clone()
        best_d = torch.full((n,), float("inf"), device=dev, dtype=x.dtype)
        success = torch.zeros(n, dtype=torch.bool, device=dev)
        counts = {k: torch.zeros(n, dtype=torch.long, device=dev) for k in ("grad", "forward", "iter")}
        counts["first"] = torch.full((n,), -1, dtype=torch.long, device=dev)  # grad evals at first success
        # the search over c: the c each sample's next run starts from, and its bracket
        c_start = torch.full((n,), self.c, device=dev, dtype=x.dtype)
        lo = torch.zeros(n, device=dev, dtype=x.dtype)
        hi = torch.full((n,), float("inf"), device=dev, dtype=x.dtype)
        runs_done = torch.zeros(n, dtype=torch.long, device=dev)
        last = x.clone()  # each sample's last candidate of its last run
        # the classifier's labels of best_x and last, known from the candidates' checks (-1: not checked)
        pred_best, pred_last = (torch.full((n,), -1, dtype=torch.long, device=dev) for _ in range(2))
        rows_max = self.rows_for(dev)
        width = n if rows_max is None else min(n, rows_max)
        pending = torch.arange(n, device=dev)  # samples waiting for a row, first come first served

        # the rows in flight: `rows` holds each row's sample; the rest is each row's run state
        rows = pending[:0]
        opt_delta = BatchAdam(x[:0].clone(), self.lr)
        opt_z = BatchAdam(x[:0].clone(), self.lr_z)
        delta, z, u = opt_delta.param, opt_z.param, x[:0].clone()
        rho, c = x.new_zeros(0), x.new_zeros(0)
        fooled = torch.zeros(0, dtype=torch.bool, device=dev)  # fooled in this run
        stale = rows.clone()  # outer steps since D last improved enough
        it = rows.clone()  # outer steps of this run
        # linearised emotion term: its gradient is recomputed every `emotion_every` z steps and reused in
        # between; the one at the start of a z block comes from the previous candidate's evaluation (the z
        # block starts where that candidate is), and at z = 0 it is exactly 0 (d_E is a squared difference)
        lazy_emotion = self.emotion_every > 1 and "emotion" in self.distance.active
        g_emotion = x[:0].clone() if lazy_emotion else None  # the emotion term's weighted gradient
        exact_emotion = not lazy_emotion and "emotion" in self.distance.active
        steps = self._compiled if self.compile else {name: getattr(self, name) for name in COMPILED}
        xs = ms = ys = ts = cl = None
        while True:
            free = width - rows.numel()
            if free > 0 and pending.numel():
                new, pending = pending[:free], pending[free:]
                k = new.numel()
                rows = torch.cat([rows, new])
                delta, z = opt_delta.grow(k), opt_z.grow(k)
                u, fooled, stale, it = (append_rows(a, k) for a in (u, fooled, stale, it))
                rho, c = append_rows(rho, k, self.rho0), torch.cat([c, c_start[new]])
                if lazy_emotion:
                    g_emotion = append_rows(g_emotion, k)
                xs = None
            if rows.numel() == 0:
                break
            if xs is None:  # the rows changed: gather their clips once
                xs, ms, ys, cl = x[rows], maskf[rows], y[rows], clean.subset(rows)
                ts = None if target is None else target[rows]
            r5 = rho.view(-1, 1, 1, 1, 1)
            # delta block: c * L_cls + rho/2 |delta - z + u|^2 (the quadratic's gradient is analytic)
            centre = z - u
            for _ in range(self.delta_steps):
                d = delta.detach().requires_grad_(True)
                loss = margin_loss(self.classify(xs + d, rows), ys, ts, self.kappa)
                steps["_delta_step"](opt_delta, self.input_grad(c * loss, d), centre, r5, ms)
            counts["grad"][rows] += self.delta_steps
            # z block: D(x, x + z) + rho/2 |delta - z + u|^2, D's gradient in closed form where it has one
            centre = delta + u
            z_prev = z.clone()
            for step in range(self.z_steps):
                if exact_emotion or (lazy_emotion and step and step % self.emotion_every == 0):
                    g_emotion = self._emotion(cl, xs + z)[1]
                steps["_z_step"](opt_z, xs, cl, centre, r5, ms, g_emotion)
            u += delta - z
            # residual balancing of rho, with the scaled dual rescaled to match
            r = _norm(delta - z)
            s = rho * _norm(z - z_prev)
            factor = torch.where(r > self.balance * s, 2.0, torch.where(s > self.balance * r, 0.5, 1.0))
            rho = rho * factor
            u /= factor.view(-1, 1, 1, 1, 1)
            # candidate x + z: its D first (linearised, also the emotion gradient there, which starts the
            # next z block), then the classifier on the rows whose verdict can change something
            cand = xs + z
            known = {}  # the emotion term, from its recognizer, outside the (compiled) distance
            if lazy_emotion:
                known["emotion"], g_emotion = self._emotion(cl, cand)
            elif exact_emotion:
                with torch.no_grad():
                    known["emotion"] = self.distance.terms["emotion"](
                        cl, self.distance.kinematics(cand, cl.mask)
                    )
            with torch.no_grad():
                total, hinges = steps["_candidate_distance"](cl, cand, known)
            old = best_d[rows]
            # a sample already fooled in this run whose candidate is no closer and leaves a hinge open keeps
            # its best, its c and its patience count whatever the classifier says: skip its forward pass
            check = ~fooled | (total < old) | hinges
            ok, pred, passes = self._fooled(cand, ys, ts, check, rows)
            counts["forward"][rows] += passes
            counts["iter"][rows] += 1
            it += 1
            better = ok & (total < old)
            improved = better & (torch.isinf(old) | (old - total > self.min_improvement * old))
            best_d[rows] = torch.where(better, total, old)
            if better.any():
                best_x[rows[better]] = cand[better]
                pred_best[rows[better]] = pred[better]
            first = ok & (counts["first"][rows] < 0)
            counts["first"][rows] = torch.where(first, counts["grad"][rows], counts["first"][rows])
            success[rows] |= ok
            fooled |= ok
            # c schedule: samples not yet fooled weigh the classification loss more
            c = torch.where(fooled, c, (c * self.c_growth).clamp_max(self.c_max))
            finished = it >= self.max_iter
            if self.early_stop:
                finished |= ok & hinges
                if self.patience is not None:
                    stale = torch.where(improved, 0, stale + fooled.long())
                    finished |= fooled & (stale >= self.patience)
            if not finished.any():
                continue
            done = rows[finished]
            last[done] = cand[finished]
            pred_last[done] = pred[finished]
            # C&W-style search: the next run's c shrinks where this run succeeded and grows where it did not
            won, c0 = fooled[finished], c_start[done]
            hi[done] = torch.where(won, torch.minimum(hi[done], c0), hi[done])
            lo[done] = torch.where(won, lo[done], torch.maximum(lo[done], c0))
            c_start[done] = torch.where(torch.isinf(hi[done]), c0 * 10, (lo[done] + hi[done]) / 2).clamp_max(
                self.c_max
            )
            runs_done[done] += 1
            if self.on_clips_done is not None:  # samples whose last run of the search just ended
                self.clips_done(int((runs_done[done] >= self.binary_search_steps).sum()))
            pending = torch.cat([pending, done[runs_done[done] < self.binary_search_steps]])
            keep = ~finished
            rows, delta, z = rows[keep], opt_delta.keep(keep), opt_z.keep(keep)
            u, rho, c, fooled, stale, it = (a[keep] for a in (u, rho, c, fooled, stale, it))
            if lazy_emotion:
                g_emotion = g_emotion[keep]
            xs = None
        x_adv = torch.where(success.view(-1, 1, 1, 1, 1), best_x, last)
        # a sample that was never fooled had every candidate checked, the last one included, so every
        # label is known and no final forward pass is needed; result() labels any that is not
        return self.result(
            x_adv, y, target, counts["grad"], counts["forward"], counts["iter"],
            pred=torch.where(success, pred_best, pred_last), distance=best_d,
            grad_evals_to_success=counts["first"],
        )  # fmt: skip

    # The per-row arithmetic of an outer step between the networks' passes, in three functions that
    # ``compile=True`` hands to torch.compile (:attr:`_compiled`); each updates or scores every row.

    def _delta_step(self, opt: BatchAdam, g_cls: Tensor, centre: Tensor, r5: Tensor, ms: Tensor) -> None:
        """One Adam step of the delta block, in place, from ``g_cls``, the input gradient of ``c * L_cls``,
        plus the proximal term ``rho (delta - centre)``, added first: classifiers' input gradients are often
        strided (HCN's is joint-major), and Adam's passes are faster over a contiguous one (the same sums;
        benchmarks/adam_layout.py)."""
        opt.step(slice(None), (opt.param - centre).mul_(r5).add_(g_cls), ms)

    def _z_step(
        self, opt: BatchAdam, xs: Tensor, cl, centre: Tensor, r5: Tensor, ms: Tensor, g_emotion: Tensor | None
    ) -> None:
        """One Adam step of the z block, in place: D's closed-form terms (the emotion term's weighted
        gradient, if any, comes as ``g_emotion``, from :meth:`_emotion`) plus the proximal term
        ``rho (z - centre)``."""
        z = opt.param
        adv = self.distance.kinematics(xs + z, cl.mask)
        _, _, g = self.distance.value_and_grad(cl, adv, ("emotion",))
        if g_emotion is not None:
            g.add_(g_emotion)
        opt.step(slice(None), g.addcmul_(r5, z - centre), ms)

    def _emotion(self, cl, x: Tensor) -> tuple[Tensor, Tensor]:
        """The emotion term at ``x`` ``(n,)`` and its gradient times the term's weight, from the recognizer
        (never compiled), made contiguous: the recognizer's input gradient can come in any memory layout,
        and the compiled z step would take each as another graph."""
        value, g = self.distance.terms["emotion"].value_and_grad(cl, self.distance.kinematics(x, cl.mask))
        return value, (self.distance.weights["emotion"] * g).contiguous()

    def _candidate_distance(self, cl, cand: Tensor, known: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The candidates' D ``(n,)`` and whether every hinge is closed ``(n,)``; the terms in ``known``
        (the emotion term, from its recognizer) as given."""
        total, parts = self.distance(cl, self.distance.kinematics(cand, cl.mask), known=known)
        return total, self.distance.hinges_zero(total, parts)

    @cached_property
    def _compiled(self) -> dict[str, Callable]:
        """:data:`COMPILED` through ``torch.compile``: their hundred-odd small element-wise operations per
        step fused into a few kernels, one graph each (the distance terms take every row, and no branch in
        them depends on the data). With torch.compile's automatic dynamic shapes (``dynamic=None``), as the
        classifier's check: a graph for the first number of rows (``max_rows`` while clips wait: where
        nearly every step runs), then, at the first other number, one for any number and one for a single
        row (a size torch.compile always specialises). On a CPU the graph for the full width runs HCN's
        z steps in 70 % of the time of one for any size (docs/RESULTS.md, "compiled check"); graphs
        for one size each would reach torch.compile's limit of 8 per function within a few attacks (seen on
        a GPU), after which it runs them eagerly."""
        return {name: torch.compile(getattr(self, name), dynamic=None) for name in COMPILED}

    @torch.no_grad()
    def _fooled(
        self, cand: Tensor, y: Tensor, target: Tensor | None, rows: Tensor, clips: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(n,)`` bool: the classifier is fooled by ``cand``, ``(n,)`` its label, both evaluated on the
        ``rows`` only (elsewhere False and -1), and ``(n,)`` the forward passes each row took (0, 1, or 2
        where a compiled check's label was confirmed eagerly, :meth:`_labels`). ``cand`` are candidates of
        the call's clips ``clips (n,)`` (None: all of them, in order)."""
        if bool(rows.all()):
            pred, passes = self._labels(cand, clips)
            return is_success(pred, y, target), pred, passes
        ok = torch.zeros_like(rows)
        pred = torch.full(rows.shape, -1, dtype=torch.long, device=rows.device)
        passes = torch.zeros(rows.shape, dtype=torch.long, device=rows.device)
        pick = rows.nonzero().squeeze(1)
        if pick.numel():
            t = None if target is None else target[pick]
            pred[pick], passes[pick] = self._labels(cand[pick], pick if clips is None else clips[pick])
            ok[pick] = is_success(pred[pick], y[pick], t)
        return ok, pred, passes

    def _labels(self, cand: Tensor, clips: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The classifier's labels of ``cand`` ``(n,)`` and the forward passes each took ``(n,)``. With
        ``compile=True`` the check runs the compiled classifier (a forward-only graph: HCN's check takes half
        the eager time on a CPU, docs/RESULTS.md), and the rows whose two top logits are within
        :data:`CHECK_TOLERANCE` go through the classifier itself, so every label is the eager one.
        ``cand`` are candidates of the call's clips ``clips (n,)`` (None: all of them, in order)."""
        cand = self.model_input(cand, clips)
        logits = self._check_model(cand)
        pred = logits.argmax(1)
        passes = torch.ones_like(pred)
        if self.compile and logits.shape[1] > 1:
            top = logits.topk(2, dim=1).values
            unsure = top[:, 0] - top[:, 1] <= CHECK_TOLERANCE * (1 + top[:, 0].abs())
            if bool(unsure.any()):
                pick = unsure.nonzero().squeeze(1)
                pred[pick] = self.model(cand[pick]).argmax(1)
                passes[pick] = 2
        return pred, passes
