"""The ADMM attack with the dynamic distance (docs/METHOD.md section 3): :class:`ADMMAttack`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, partial

import torch
from torch import Tensor, nn

from lightning_skel.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    BatchAdam,
    CSearch,
    Rows,
    Tally,
    is_success,
    margin_loss,
)
from lightning_skel.attacks.distances import DynamicDistance, Kinematics
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params

# A compiled candidate check's label is confirmed by the classifier itself (eager) where the check's two top
# logits are closer than this, relative to 1 + |top logit|: compiled and eager logits differ by rounding
# only, thousands of times less than this on a CPU (benchmarks/check_rounding.py, docs/RESULTS.md,
# "compiled check"), so a label whose gap is wider is the eager label.
CHECK_TOLERANCE = 1e-2
AUTO_ROWS = {"cpu": 32, "cuda": 256}  # max_rows="auto" by device type (other accelerators: as CUDA)
# the per-row arithmetic of an outer step between the networks' passes, which compile=True compiles
ARITHMETIC = ("_delta_step", "_z_step", "_candidate_distance")


def _norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1)


def _rules(a: Mapping) -> dict:
    """ADMMAttack's argument checks for ``check_params``, by name: value, whether it is valid, rule."""
    patience, rows = a["patience"], a["max_rows"]
    return {
        "c": (a["c"], a["c"] > 0, "> 0"),
        "c_growth": (a["c_growth"], a["c_growth"] >= 1, ">= 1"),
        "binary_search_steps": (a["binary_search_steps"], a["binary_search_steps"] >= 1, ">= 1"),
        "kappa": (a["kappa"], a["kappa"] >= 0, ">= 0"),
        **{k: (a[k], a[k] > 0, "> 0") for k in ("rho", "lr")},
        **{k: (a[k], a[k] >= 1, ">= 1") for k in ("max_iter", "delta_steps", "z_steps")},
        "balance": (a["balance"], a["balance"] > 1, "> 1"),
        "patience": (patience, patience is None or patience >= 1, ">= 1 or null"),
        "min_improvement": (a["min_improvement"], a["min_improvement"] >= 0, ">= 0"),
        "emotion_every": (a["emotion_every"], a["emotion_every"] >= 1, ">= 1"),
        **{k: (a[k], isinstance(a[k], bool), "true or false") for k in ("compile", "early_stop")},
        "max_rows": (
            rows,
            rows is None or rows == "auto" or (not isinstance(rows, str) and rows >= 1),
            ">= 1, 'auto' or null",
        ),
    }


@dataclass(eq=False)
class ADMMRows(Rows):
    """The state of ADMM's runs in flight, one row per run (:class:`~lightning_skel.attacks.base.Rows`):
    besides the sample, c and whether the run has fooled the classifier, the row's clean clip and its
    kinematics (``clean``, ``clean.x`` ``(n, C, T, V, M)``), its validity ``mask`` ``(n, 1, T, 1, M)``
    (float), label ``y`` and ``target`` ``(n,)`` (None untargeted), the two primal blocks with their Adam
    states (``delta_opt``, ``z_opt``; :attr:`delta`, :attr:`z`), the scaled dual ``u``, the penalty
    ``rho`` ``(n,)``, ``stale`` ``(n,)`` the outer steps since D last improved enough, ``it`` ``(n,)`` the
    run's outer steps, and ``g_network`` the network terms' weighted gradient carried between z steps (None
    without network terms, :meth:`~lightning_skel.attacks.distances.DynamicDistance.network_grad`).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> attack = ADMMAttack(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5)), "ntu25")
    >>> x, mask = torch.zeros(2, 3, 8, 25, 1), torch.ones(2, 1, 8, 1, 1, dtype=torch.bool)
    >>> clean = attack.distance.reference(x, mask)
    >>> samples, c = torch.tensor([0, 1]), torch.ones(2)
    >>> rows = attack._start(samples, c, clean, mask.float(), torch.tensor([0, 1]), None)
    >>> rows.keep(torch.tensor([False, True]))  # the first run ended
    >>> len(rows), rows.z.shape, rows.clean.x.shape
    (1, torch.Size([1, 3, 8, 25, 1]), torch.Size([1, 3, 8, 25, 1]))
    """

    clean: Kinematics
    mask: Tensor
    y: Tensor
    target: Tensor | None
    delta_opt: BatchAdam
    z_opt: BatchAdam
    u: Tensor
    rho: Tensor
    stale: Tensor
    it: Tensor
    g_network: Tensor | None

    @property
    def delta(self) -> Tensor:
        return self.delta_opt.param

    @property
    def z(self) -> Tensor:
        return self.z_opt.param


