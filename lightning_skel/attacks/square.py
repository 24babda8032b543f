"""The Square attack (Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020) on skeletons, in an L-infinity or L2 ball in
metres (docs/METHOD.md section 4).

Score-based and gradient-free: a random search that proposes a change of the current best perturbation
inside one window and keeps it when the margin loss falls. An image's square of pixels becomes a window
over (frames x joints): the clip's valid frames and its joints in the layout's order (consecutive joints
are mostly one limb), with the window's side along each axis ``sqrt(p)`` of that axis, so that it covers
the fraction ``p`` of the clip as the paper's square covers ``p`` of the image; every (coordinate, person)
pair is a channel with its own sign. ``p`` follows the authors' schedule from ``p_init``. The model is
only ever run forward, without gradients. ``x (N, C, T, V, M)`` in metres.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_skel.attacks.apgd import NORMS, _is_int, ball_unit, generator
from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult, is_success
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params

LOSSES = ("margin", "ce")
# the authors' schedule of p: p_init / DIVIDERS[k] from iteration BOUNDS[k - 1] + 1 (of 10 000)
BOUNDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
DIVIDERS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _eta_templates(a: Tensor, b: Tensor, along_joints: Tensor, rows: int, cols: int) -> Tensor:
    """The authors' L2 window pattern for windows of ``a (n,)`` frames by ``b (n,)`` joints, ``(n, rows,
    cols)`` (zero beyond each window): the window split in two halves along the frames, or along the joints
    where ``along_joints (n,)``; each half holds concentric rectangles, the value at an entry being
    ``sum_{k >= d} 1 / (k + 1)^2`` for ``d`` its Chebyshev distance to the half's centre, scaled to unit L2
    norm, the second half negated; the whole is scaled to unit L2 norm."""
    dev = a.device
    i = torch.arange(rows, device=dev).view(1, rows, 1)
    j = torch.arange(cols, device=dev).view(1, 1, cols)
    a, b, split = a.view(-1, 1, 1), b.view(-1, 1, 1), along_joints.view(-1, 1, 1)
    first = torch.where(split, j < b // 2, i < a // 2)
    half_a = torch.where(split, a, torch.where(first, a // 2, a - a // 2))
    half_b = torch.where(split, torch.where(first, b // 2, b - b // 2), b)
    ii = torch.where(split | first, i, i - a // 2)
    jj = torch.where(~split | first, j, j - b // 2)
    inside = (i < a) & (j < b)
    k = torch.maximum(half_a // 2, half_b // 2) + 1  # rectangles of radius 0 .. k - 1
    d = torch.maximum((ii - half_a // 2).abs(), (jj - half_b // 2).abs())
    size = max(rows, cols) + 2
    # s[m] = sum_{q < m} 1 / (q + 1)^2
    s = torch.cat(
        [torch.zeros(1, device=dev), (1.0 / torch.arange(1, size, device=dev).double() ** 2).cumsum(0)]
    )
    val = (s[k.clamp(max=size - 1)] - s[d.clamp(0, size - 1)]) * inside
    n1 = (val.pow(2) * first).sum((1, 2), keepdim=True).sqrt().clamp_min(1e-12)
    n2 = (val.pow(2) * ~first).sum((1, 2), keepdim=True).sqrt().clamp_min(1e-12)
    val = torch.where(first, val / n1, -val / n2)
    return val / val.pow(2).sum((1, 2), keepdim=True).sqrt().clamp_min(1e-12)


def _stamp(templates: Tensor, which: Tensor, li: Tensor, lj: Tensor, inside: Tensor) -> Tensor:
    """``(n, T, V)``: ``templates (n, P, rows, cols)`` read at template ``which (n, T, V)``, window row
    ``li (n, T, 1)`` and column ``lj (n, 1, V)``, zero where not ``inside (n, T, V)``."""
    rows, cols = templates.shape[2:]
    li = li.clamp(0, rows - 1)
    lj = lj.clamp(0, cols - 1)
    idx = (which * rows + li) * cols + lj  # (n, T, V)
    return templates.flatten(1).gather(1, idx.flatten(1)).view(idx.shape) * inside


@ATTACKS.register("square")
class SquareAttack(Attack):
    """The Square attack (Andriushchenko et al., ECCV 2020): score-based random search in an L-infinity or
    L2 ball of radius ``eps`` metres over the clip's valid entries, with windows over (frames x joints) in
    place of the image's squares (docs/METHOD.md section 4). It needs the model's scores only: no gradient
    is ever taken.

    Arguments:
        model (nn.Module): the classifier of raw coordinates ``(N, C, T, V, M)``.
        layout (str or Layout): the skeleton layout of the clips.
        targeted (bool): seek the given target labels, descending the target's cross-entropy (default
            false).
        norm (str): ``"linf"`` or ``"l2"`` (default ``"linf"``).
        eps (float): the ball's radius in metres (default 0.02; under ``l2`` the Euclidean norm of the whole
            clip's perturbation).
        n_queries (int): forward passes per clip and run, the random start's included (default 5000).
        p_init (float): the fraction of the clip's (frames x joints) the first windows cover (default 0.8).
        n_restarts (int): runs for the clips not yet fooled, each with its own query budget (default 1).
        loss (str): untargeted, the loss the search lowers: ``"margin"`` (``Z_y - max_{j!=y} Z_j``) or
            ``"ce"`` (minus the cross-entropy) (default ``"margin"``).
        rescale_schedule (bool): stretch the schedule of ``p``, written for 10 000 queries, over
            ``n_queries`` (default true; AutoAttack runs it unstretched).
        seed (int or None): seed of the CPU generator of the search (default 0; None: torch's global
            generator).

    Shape:
        ``x (N, C, T, V, M)`` in metres, ``y (N,)``, ``lengths (N,)``, ``target (N,)`` if targeted; the
        result's ``forward_evals`` is the queries spent on each clip, ``grad_evals`` zero.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = SquareAttack(model, "ntu25", eps=0.02, n_queries=20)(x, y)
    >>> int(res.grad_evals.max()), bool((res.x_adv - x).abs().max() <= 0.02 + 1e-6)
    (0, True)
    """

    name = "square"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        norm: str = "linf",
        eps: float = 0.02,
        n_queries: int = 5000,
        p_init: float = 0.8,
        n_restarts: int = 1,
        loss: str = "margin",
        rescale_schedule: bool = True,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, layout, targeted)
        check_params(self.name, {
            "norm": (norm, norm in NORMS, f"one of {NORMS}"),
            "eps": (eps, eps > 0, "> 0 (metres)"),
            "n_queries": (n_queries, _is_int(n_queries) and n_queries >= 1, "an integer >= 1"),
            "p_init": (p_init, 0 < p_init <= 1, "in (0, 1]"),
            "n_restarts": (n_restarts, _is_int(n_restarts) and n_restarts >= 1, "an integer >= 1"),
            "loss": (loss, loss in LOSSES, f"one of {LOSSES}"),
            "rescale_schedule": (rescale_schedule, isinstance(rescale_schedule, bool), "true or false"),
            "seed": (seed, seed is None or _is_int(seed), "an integer or null"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.norm, self.eps, self.n_queries, self.p_init = norm, float(eps), n_queries, float(p_init)
        self.n_restarts, self.loss, self.rescale_schedule, self.seed = (
            n_restarts,
            loss,
            rescale_schedule,
            seed,
        )

    def p_selection(self, i: int) -> float:
        """The fraction ``p`` the windows of search iteration ``i`` (from 0) cover: the authors' schedule."""
        it = int(i / self.n_queries * 10000) if self.rescale_schedule else i
        return self.p_init / DIVIDERS[sum(it > bound for bound in BOUNDS)]

    def margin_and_loss(self, logits: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(n,)`` each: the margin (<= 0 once fooled) and the loss the search lowers."""
        label = y if target is None else target
        own = logits.gather(1, label[:, None]).squeeze(1)
        onehot = nn.functional.one_hot(label, logits.shape[1]).bool()
        other = logits.masked_fill(onehot, float("-inf")).amax(1)
        if target is not None:
            return other - own, nn.functional.cross_entropy(logits, target, reduction="none")
        margin = own - other
        if self.loss == "margin":
            return margin, margin
        return margin, -nn.functional.cross_entropy(logits, y, reduction="none")

    def _rand(self, shape: tuple[int, ...], gen, dev) -> Tensor:
        return torch.rand(shape, generator=gen).to(dev)

    def _signs(self, shape: tuple[int, ...], gen, dev, dtype) -> Tensor:
        return torch.where(self._rand(shape, gen, dev) < 0.5, -1.0, 1.0).to(dtype)

    def _windows(self, p: float, frames: Tensor, joints: int, gen) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per clip, a window's size (``a`` frames by ``b`` joints, each ``sqrt(p)`` of the axis; under L2 odd
        and 3 at least, as the authors') and a uniform origin ``t0, v0`` inside the valid frames."""
        root = p**0.5
        a = torch.round(root * frames.double()).long()
        b = torch.full_like(a, round(root * joints))
        low = 3 if self.norm == "l2" else 1
        a, b = a.clamp_min(low), b.clamp_min(low)
        if self.norm == "l2":
            a, b = a + (a % 2 == 0).long(), b + (b % 2 == 0).long()
        a, b = torch.minimum(a, frames), b.clamp(max=joints)
        n, dev = frames.shape[0], frames.device
        t0 = (self._rand((n,), gen, dev).double() * (frames - a + 1)).long()
        v0 = (self._rand((n,), gen, dev).double() * (joints - b + 1)).long()
        return a, b, t0, v0

    @staticmethod
    def _window_mask(t0: Tensor, v0: Tensor, a: Tensor, b: Tensor, frames: int, joints: int) -> Tensor:
        """``(n, T, V)`` bool: the window of ``a`` frames from ``t0`` by ``b`` joints from ``v0``."""
        t = torch.arange(frames, device=t0.device).view(1, -1)
        v = torch.arange(joints, device=t0.device).view(1, -1)
        in_t = (t >= t0[:, None]) & (t < (t0 + a)[:, None])
        in_v = (v >= v0[:, None]) & (v < (v0 + b)[:, None])
        return in_t[:, :, None] & in_v[:, None, :]

    def _start(self, x: Tensor, maskf: Tensor, frames: Tensor, gen) -> Tensor:
        """The authors' starting perturbation: L-infinity, ``+-eps`` stripes (one sign per coordinate, joint
        and person, constant over the frames); L2, a grid of 5 x 5 windows of the L2 pattern with a random
        sign per channel and window, scaled to norm ``eps``."""
        n, c, t, v, m = x.shape
        dev, dtype = x.device, x.dtype
        if self.norm == "linf":
            return self.eps * self._signs((n, c, 1, v, m), gen, dev, dtype) * maskf
        a0 = (frames // 5).clamp_min(1)
        b0 = max(v // 5, 1)
        off_t = ((frames - 5 * a0) // 2).clamp_min(0)
        off_v = max((v - 5 * b0) // 2, 0)
        tiles_t, tiles_v = frames // a0, v // b0
        rel_t = torch.arange(t, device=dev).view(1, t) - off_t[:, None]  # (n, T)
        ti = torch.div(rel_t, a0[:, None], rounding_mode="floor")
        rel_v = torch.arange(v, device=dev).view(1, v) - off_v
        tj = torch.div(rel_v, b0, rounding_mode="floor")
        ok_t = (rel_t >= 0) & (ti < tiles_t[:, None]) & (torch.arange(t, device=dev) < frames[:, None])
        ok_v = (rel_v >= 0) & (tj < tiles_v)
        inside = ok_t[:, :, None] & ok_v[:, None, :]  # (n, T, V)
        nt, nv = int(tiles_t.max()), tiles_v
        ti, tj = ti.clamp(0, nt - 1), tj.clamp(0, nv - 1).expand(n, v)
        b = torch.full_like(a0, b0)
        templates = torch.stack(
            [
                _eta_templates(a0, b, torch.full_like(a0, k, dtype=torch.bool), int(a0.max()), b0)
                for k in (0, 1)
            ],
            1,
        ).to(dtype)  # (n, 2, a0, b0): split along the frames, along the joints
        split = self._rand((n, nt, nv), gen, dev) > 0.5  # per window, as the authors' random transpose
        tile_index = ti[:, :, None] * nv + tj[:, None, :]  # (n, T, V)
        which = split.flatten(1).gather(1, tile_index.flatten(1)).view(n, t, v).long()
        li = (rel_t - ti * a0[:, None])[:, :, None]
        lj = (rel_v - tj * b0)[:, None, :]
        pattern = _stamp(templates, which, li, lj, inside)  # (n, T, V)
        signs = self._signs((n, nt * nv, c, m), gen, dev, dtype)
        per_entry = signs.gather(
            1, tile_index.flatten(1)[:, :, None, None].expand(-1, -1, c, m)
        )  # (n, TV, C, M)
        per_entry = per_entry.view(n, t, v, c, m).permute(0, 3, 1, 2, 4)
        delta = pattern[:, None, :, :, None] * per_entry * maskf
        return self.eps * ball_unit(delta, "l2")

    def _propose(self, delta: Tensor, maskf: Tensor, frames: Tensor, p: float, gen) -> Tensor:
        """A candidate for each clip from its best perturbation ``delta``: L-infinity, a window set to
        ``+-eps`` with one sign per channel; L2, the authors' move of a second window's mass into the first
        window's pattern, the whole rescaled to norm ``eps``."""
        n, c, t, v, m = delta.shape
        dev, dtype = delta.device, delta.dtype
        a, b, t0, v0 = self._windows(p, frames, v, gen)
        w1 = self._window_mask(t0, v0, a, b, t, v)[:, None, :, :, None]  # (n, 1, T, V, 1)
        if self.norm == "linf":
            signs = self._signs((n, c, 1, 1, m), gen, dev, dtype)
            return torch.where(w1, self.eps * signs, delta) * maskf
        _, _, t1, v1 = self._windows(p, frames, v, gen)
        w2 = self._window_mask(t1, v1, a, b, t, v)[:, None, :, :, None]
        sq = delta.pow(2)
        norm_w1 = (sq * w1).sum((2, 3), keepdim=True).sqrt()  # (n, C, 1, 1, M)
        norm_ws = (sq * (w1 | w2)).sum((2, 3), keepdim=True).sqrt()
        norm_all = sq.sum((1, 2, 3, 4), keepdim=True).sqrt()
        along_joints = self._rand((n,), gen, dev) > 0.5
        templates = _eta_templates(a, b, along_joints, int(a.max()), int(b.max())).to(dtype)[:, None]
        li = (torch.arange(t, device=dev).view(1, t) - t0[:, None])[:, :, None]
        lj = (torch.arange(v, device=dev).view(1, v) - v0[:, None])[:, None, :]
        pattern = _stamp(templates, torch.zeros_like(li * lj), li, lj, w1[:, 0, :, :, 0])
        signs = self._signs((n, c, 1, 1, m), gen, dev, dtype)
        new = (pattern[:, None, :, :, None] * signs + delta * w1 / (1e-12 + norm_w1)) * maskf
        # channels: every coordinate of every person present in the clip
        channels = (c * maskf.amax(2, keepdim=True).sum(4, keepdim=True)).clamp_min(1)
        budget = ((self.eps**2 - norm_all.pow(2)).clamp_min(0) / channels + norm_ws.pow(2)).sqrt()
        new = new / (1e-12 + new.pow(2).sum((2, 3), keepdim=True).sqrt()) * budget
        cand = torch.where(w1, new, torch.where(w2, torch.zeros_like(delta), delta))
        return self.eps * ball_unit(cand, "l2")

    @torch.no_grad()
    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        n, dev = x.shape[0], x.device
        maskf = self.mask(x, lengths).to(x.dtype)
        frames = lengths.clamp(1, x.shape[2]).long()
        gen = generator(self.seed)
        delta = torch.zeros_like(x)
        pred = torch.full_like(y, -1)  # every clip's first query labels it
        queries = torch.zeros(n, dtype=torch.long, device=dev)
        fooled = torch.zeros(n, dtype=torch.bool, device=dev)
        margin_min = torch.zeros(n, dtype=x.dtype, device=dev)

        def query(d: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            logits = self.classify(x[rows] + d, rows)
            queries[rows] += 1
            margin, loss = self.margin_and_loss(logits, y[rows], None if target is None else target[rows])
            return margin, loss, logits.argmax(1)

        for _ in range(self.n_restarts):
            rows = (~fooled).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            best = self._start(x[rows], maskf[rows], frames[rows], gen)
            margin, loss, label = query(best, rows)
            for i in range(self.n_queries - 1):
                act = (margin > 0).nonzero().squeeze(1)
                if act.numel() == 0:
                    break
                cand = self._propose(best[act], maskf[rows[act]], frames[rows[act]], self.p_selection(i), gen)
                m_new, l_new, p_new = query(cand, rows[act])
                lower = l_new < loss[act]
                take = lower | (m_new <= 0)  # a lower loss, or fooled
                loss[act] = torch.where(lower, l_new, loss[act])
                margin[act] = torch.where(take, m_new, margin[act])
                label[act] = torch.where(take, p_new, label[act])
                best[act] = torch.where(take.view(-1, 1, 1, 1, 1), cand, best[act])
            delta[rows], pred[rows], margin_min[rows] = best, label, margin
            ok = is_success(label, y[rows], None if target is None else target[rows])
            fooled[rows] = ok
            self.clips_done(int(ok.sum()))
        zero = torch.zeros_like(queries)
        return self.result(x + delta, y, target, zero, queries, iterations=queries.clone(), pred=pred,
                           margin=margin_min)  # fmt: skip
