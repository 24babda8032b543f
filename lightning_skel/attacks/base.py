"""The attack base class, its result, and the pieces every attack shares.

An attack is called as ``attack(x, y, lengths, target=None) -> AttackResult`` on a batch ``x (N, C, T, V, M)``
of raw coordinates. The base class puts the model in eval mode and restores it afterwards, takes gradients
with respect to the input only (``torch.autograd.grad``: the parameters' ``.grad`` are never touched),
runs on the model's device, and guarantees that padding frames and absent persons come back bit-identical.

A first forward pass labels the clean clips: a clip the classifier already gets wrong is not attacked (for a
targeted attack too; a target must differ from the label, so a clip already labelled as its target is one
of them). It comes back unchanged, with ``attacked`` and ``success`` False and no evaluation spent but that
pass, so that successes count only clips the attack fooled (docs/METHOD.md section 5, as attack.py counts). ``attack_all=True`` attacks every clip whatever
its clean label (adversarial training and the reference defenses) and skips that pass.

A model whose input ends with the keypoint score of 2D data (``score_channel`` true, as a
:class:`~lightning_skel.models.Classifier` trained with ``data.score_channel`` is) takes
``x (N, C + 1, T, V, M)``, coordinates then score. The base class splits the score off before any attack
math: :meth:`Attack.attack`, the distances and the masks see the coordinates ``(N, C, T, V, M)`` only,
every forward pass gets the score of its clips appended (:meth:`Attack.classify`, :meth:`Attack.predict`:
an attack names the clips of its call that a batch of coordinates belongs to), and ``x_adv`` comes back
with the input's score channel, bit-identical (docs/METHOD.md section 1).

What the attacks share besides: the margin loss (:func:`margin_loss`), Adam with a step count per clip
(:class:`BatchAdam`), and, for attacks that run each clip through several runs, the row scheduler
:meth:`Attack.stream` with its per-row state (:class:`Rows`), C&W's search over c (:class:`CSearch`) and the
per-clip record of the best and last candidates (:class:`Tally`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch
from torch import Tensor, nn

from lightning_skel.registry import Registry
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.features import join_score, split_score
from lightning_skel.skeleton.layouts import Layout, get_layout
from lightning_skel.utils import check_params

ATTACKS: Registry = Registry("attack")


@dataclass
class AttackResult:
    """What an attack returns for a batch of N clips (every attack of the registry, :data:`ATTACKS`).

    Fields:
        x_adv: ``(N, C, T, V, M)`` as the input (metres; score channel unchanged): the best successful
            candidate, else the last one; padding frames and absent persons bit-identical to the input.
        success: ``(N,)`` bool: attacked and now misclassified (untargeted) or labelled as the target.
        pred_adv: ``(N,)`` the classifier's label of ``x_adv``.
        grad_evals: ``(N,)`` classifier forward+backward passes spent on each clip.
        forward_evals: ``(N,)`` forward-only passes (candidate checks, the clean labelling pass).
        iterations: ``(N,)`` outer iterations each clip was attacked for.
        extras: attack-specific ``(N,)`` values by name (e.g. ADMM's ``distance``; NaN, or -1 for counts,
            on clips that were not attacked).
        attacked: ``(N,)`` bool: the clip was attacked (set by :meth:`Attack.__call__`).
        pred_clean: ``(N,)`` the classifier's label of ``x`` (None under ``attack_all``).

    Example:

    >>> n = torch.zeros(2, dtype=torch.long)
    >>> res = AttackResult(torch.zeros(2, 3, 8, 25, 1), torch.tensor([True, False]), torch.tensor([4, 0]),
    ...                    grad_evals=n + 3, forward_evals=n + 1, iterations=n + 3)
    >>> res.x_adv.shape, int(res.success.sum()), res.extras
    (torch.Size([2, 3, 8, 25, 1]), 1, {})
    """

    x_adv: Tensor
    success: Tensor
    pred_adv: Tensor
    grad_evals: Tensor
    forward_evals: Tensor
    iterations: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)
    attacked: Tensor | None = None
    pred_clean: Tensor | None = None


def margin_loss(logits: Tensor, y: Tensor, target: Tensor | None, kappa: float) -> Tensor:
    """The margin loss of Carlini and Wagner (S&P 2017), ``(N,)`` from logits ``(N, K)``: untargeted
    ``relu(Z_y - max_{j!=y} Z_j + kappa)``, targeted ``relu(max_{j!=t} Z_j - Z_t + kappa)``; ``kappa`` the
    confidence, in logits.

    Example:

    >>> logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    >>> margin_loss(logits, torch.tensor([0, 0]), None, kappa=0.5)  # 3 - 2 + 0.5; relu(0 - 5 + 0.5)
    tensor([1.5000, 0.0000])
    """
    label = y if target is None else target
    own = logits.gather(1, label[:, None]).squeeze(1)
    other = logits.masked_fill(nn.functional.one_hot(label, logits.shape[1]).bool(), float("-inf")).amax(1)
    gap = own - other if target is None else other - own
    return torch.relu(gap + kappa)


def is_success(pred: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """``(N,)`` bool: labels ``pred`` fool the classifier: differ from ``y`` (untargeted, ``target`` None)
    or equal ``target``.

    Example:
        >>> pred, y = torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0])
        >>> is_success(pred, y, None), is_success(pred, y, torch.tensor([1, 1, 1]))
        (tensor([False,  True,  True]), tensor([False,  True, False]))
    """
    return pred != y if target is None else pred == target


def _clips(bad: Tensor) -> str:
    """The first clips where ``bad (N,)`` holds, for an error message."""
    clips = bad.nonzero().squeeze(1).tolist()
    return f"{clips[:10]}{' ...' if len(clips) > 10 else ''}"


class BatchAdam:
    """Adam (Kingma and Ba, ICLR 2015) on the rows of one tensor, with a step count per row: each row is a
    clip of an attack, and each clip's bias correction counts its own steps, so clips can join the batch
    (:meth:`append`) and leave it (:meth:`keep`) at any step. ``torch.optim.Adam`` keeps one step count per
    tensor and updates every row, which is why this small optimiser is written here.

    Arguments: ``param`` the tensor it descends ``(n, ...)``, updated in place (its rows are the clips);
    ``lr`` the step (in ``param``'s unit, metres for a perturbation); ``betas`` (default (0.9, 0.999)) and
    ``eps`` (default 1e-8) as Adam's. The moments ``m``, ``v`` have ``param``'s shape, the step counts ``t``
    ``(n,)``.

    Example:

    >>> opt = BatchAdam(torch.zeros(3, 2), lr=0.1)
    >>> opt.step(slice(None), torch.ones(3, 2))  # every row, in place: Adam's first step is lr
    >>> opt.keep(torch.tensor([True, False, True])).param  # the second row's run ended
    tensor([[-0.1000, -0.1000],
            [-0.1000, -0.1000]])
    """

    def __init__(
        self, param: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = torch.zeros(param.shape[0], device=param.device, dtype=param.dtype)

    def step(self, idx: Tensor | slice, grad: Tensor, mask: Tensor | None = None) -> None:
        """Descend ``param[idx]`` along ``grad`` (rows ``idx``, or ``slice(None)`` for every row, updated in
        place without gathering); ``mask`` zeroes the update where false."""
        b1, b2 = self.betas
        if isinstance(idx, slice):
            t, m, v = self.t[idx].add_(1), self.m[idx], self.v[idx]
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        else:
            t = self.t[idx] + 1
            self.t[idx] = t
            m = self.m[idx].mul_(b1).add_(grad, alpha=1 - b1)
            v = self.v[idx].mul_(b2).addcmul_(grad, grad, value=1 - b2)
            self.m[idx], self.v[idx] = m, v
        shape = (-1,) + (1,) * (grad.dim() - 1)
        step_size = (self.lr / (1 - b1**t)).view(shape)
        root_c2 = (1 - b2**t).sqrt().view(shape)
        denom = v.sqrt().div_(root_c2).add_(self.eps)
        if mask is not None:  # the small (N, 1, T, 1, M) factor first, then one pass over the big tensors
            step_size = step_size * mask
        if isinstance(idx, slice):
            self.param[idx].addcdiv_(m * step_size, denom, value=-1)
        else:
            self.param[idx] -= m * step_size / denom

    def append(self, other: BatchAdam) -> BatchAdam:
        """Append ``other``'s rows (parameter, moments, step counts) after these; returns this optimiser."""
        pairs = ((self.param, other.param), (self.m, other.m), (self.v, other.v), (self.t, other.t))
        self.param, self.m, self.v, self.t = (torch.cat(p) for p in pairs)
        return self

    def keep(self, rows: Tensor) -> BatchAdam:
        """Keep only ``rows`` (indices or a boolean mask) of the parameter and its state; returns this
        optimiser, whose ``param`` later steps update."""
        self.param, self.m, self.v, self.t = (a[rows] for a in (self.param, self.m, self.v, self.t))
        return self


def _append(a, b):
    """Rows ``b`` after rows ``a``: tensors concatenated, None kept, other objects by their ``append``."""
    if a is None:
        return None
    return torch.cat([a, b]) if isinstance(a, Tensor) else a.append(b)


def _keep(a, rows: Tensor):
    """Rows ``rows`` of ``a``: tensors indexed, None kept, other objects by their ``keep``."""
    if a is None:
        return None
    return a[rows] if isinstance(a, Tensor) else a.keep(rows)


@dataclass(eq=False)
class Rows:
    """The state of an attack's runs in flight, one row per run, for :meth:`Attack.stream`.

    Every field holds one row per run along dim 0: a tensor, an object with ``append(other)`` and
    ``keep(rows)`` (:class:`BatchAdam`, :class:`~lightning_skel.attacks.distances.Kinematics`), or None
    (a quantity the attack does not use). The state grows (:meth:`append`, runs joining) and shrinks
    (:meth:`keep`, runs ending) as a whole, so a new per-row quantity is one more field of a subclass.

    Fields read by the scheduler: ``sample`` ``(n,)`` long, the sample (clip of the call) of each row;
    ``c`` ``(n,)`` the weight of the classification loss (:class:`CSearch`); ``fooled`` ``(n,)`` bool,
    whether the run has fooled the classifier yet.

    Example:

    >>> from dataclasses import dataclass
    >>> @dataclass(eq=False)
    ... class MyRows(Rows):
    ...     delta: Tensor  # one more per-row quantity
    >>> def fresh(samples):
    ...     k = len(samples)
    ...     delta = samples[:, None] * torch.ones(k, 3)
    ...     return MyRows(samples, torch.ones(k), torch.zeros(k, dtype=torch.bool), delta)
    >>> rows = fresh(torch.tensor([0, 1]))
    >>> rows.append(fresh(torch.tensor([2])))
    >>> rows.keep(torch.tensor([False, True, True]))
    >>> rows.sample, rows.delta.sum(1)
    (tensor([1, 2]), tensor([3., 6.]))
    """

    sample: Tensor
    c: Tensor
    fooled: Tensor

    def __len__(self) -> int:
        return self.sample.shape[0]

    def append(self, new: Rows) -> None:
        """Append the rows of ``new`` (of the same class) after these, field by field."""
        for f in fields(self):
            setattr(self, f.name, _append(getattr(self, f.name), getattr(new, f.name)))

    def keep(self, rows: Tensor) -> None:
        """Keep the rows ``rows`` (a boolean mask or indices) of every field."""
        for f in fields(self):
            setattr(self, f.name, _keep(getattr(self, f.name), rows))


class CSearch:
    """The per-sample binary search over c, the weight of the classification loss, of Carlini and Wagner
    (S&P 2017), shared by the attacks that run it (C&W, ADMM's ``binary_search_steps``).

    Each sample makes ``rounds`` runs. After a run that fooled the classifier the bracket's upper end
    becomes ``min(hi, c0)``, otherwise its lower end ``max(lo, c0)`` (``c0`` the run's starting c); the
    next run starts at ``(lo + hi) / 2``, or at ``10 c0`` while no run has fooled the sample, clamped to
    ``c_max``.

    Arguments: ``n`` samples; ``c`` the first run's c (``> 0``); ``rounds`` runs per sample (``>= 1``);
    ``like`` a tensor whose dtype and device the search takes; ``c_max`` (default inf) the upper bound.
    State, each ``(n,)``: ``start`` the c of each sample's next run, ``lo``, ``hi`` the bracket, ``runs``
    the runs ended.

    Example:

    >>> search = CSearch(2, 1.0, rounds=2, like=torch.zeros(2))
    >>> search.end(torch.tensor([0, 1]), torch.tensor([True, False]))  # both have a round left
    tensor([0, 1])
    >>> search.start  # halved where fooled, 10x where not
    tensor([ 0.5000, 10.0000])
    """

    def __init__(self, n: int, c: float, rounds: int, like: Tensor, c_max: float = float("inf")) -> None:
        self.start = torch.full((n,), c, device=like.device, dtype=like.dtype)
        self.lo = torch.zeros(n, device=like.device, dtype=like.dtype)
        self.hi = torch.full((n,), float("inf"), device=like.device, dtype=like.dtype)
        self.runs = torch.zeros(n, dtype=torch.long, device=like.device)
        self.rounds, self.c_max = rounds, c_max

    def end(self, samples: Tensor, won: Tensor) -> Tensor:
        """Record the end of one run of each of ``samples`` (``won`` ``(k,)`` bool: it fooled the
        classifier) and return those with runs left, their next c set in :attr:`start`."""
        c0 = self.start[samples]
        self.hi[samples] = torch.where(won, torch.minimum(self.hi[samples], c0), self.hi[samples])
        self.lo[samples] = torch.where(won, self.lo[samples], torch.maximum(self.lo[samples], c0))
        lo, hi = self.lo[samples], self.hi[samples]
        self.start[samples] = torch.where(torch.isinf(hi), c0 * 10, (lo + hi) / 2).clamp_max(self.c_max)
        self.runs[samples] += 1
        return samples[self.runs[samples] < self.rounds]


class Tally:
    """Per sample ``(N,)`` over all its runs, what an attack returns: the closest successful candidate
    (``best_x``, its distance ``best_d``, its label ``pred_best``), the last candidate of its last run
    (``last``, ``pred_last``), ``success``, and the evaluations spent: ``grad_evals``, ``forward_evals``,
    ``iterations`` and ``first`` (the gradient evaluations at its first success, -1 before). Labels are
    -1 where the attack has not got them from the classifier.

    Arguments: ``x`` the clean clips ``(N, C, T, V, M)``, where every candidate starts.

    Example:

    >>> x = torch.zeros(2, 3, 4, 25, 1)
    >>> tally = Tally(x)
    >>> tally.offer(torch.tensor([1]), x[1:] + 1, torch.tensor([0.5]), torch.tensor([True]))
    tensor([True])
    >>> tally.best_d, tally.x_adv()[:, 0, 0, 0, 0]  # sample 0: its last candidate, x itself
    (tensor([   inf, 0.5000]), tensor([0., 1.]))
    """

    def __init__(self, x: Tensor) -> None:
        n, dev = x.shape[0], x.device
        self.best_x, self.last = x.clone(), x.clone()
        self.best_d = torch.full((n,), float("inf"), device=dev, dtype=x.dtype)
        self.pred_best, self.pred_last, self.first = (
            torch.full((n,), -1, dtype=torch.long, device=dev) for _ in range(3)
        )
        self.success = torch.zeros(n, dtype=torch.bool, device=dev)
        self.grad_evals, self.forward_evals, self.iterations = (
            torch.zeros(n, dtype=torch.long, device=dev) for _ in range(3)
        )

    def offer(
        self, samples: Tensor, cand: Tensor, d: Tensor, ok: Tensor, pred: Tensor | None = None
    ) -> Tensor:
        """Candidates ``cand`` of the rows of ``samples`` at distance ``d``, fooling the classifier where
        ``ok``, of labels ``pred`` (if known): each fooling one closer than its sample's best becomes it.
        Returns which did ``(k,)``."""
        old = self.best_d[samples]
        better = ok & (d < old)
        self.best_d[samples] = torch.where(better, d, old)
        if bool(better.any()):
            self.best_x[samples[better]] = cand[better]
            if pred is not None:
                self.pred_best[samples[better]] = pred[better]
        first = ok & (self.first[samples] < 0)
        self.first[samples] = torch.where(first, self.grad_evals[samples], self.first[samples])
        self.success[samples] |= ok
        return better

    def end(self, samples: Tensor, cand: Tensor, pred: Tensor | None = None) -> None:
        """The last candidates ``cand`` of runs of ``samples`` that ended (and their labels, if known)."""
        self.last[samples] = cand
        if pred is not None:
            self.pred_last[samples] = pred

    def x_adv(self) -> Tensor:
        """``(N, C, T, V, M)``: each sample's best successful candidate, else its last one."""
        return torch.where(self.success.view(-1, 1, 1, 1, 1), self.best_x, self.last)

    def pred(self) -> Tensor:
        """``(N,)``: the label of :meth:`x_adv` where the attack has it, else -1."""
        return torch.where(self.success, self.pred_best, self.pred_last)


class Attack:
    """The base class of every attack (the torchattacks pattern): ``attack(x, y, lengths, target=None) ->
    AttackResult`` on raw coordinates (see the module docstring for what it guarantees).

    Arguments: ``model`` the classifier, an ``nn.Module`` from ``(N, C, T, V, M)`` (with its score channel,
    if its ``score_channel`` attribute is true) to logits ``(N, K)``; ``layout`` the skeleton layout (name
    or :class:`~lightning_skel.skeleton.layouts.Layout`); ``targeted`` (default False) seek a target label
    instead of any wrong one.

    Subclasses set ``name``, register with ``@ATTACKS.register(name)``, document every argument of their
    ``__init__`` in their docstring, and implement :meth:`attack` on tensors already on the model's device,
    with the model in eval mode, returning an :class:`AttackResult`. They run the model through
    :meth:`classify` and :meth:`predict`, never ``self.model`` itself, so that a model with a score channel
    gets it; attacks that run each sample through several runs (a search over c) share the row scheduler
    :meth:`stream`.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> attack = build_attack("cw", model, "ntu25", c=5.0, steps=5)
    >>> res = attack(x, y, torch.full((4,), 8))  # lengths: 8 valid frames each
    >>> res.attacked.all(), res.x_adv.shape
    (tensor(True), torch.Size([4, 3, 8, 25, 1]))
    """

    name: ClassVar[str] = ""
    # called with k as k more clips of the current call finish (a progress display); attacks that finish
    # clips one by one report them through :meth:`clips_done`, the rest are reported when the call returns
    on_clips_done: Callable[[int], None] | None = None

    def __init__(self, model: nn.Module, layout: str | Layout, targeted: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.name}: model must be an nn.Module, got {type(model).__name__}")
        # a string such as "false" would be truthy: the attacks' switches take booleans only
        check_params(self.name, {"targeted": (targeted, isinstance(targeted, bool), "true or false")},
                     "hyper-parameter(s)")  # fmt: skip
        self.model = model
        self.layout = get_layout(layout)
        self.targeted = targeted
        self.score_channel = bool(getattr(model, "score_channel", False))
        self._score: Tensor | None = None  # (n, 1, T, V, M) of the clips :meth:`attack` is running on

    @property
    def extra_labels(self) -> dict[str, tuple[str, ...]]:
        """Names of the values of integer ``extras``: ``{key: names}``, ``names[i]`` for value ``i`` (-1: none).
        Runs write these names instead of the indices; none by default."""
        return {}

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def __call__(
        self,
        x: Tensor,
        y: Tensor,
        lengths: Tensor | None = None,
        target: Tensor | None = None,
        attack_all: bool = False,
    ) -> AttackResult:
        """Attack the clips ``x (N, C, T, V, M)`` of labels ``y (N,)``, valid for ``lengths (N,)`` frames (all
        T by default), towards ``target (N,)`` if the attack is targeted. Only the clips the classifier labels
        ``y`` are attacked, unless ``attack_all`` (see the module docstring). With a score channel, ``x`` is
        ``(N, C + 1, T, V, M)`` and its last channel comes back unchanged."""
        self._check_inputs(x, target)
        dev = self.device
        x = x.to(dev)
        y = y.to(dev)
        lengths = torch.full_like(y, x.shape[2]) if lengths is None else lengths.to(dev)
        target = None if target is None else target.to(dev)
        if target is not None and bool((target == y).any()):
            clips = _clips(target == y)
            raise ValueError(
                f"{self.name}: target equals the label y in clip(s) {clips}: a target must be another label"
            )
        # from here on the attack sees coordinates only; the score rides along in self._score
        x, score = split_score(x, self.score_channel)
        was_training = self.model.training
        self.model.eval()
        self._reported = 0
        self._score = score
        try:
            pred_clean = None if attack_all else self.predict(x)
            attacked = torch.ones_like(y, dtype=torch.bool) if attack_all else pred_clean == y
            if self.on_clips_done is not None:
                self.clips_done(int((~attacked).sum()))  # not attacked: finished already
            if bool(attacked.all()):
                with torch.enable_grad():
                    result = self.attack(x.detach(), y, lengths, target)
            else:
                result = self._attack_some(x, y, lengths, target, pred_clean, attacked)
        finally:
            self.model.train(was_training)
            self._score = None
        mask = self.mask(x, lengths)
        # padding frames and absent persons come back bit-identical, whatever the attack did, and so does
        # the score channel, which the attack never saw
        result.x_adv = join_score(torch.where(mask, result.x_adv.detach(), x), score)
        result.attacked, result.pred_clean = attacked, pred_clean
        if pred_clean is not None:  # the clean labelling pass
            result.forward_evals = result.forward_evals + 1
        self.clips_done(y.shape[0] - self._reported)
        return result

    def _check_inputs(self, x: Tensor, target: Tensor | None) -> None:
        """Refuse, with a message naming the problem, clips that are not ``(N, C, T, V, M)`` on the layout
        (with the score channel if the model takes one), non-finite coordinates, and targets that do not
        match ``targeted``."""
        if x.dim() != 5:
            raise ValueError(f"{self.name}: x must be (N, C, T, V, M), got shape {tuple(x.shape)}")
        if self.score_channel and x.shape[1] < 3:
            raise ValueError(
                f"{self.name}: the model takes coordinates then the keypoint score, x (N, C + 1, T, V, M) with "
                f"C >= 2 coordinates; got {x.shape[1]} channel(s)"
            )
        if x.shape[3] != self.layout.num_joints:
            raise ValueError(
                f"{self.name}: x has V={x.shape[3]} joints but layout {self.layout.name!r} has {self.layout.num_joints}"
            )
        bad = ~torch.isfinite(x).flatten(1).all(1)
        if bool(bad.any()):
            raise ValueError(
                f"{self.name}: x has NaN or infinite coordinates in clip(s) {_clips(bad)}: mark missing joints "
                "and absent persons with zeros (the bone, angle and speed terms combine the joints of a frame, so "
                "one NaN spreads over the clip)"
            )
        if self.targeted and target is None:
            raise ValueError(f"{self.name}: a targeted attack needs target labels")
        if not self.targeted and target is not None:
            raise ValueError(f"{self.name}: target labels given to an untargeted attack (set targeted=True)")

    def clips_done(self, k: int) -> None:
        """Report ``k`` more clips of the current call finished to :attr:`on_clips_done`."""
        if k > 0 and self.on_clips_done is not None:
            self._reported += k
            self.on_clips_done(k)

    def stream(
        self,
        search: CSearch,
        width: int | None,
        start: Callable[[Tensor, Tensor], Rows],
        step: Callable[[Rows], Tensor],
    ) -> None:
        """Run every round of ``search`` (:class:`CSearch`) of every sample through at most ``width``
        rows (None: all samples at once). ``start(samples, c)`` builds the :class:`Rows` of new runs of
        ``samples`` starting at weights ``c``; ``step(rows)`` advances every row by one step in place and
        returns which runs ended ``(n,)`` bool (having recorded their results).

        A row whose run ends goes to the next waiting run (a sample's next round queues behind the runs
        already waiting), so the networks see full batches until the queue drains, and the state is kept
        compact (:meth:`Rows.keep`, :meth:`Rows.append`) instead of gathered at every step. A sample's
        arithmetic reads its own row only, so its result does not depend on its batch mates."""
        n = search.start.shape[0]
        pending = torch.arange(n, device=search.start.device)  # first come, first served
        rows = start(pending[:0], search.start[:0])
        width = n if width is None else min(n, width)
        while True:
            free = width - len(rows)
            if free > 0 and pending.numel():
                new, pending = pending[:free], pending[free:]
                rows.append(start(new, search.start[new]))
            if len(rows) == 0:
                return
            ended = step(rows)
            if not bool(ended.any()):
                continue
            again = search.end(rows.sample[ended], rows.fooled[ended])
            if self.on_clips_done is not None:  # samples whose last round just ended
                self.clips_done(int(ended.sum()) - again.numel())
            pending = torch.cat([pending, again])
            rows.keep(~ended)

    def _attack_some(
        self,
        x: Tensor,
        y: Tensor,
        lengths: Tensor,
        target: Tensor | None,
        pred_clean: Tensor,
        attacked: Tensor,
    ) -> AttackResult:
        """The result of attacking the ``attacked`` clips only; the others keep ``x`` and their clean label,
        with no success and no evaluations (attack-specific values: NaN, or -1 for counts)."""
        n, idx = y.shape[0], attacked.nonzero().squeeze(1)
        zero = torch.zeros_like(y)
        if idx.numel() == 0:
            return AttackResult(
                x.clone(), attacked.clone(), pred_clean.clone(), zero, zero.clone(), zero.clone()
            )
        score = self._score
        self._score = None if score is None else score[idx]  # the sub-call's clips are x[idx]
        try:
            with torch.enable_grad():
                sub = self.attack(
                    x[idx].detach(), y[idx], lengths[idx], None if target is None else target[idx]
                )
        finally:
            self._score = score

        def spread(v: Tensor, fill: Tensor | float | bool) -> Tensor:
            out = fill.clone() if isinstance(fill, Tensor) else v.new_full((n, *v.shape[1:]), fill)
            out[idx] = v
            return out

        def blank(v: Tensor) -> float | bool:
            return float("nan") if v.is_floating_point() else False if v.dtype == torch.bool else -1

        return AttackResult(
            x_adv=spread(sub.x_adv.detach(), x),
            success=spread(sub.success, False),
            pred_adv=spread(sub.pred_adv, pred_clean),
            grad_evals=spread(sub.grad_evals, 0),
            forward_evals=spread(sub.forward_evals, 0),
            iterations=spread(sub.iterations, 0),
            extras={k: spread(v, blank(v)) for k, v in sub.extras.items()},
        )

    def mask(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``(N, 1, T, 1, M)`` valid entries: the only ones an attack may change."""
        return F.valid_mask(x, lengths)

    def coordinates(self, x: Tensor) -> Tensor:
        """The coordinates of a model input ``x``: without its score channel, if the model takes one. What
        the distances and metrics of an attack's result are computed on."""
        return split_score(x, self.score_channel)[0]

    def model_input(self, x: Tensor, rows: Tensor | None = None) -> Tensor:
        """What the model takes for the coordinates ``x (n, C, T, V, M)`` of the clips ``rows`` of the current
        :meth:`attack` call (indices or a boolean mask over its clips; None: all of them, in order): ``x`` with
        their score channel appended when the model takes one, else ``x`` itself."""
        if self._score is None:
            return x
        return join_score(x, self._score if rows is None else self._score[rows])

    def classify(self, x: Tensor, rows: Tensor | None = None) -> Tensor:
        """The model's logits ``(n, K)`` of the coordinates ``x`` of clips ``rows`` (:meth:`model_input`)."""
        return self.model(self.model_input(x, rows))

    def input_grad(self, loss: Tensor, inputs: Tensor) -> Tensor:
        """Gradient of ``loss.sum()`` with respect to ``inputs`` only."""
        (g,) = torch.autograd.grad(loss.sum(), inputs)
        return g

    @torch.no_grad()
    def predict(self, x: Tensor, batch: int = 256, rows: Tensor | None = None) -> Tensor:
        """The classifier's labels ``(n,)`` of the coordinates ``x`` of clips ``rows`` (:meth:`model_input`),
        ``batch`` clips at a time."""
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        x = self.model_input(x, rows)
        return torch.cat([self.model(x[i : i + batch]).argmax(1) for i in range(0, x.shape[0], batch)])

    def result(
        self,
        x_adv: Tensor,
        y: Tensor,
        target: Tensor | None,
        grad_evals: Tensor,
        forward_evals: Tensor | None = None,
        iterations: Tensor | None = None,
        pred: Tensor | None = None,
        **extras: Tensor,
    ) -> AttackResult:
        """The :class:`AttackResult` of ``x_adv``: its labels decide success. An attack that has already
        run the classifier on a sample's ``x_adv`` passes that label in ``pred``; a final forward pass
        labels the rest (``pred`` None or -1). ``forward_evals`` counts the attack's own forward-only passes
        (default none), to which this labelling pass is added where it runs; ``iterations`` defaults to one
        per gradient evaluation."""
        todo = torch.ones_like(y, dtype=torch.bool) if pred is None else pred < 0
        if pred is None:
            pred = self.predict(x_adv)
        elif bool(todo.any()):
            pred = pred.clone()
            pred[todo] = self.predict(x_adv[todo], rows=todo)
        own = torch.zeros_like(grad_evals) if forward_evals is None else forward_evals
        return AttackResult(
            x_adv=x_adv,
            success=is_success(pred, y, target),
            pred_adv=pred,
            grad_evals=grad_evals,
            forward_evals=own + todo.long(),
            iterations=grad_evals.clone() if iterations is None else iterations,
            extras=extras,
        )

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        raise NotImplementedError


def build_attack(name: str, model: nn.Module, layout: str | Layout, **kwargs) -> Attack:
    """Build the registered attack ``name`` (one of :func:`list_attacks`) against ``model`` (``(N, C, T, V,
    M)`` to logits ``(N, K)``) on ``layout`` (name or :class:`Layout`); ``kwargs`` are the attack's
    hyper-parameters. An unknown name is a ``KeyError`` listing the known ones.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
        >>> attack = build_attack("ifgsm", model, "ntu25", eps=0.01, steps=2)
        >>> type(attack).__name__, attack.eps, attack.alpha, attack.random_start
        ('IFGSMAttack', 0.01, 0.001, False)
    """
    return ATTACKS.get(name)(model, layout, **kwargs)


def list_attacks() -> list[str]:
    """The names of the registered attacks.

    Example:
        >>> list_attacks()
        ['admm', 'apgd', 'autoattack', 'cw', 'ifgsm', 'mifgsm', 'pgd', 'smart', 'square', 'zheng2020']
    """
    return ATTACKS.names()