@ATTACKS.register("admm")
class ADMMAttack(Attack):
    """ADMM attack with the dynamic distance: Liu, Xu, Zheng, "Emotion Loss Attacking: Adversarial Attack
    Perception for Skeleton based on Multi-dimensional Features" (arXiv 2406.19815), on the ADMM framework
    of Zhao et al. (2018) and the bone, angle and speed constraints of Zheng et al. (arXiv 2005.07151);
    docs/METHOD.md section 3. Finds ``x' = x + delta`` that the classifier gets wrong (or labels as the
    target) with the smallest dynamic distance ``D(x, x')`` (:class:`DynamicDistance`); each outer step:

        delta <- argmin c L_cls(x + delta) + rho/2 |delta - z + u|^2    (delta_steps Adam steps, warm start)
        z     <- argmin D(x, x + z)        + rho/2 |delta - z + u|^2    (z_steps Adam steps, warm start)
        u     <- u + delta - z; rho by residual balancing; the candidate x + z scored

    Arguments:
        model: the classifier (``nn.Module``, ``(N, C, T, V, M)`` to logits ``(N, K)``).
        layout: the skeleton layout (name or ``Layout``).
        targeted: seek the target label instead of any wrong one. Default False.
        emotion_model: the emotion recognizer of the emotion term (``forward_features``); needed for
            ``weights.emotion > 0``. Default None.
        weights: each term's weight of D by name (bone, angle, speed, emotion, l2). Default bone, angle,
            speed 1, emotion and l2 0.
        tau: the hinge thresholds by name: bone and speed relative changes, angle radians. Default 0.01,
            0.05, 0.1.
        hinge: ``"mean"`` or ``"entry"``, the hinges' reading (docs/METHOD.md section 2). Default "mean".
        c: the starting weight of the margin loss (1/logit, ``> 0``). Default 1.
        c_growth: factor on c after each outer step in which the clip is not yet fooled in its run
            (``>= 1``; 1: fixed c). Default 1.
        c_max: upper bound of c (growth and search). Default 1e4.
        binary_search_steps: runs per clip of the search over c as in C&W (``>= 1``; 1: no search).
            Default 1.
        kappa: the margin loss's confidence (logits, ``>= 0``). Default 1.
        rho: the starting penalty of the splitting (1/m^2, ``> 0``). Default 1.
        lr: Adam's step of the delta block (metres, ``> 0``). Default 1e-3.
        lr_z: Adam's step of the z block (metres; None: ``lr``). Default None.
        max_iter: outer steps per run at most (``>= 1``). Default 100.
        delta_steps: Adam steps of the delta block per outer step (``>= 1``), each one classifier
            forward+backward. Default 5.
        z_steps: Adam steps of the z block per outer step (``>= 1``). Default 5.
        balance: residual ratio beyond which rho doubles or halves (Boyd et al. 2011, section 3.4.1;
            ``> 1``). Default 10.
        early_stop: end a run once its candidate fools the classifier with every hinge zero (and by
            ``patience``). Default True.
        patience: also end a fooled run after this many outer steps without improving its best D by
            more than ``min_improvement`` (``>= 1``; None: the hinge rule only). Default None.
        min_improvement: the relative fall of the best D that counts as an improvement (``>= 0``).
            Default 0.01.
        emotion_every: z steps between recomputations of the emotion term's gradient, reused in between
            (``>= 1``; 1 exact; ``z_steps``: once per outer step, at the candidate). Default 1.
        max_rows: clips in flight per call (``>= 1``; ``"auto"``: by device, :meth:`rows_for`; None: all
            at once): a call with more streams them. Default None.
        compile: run the arithmetic between the networks' passes and the classifier's candidate check
            through ``torch.compile`` (labels within :data:`CHECK_TOLERANCE` of a tie confirmed eagerly).
            Default False.

    Shapes: ``x (N, C, T, V, M)`` in metres, ``y``, ``lengths``, ``target`` ``(N,)``. The result's
    ``extras``: ``distance`` (the best D, inf if never fooled) and ``grad_evals_to_success`` (-1 if never).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = ADMMAttack(model, "ntu25", c=10.0, max_iter=5, patience=1)(x, y)
    >>> res.x_adv.shape, res.extras["distance"].shape
    (torch.Size([4, 3, 8, 25, 1]), torch.Size([4]))
    """

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
        args = {k: v for k, v in locals().items() if k not in ("self", "model", "layout", "__class__")}
        super().__init__(model, layout, targeted)
        check_params("admm", _rules(args), "hyper-parameter(s)")
        self.emotion_every = int(emotion_every)
        self.distance = DynamicDistance(self.layout, weights, tau, emotion_model, hinge, self.emotion_every)
        self.c, self.c_growth, self.c_max = float(c), float(c_growth), float(c_max)
        self.binary_search_steps = int(binary_search_steps)
        self.kappa, self.rho0 = float(kappa), float(rho)
        self.lr, self.lr_z = float(lr), float(lr_z if lr_z is not None else lr)
        self.max_iter, self.delta_steps, self.z_steps = int(max_iter), int(delta_steps), int(z_steps)
        self.balance, self.early_stop = float(balance), early_stop
        self.patience, self.min_improvement = patience, float(min_improvement)
        self.max_rows = max_rows if max_rows in (None, "auto") else int(max_rows)
        self.compile = compile
        # the candidates' forward-only check, compiled with compile=True (on its first call: torch.compile
        # returns at once); the gradient passes stay eager, the networks' forward and backward being the
        # user's and the unit the attack's cost is measured in (docs/RESULTS.md)
        self._check_model = torch.compile(model, dynamic=None) if compile else model

    def rows_for(self, device: torch.device) -> int | None:
        """The clips in flight on ``device``: ``max_rows``, or for ``"auto"`` the measured best of each kind
        of device (:data:`AUTO_ROWS`; docs/RESULTS.md, "Streamed rows" and "On a GPU"): 32 on a CPU, where
        small batches cost little more per clip, 256 on a GPU, where small classifiers are launch-bound."""
        if self.max_rows == "auto":
            return AUTO_ROWS.get(device.type, AUTO_ROWS["cuda"])
        return self.max_rows

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        """Every ADMM run of every clip (one per round of the search over c), streamed through at most
        :meth:`rows_for` rows (:meth:`~lightning_skel.attacks.base.Attack.stream`), one
        :meth:`_outer_step` at a time. Each row's arithmetic reads its own clip only, so a clip's result
        does not depend on which clips share the batch with it."""
        mask = self.mask(x, lengths)
        maskf = mask.to(x.dtype)
        clean = self.distance.reference(x, mask)
        tally = Tally(x)
        search = CSearch(x.shape[0], self.c, self.binary_search_steps, like=x, c_max=self.c_max)
        arithmetic = self._compiled if self.compile else self._arithmetic()
        self.stream(
            search,
            self.rows_for(x.device),
            lambda samples, c: self._start(samples, c, clean, maskf, y, target),
            lambda rows: self._outer_step(rows, tally, arithmetic),
        )
        # a clip never fooled had every candidate checked, the last one included, so every label is
        # known and no final forward pass is needed; result() labels any that is not
        return self.result(
            tally.x_adv(), y, target, tally.grad_evals, tally.forward_evals, tally.iterations,
            pred=tally.pred(), distance=tally.best_d, grad_evals_to_success=tally.first,
        )  # fmt: skip

    def _start(
        self, samples: Tensor, c: Tensor, clean: Kinematics, maskf: Tensor, y: Tensor, target: Tensor | None
    ) -> ADMMRows:
        """The rows of new runs of ``samples`` with weights ``c``: iterates, dual, Adam's state at zero,
        rho at its start, nothing fooled yet."""
        rows = clean.subset(samples)
        zero = torch.zeros_like(rows.x)
        count = torch.zeros_like(samples)
        return ADMMRows(
            sample=samples, c=c, fooled=torch.zeros_like(samples, dtype=torch.bool),
            clean=rows, mask=maskf[samples], y=y[samples], target=None if target is None else target[samples],
            delta_opt=BatchAdam(zero.clone(), self.lr), z_opt=BatchAdam(zero.clone(), self.lr_z),
            u=zero.clone(),
            rho=torch.full_like(c, self.rho0), stale=count, it=count.clone(),
            g_network=zero.clone() if self.distance.network else None,
        )  # fmt: skip

    def _outer_step(self, s: ADMMRows, tally: Tally, arithmetic: Mapping[str, Callable]) -> Tensor:
        """One outer step of every row, docs/METHOD.md section 3's steps 1-7; returns the runs that ended
        ``(n,)`` (their last candidates recorded in ``tally``)."""
        r5 = s.rho.view(-1, 1, 1, 1, 1)
        self._delta_block(s, r5, tally, arithmetic["_delta_step"])  # 1. delta block
        z_prev = self._z_block(s, r5, arithmetic["_z_step"])  # 2. z block
        s.u += s.delta - s.z  # 3. dual update
        self._balance(s, z_prev)  # 4. residual balancing of rho
        cand, ok, pred, hinges, improved = self._candidates(s, tally, arithmetic["_candidate_distance"])  # 5.
        # 6. c schedule: runs not yet fooled weigh the classification loss more
        s.c = torch.where(s.fooled, s.c, (s.c * self.c_growth).clamp_max(self.c_max))
        ended = self._ended(s, ok, hinges, improved)  # 7. stopping
        if bool(ended.any()):
            tally.end(s.sample[ended], cand[ended], pred[ended])
        return ended

    def _delta_block(self, s: ADMMRows, r5: Tensor, tally: Tally, step: Callable) -> None:
        """``delta_steps`` Adam steps on ``c L_cls(x + delta) + rho/2 |delta - z + u|^2``, each one
        forward and backward pass of the classifier (the quadratic's gradient is analytic)."""
        centre = s.z - s.u
        for _ in range(self.delta_steps):
            d = s.delta.detach().requires_grad_(True)
            loss = margin_loss(self.classify(s.clean.x + d, s.sample), s.y, s.target, self.kappa)
            step(s.delta_opt, self.input_grad(s.c * loss, d), centre, r5, s.mask)
        tally.grad_evals[s.sample] += self.delta_steps

    def _z_block(self, s: ADMMRows, r5: Tensor, step: Callable) -> Tensor:
        """``z_steps`` Adam steps on ``D(x, x + z) + rho/2 |delta - z + u|^2``, the network terms'
        gradient as the distance schedules it; returns z as it was before the block."""
        centre = s.delta + s.u
        z_prev = s.z.clone()
        for i in range(self.z_steps):
            s.g_network = self.distance.network_grad(i, s.clean, s.z, s.g_network)
            step(s.z_opt, s.clean, centre, r5, s.mask, s.g_network)
        return z_prev

    def _balance(self, s: ADMMRows, z_prev: Tensor) -> None:
        """Residual balancing of rho (Boyd et al. 2011, section 3.4.1), the scaled dual rescaled to match:
        rho doubles where the primal residual exceeds ``balance`` times the dual one, halves conversely."""
        r = _norm(s.delta - s.z)
        dual = s.rho * _norm(s.z - z_prev)
        factor = torch.where(r > self.balance * dual, 2.0, torch.where(dual > self.balance * r, 0.5, 1.0))
        s.rho = s.rho * factor
        s.u /= factor.view(-1, 1, 1, 1, 1)

    def _candidates(self, s: ADMMRows, tally: Tally, distance: Callable) -> tuple[Tensor, ...]:
        """The candidates ``x + z``: their D (the network terms at the candidate first, whose linearised
        gradient starts the next z block), then the classifier on the rows whose verdict can change
        something; the closest fooling one becomes its clip's best. Returns the candidates, whether they
        fool the classifier, their labels, whether every hinge is closed and whether D improved enough."""
        cand = s.clean.x + s.z
        known, g = self.distance.network_at(s.clean, cand)
        if g is not None:
            s.g_network = g
        with torch.no_grad():
            total, hinges = distance(s.clean, cand, known)
        old = tally.best_d[s.sample]
        # a run already fooled whose candidate is no closer and leaves a hinge open keeps its best, its c
        # and its patience count whatever the classifier says: its forward pass is skipped
        check = ~s.fooled | (total < old) | hinges
        ok, pred, passes = self._fooled(cand, s.y, s.target, check, s.sample)
        tally.forward_evals[s.sample] += passes
        tally.iterations[s.sample] += 1
        s.it += 1
        better = tally.offer(s.sample, cand, total, ok, pred)
        improved = better & (torch.isinf(old) | (old - total > self.min_improvement * old))
        s.fooled |= ok
        return cand, ok, pred, hinges, improved

    def _ended(self, s: ADMMRows, ok: Tensor, hinges: Tensor, improved: Tensor) -> Tensor:
        """The runs that end at this step ``(n,)``: ``max_iter`` reached, or with ``early_stop`` a fooling
        candidate with every hinge closed, or (``patience``) a fooled run that stopped improving."""
        ended = s.it >= self.max_iter
        if self.early_stop:
            ended |= ok & hinges
            if self.patience is not None:
                s.stale = torch.where(improved, 0, s.stale + s.fooled.long())
                ended |= s.fooled & (s.stale >= self.patience)
        return ended

    # The per-row arithmetic between the networks' passes (ARITHMETIC): plain functions of every row,
    # which compile=True hands to torch.compile at one edge (_compiled).

    def _delta_step(self, opt: BatchAdam, g_cls: Tensor, centre: Tensor, r5: Tensor, ms: Tensor) -> None:
        """One Adam step of the delta block, in place, from ``g_cls``, the input gradient of ``c * L_cls``,
        plus the proximal term ``rho (delta - centre)``, added first: classifiers' input gradients are often
        strided (HCN's is joint-major), and Adam's passes are faster over a contiguous one (the same sums;
        benchmarks/adam_layout.py)."""
        opt.step(slice(None), (opt.param - centre).mul_(r5).add_(g_cls), ms)

    def _z_step(
        self,
        opt: BatchAdam,
        clean: Kinematics,
        centre: Tensor,
        r5: Tensor,
        ms: Tensor,
        g_network: Tensor | None,
        gather_rows: bool = True,
    ) -> None:
        """One Adam step of the z block, in place: D's closed-form terms at ``clean.x + z`` (the network
        terms' weighted gradient, if any, comes as ``g_network``) plus the proximal term ``rho (z - centre)``;
        ``gather_rows`` as :func:`~lightning_skel.attacks.distances.active_rows`."""
        z = opt.param
        adv = self.distance.kinematics(clean.x + z, clean.mask)
        _, _, g = self.distance.value_and_grad(clean, adv, self.distance.network, gather_rows)
        if g_network is not None:
            g.add_(g_network)
        opt.step(slice(None), g.addcmul_(r5, z - centre), ms)

    def _candidate_distance(
        self, clean: Kinematics, cand: Tensor, known: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """The candidates' D ``(n,)`` and whether every hinge is closed ``(n,)``; the terms in ``known``
        (the network terms, from their networks) as given."""
        total, parts = self.distance(clean, self.distance.kinematics(cand, clean.mask), known=known)
        return total, self.distance.hinges_zero(total, parts)

    def _arithmetic(self, traced: bool = False) -> dict[str, Callable]:
        """:data:`ARITHMETIC` by name, ``traced`` for torch.compile: the distance's gradient is then
        computed on every row instead of the rows whose hinge is open (the same values), a graph being
        unable to depend on the data."""
        return {
            "_delta_step": self._delta_step,
            "_z_step": partial(self._z_step, gather_rows=not traced),
            "_candidate_distance": self._candidate_distance,
        }

    @cached_property
    def _compiled(self) -> dict[str, Callable]:
        """:meth:`_arithmetic` through ``torch.compile``, one graph each (the distance terms take every
        row, and no branch in them depends on the data), with torch.compile's automatic dynamic shapes
        (``dynamic=None``), as the classifier's check: a graph for the first number of rows (``max_rows``
        while clips wait: where nearly every step runs), then, at the first other number, one for any
        number and one for a single row (a size torch.compile always specialises). The graph for the full
        width is the faster (docs/RESULTS.md, "compiled check"); graphs for one size each would reach
        torch.compile's limit of graphs per function within a few attacks, after which it runs eagerly."""
        return {name: torch.compile(fn, dynamic=None) for name, fn in self._arithmetic(traced=True).items()}

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
        ``compile=True`` the check runs the compiled classifier (a forward-only graph, cheaper than the
        eager one on a CPU, docs/RESULTS.md), and the rows whose two top logits are within
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
