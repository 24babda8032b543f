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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    """What an attack returns for a batch of N clips."""

    x_adv: Tensor  # (N, C, T, V, M) as the input, score channel unchanged: the best successful candidate,
    # else the last one
    success: Tensor  # (N,) bool: attacked and now misclassified (untargeted) or labelled as the target
    pred_adv: Tensor  # (N,) the classifier's label of x_adv
    grad_evals: Tensor  # (N,) classifier forward+backward passes spent on each sample
    forward_evals: Tensor  # (N,) extra forward-only passes (candidate checks)
    iterations: Tensor  # (N,) outer iterations each sample was attacked for
    extras: dict[str, Tensor] = field(default_factory=dict)  # attack-specific (N,) values
    attacked: Tensor | None = None  # (N,) bool: the clip was attacked (set by Attack.__call__)
    pred_clean: Tensor | None = None  # (N,) the classifier's label of x (None under attack_all)


def margin_loss(logits: Tensor, y: Tensor, target: Tensor | None, kappa: float) -> Tensor:
    """The C&W margin, ``(N,)``: untargeted ``relu(Z_y - max_{j!=y} Z_j + kappa)``, targeted
    ``relu(max_{j!=t} Z_j - Z_t + kappa)``."""
    label = y if target is None else target
    own = logits.gather(1, label[:, None]).squeeze(1)
    other = logits.masked_fill(nn.functional.one_hot(label, logits.shape[1]).bool(), float("-inf")).amax(1)
    gap = own - other if target is None else other - own
    return torch.relu(gap + kappa)


def is_success(pred: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    return pred != y if target is None else pred == target


def _clips(bad: Tensor) -> str:
    """The first clips where ``bad (N,)`` holds, for an error message."""
    clips = bad.nonzero().squeeze(1).tolist()
    return f"{clips[:10]}{' ...' if len(clips) > 10 else ''}"


def append_rows(a: Tensor, k: int, fill: float | bool = 0) -> Tensor:
    """``a`` with ``k`` more rows, each filled with ``fill`` (the state of samples joining a batch)."""
    return torch.cat([a, a.new_full((k, *a.shape[1:]), fill)]) if k else a


class BatchAdam:
    """Adam on the rows of one tensor, with a step count per row, so that each step updates only the
    samples still being attacked. ``torch.optim.Adam`` keeps one step count per tensor and updates every
    row, which is why this small optimiser is written here."""

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

    def grow(self, k: int) -> Tensor:
        """Append ``k`` fresh rows (zero parameter, zero moments, step 0); returns the new, larger parameter."""
        self.param, self.m, self.v, self.t = (append_rows(a, k) for a in (self.param, self.m, self.v, self.t))
        return self.param

    def keep(self, rows: Tensor) -> Tensor:
        """Keep only ``rows`` (indices or a boolean mask) of the parameter and its state; returns the new,
        smaller parameter, which later steps update."""
        self.param, self.m, self.v, self.t = (a[rows] for a in (self.param, self.m, self.v, self.t))
        return self.param


class Attack:
    """Base class. Subclasses set ``name`` and implement :meth:`attack` on tensors already on the model's
    device, with the model in eval mode, returning an :class:`AttackResult`. They run the model through
    :meth:`classify` and :meth:`predict`, never ``self.model`` itself, so that a model with a score channel
    gets it (see the module docstring); ``score_channel`` is the model's own attribute (false if it has
    none)."""

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
        dev = self.device
        x = x.to(dev)
        y = y.to(dev)
        lengths = torch.full_like(y, x.shape[2]) if lengths is None else lengths.to(dev)
        target = None if target is None else target.to(dev)
        if target is not None and bool((target == y).any()):
            raise ValueError(
                f"{self.name}: target equals the label y in clip(s) {_clips(target == y)}: a target must be "
                "another label"
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

    def clips_done(self, k: int) -> None:
        """Report ``k`` more clips of the current call finished to :attr:`on_clips_done`."""
        if k > 0 and self.on_clips_done is not None:
            self._reported += k
            self.on_clips_done(k)

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
    """Build the registered attack ``name`` against ``model`` on ``layout``."""
    return ATTACKS.get(name)(model, layout, **kwargs)


def list_attacks() -> list[str]:
    return ATTACKS.names()
