"""The strong and transfer attacks: APGD, APGD-T, Square, AutoAttack and MI-FGSM (docs/METHOD.md section 4).

The invariants every attack keeps (padding restored, model state untouched, misclassified clips left
alone) are in tests/test_attacks.py, parametrised over the registry; this module checks what these attacks
claim: APGD reaches the analytic minimal distance of a linear classifier, Square never takes a gradient,
AutoAttack is never weaker than its components, and every attack runs through a score fusion.
"""

import inspect
import re

import pytest
import torch
from torch import nn

from lightning_skel.attacks import ATTACKS, build_attack, list_attacks
from lightning_skel.attacks.apgd import dlr_loss, dlr_loss_targeted
from lightning_skel.attacks.square import SquareAttack, _eta_templates
from lightning_skel.data.synthetic import generate
from lightning_skel.models import ScoreFusion
from lightning_skel.skeleton import features as F
from tests.test_attacks import FAST, GRADIENT_FREE, TinyNet

NEW = ["apgd", "square", "autoattack", "mifgsm"]


def train_tiny(seed: int, x, y, num_classes: int = 12) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet(x.shape[1:], num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.seen_training.clear()
    return model.eval()


@pytest.fixture(scope="module")
def data():
    d = generate(4, seed=0, frames=16, num_subjects=2)
    x, y = torch.as_tensor(d["x"]), torch.as_tensor(d["y"])
    lengths = torch.as_tensor(d["lengths"])
    return x * F.valid_mask(x, lengths), y, lengths


@pytest.fixture(scope="module")
def victim(data):
    """A TinyNet and 16 clips it labels right."""
    x, y, lengths = data
    model = train_tiny(0, x, y)
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    assert keep.sum() >= 16
    return model, x[keep][:16], y[keep][:16], lengths[keep][:16]


def rounding(x) -> float:
    """How far ``(x + delta) - x`` may be from ``delta``: a rounding of the coordinates (two ulps of the
    largest)."""
    return float(2 * torch.finfo(x.dtype).eps * x.abs().max())


# ---------------------------------------------------------------------------------------------- APGD


class Linear(nn.Module):
    """Logits ``W vec(x) + b``: the minimal distance of a clip to another label is known in closed form."""

    def __init__(self, shape, num_classes: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        dim = int(torch.tensor(shape).prod())
        self.lin = nn.Linear(dim, num_classes).double()
        with torch.no_grad():
            # logits of a few units: a saturated softmax would round the cross-entropy's gradient away
            self.lin.weight.copy_(0.1 * torch.randn(num_classes, dim, generator=gen, dtype=torch.float64))
            self.lin.bias.copy_(torch.randn(num_classes, generator=gen, dtype=torch.float64))

    def forward(self, x):
        return self.lin(x.flatten(1))


def linear_clips(num_classes: int, seed: int = 0):
    """Six clips of 6 frames with padding (lengths 3 to 6) and, in half of them, an absent second person,
    the model's weights non-zero on every entry; their labels are the model's."""
    gen = torch.Generator().manual_seed(seed)
    n, shape = 6, (3, 6, 25, 2)
    x = 0.3 * torch.randn(n, *shape, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([3, 6, 4, 5, 6, 3])
    x[::2, ..., 1] = 0
    x = x * F.valid_mask(x, lengths)
    model = Linear(shape, num_classes, seed).eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, lengths


def minimal_distance(model: Linear, x, y, lengths, norm: str):
    """``(N,)``: the smallest perturbation of the valid entries that makes another class win,
    ``min_j (Z_y - Z_j) / |w_y - w_j|_dual``, the dual norm (L1 for L-infinity, L2 for L2) over the valid
    entries only: padding and absent persons may not move."""
    with torch.no_grad():
        z = model(x)
        w = model.lin.weight
        valid = F.valid_mask(x, lengths).expand_as(x).flatten(1).to(w.dtype)  # (N, D)
        diff = (w[y][:, None, :] - w[None]) * valid[:, None, :]  # (N, K, D)
        dual = diff.abs().sum(2) if norm == "linf" else diff.pow(2).sum(2).sqrt()
        gap = z.gather(1, y[:, None]) - z
        own = nn.functional.one_hot(y, z.shape[1]).bool()
        return (gap / dual).masked_fill(own, float("inf")).amin(1)


@pytest.mark.parametrize(
    ("norm", "num_classes", "kwargs"),
    [
        ("linf", 2, {"loss": "ce"}),
        ("l2", 2, {"loss": "ce"}),
        ("linf", 5, {"loss": "dlr"}),
        ("linf", 5, {"loss": "dlr", "n_target_classes": 4}),
        ("l2", 5, {"loss": "dlr", "n_target_classes": 4}),
    ],
    ids=["ce-binary-linf", "ce-binary-l2", "dlr-linf", "apgd-t-linf", "apgd-t-l2"],
)
def test_apgd_reaches_the_minimal_distance_of_a_linear_model(norm, num_classes, kwargs):
    """Just above a linear model's minimal distance (1 % more) APGD fools every clip; just below (1 % less)
    none can be fooled, which it must not claim: it stays in the ball, over the valid entries. The
    cross-entropy is monotone in the margin only with two classes; with more, the DLR losses are the ones
    whose ascent finds the nearest boundary: the targeted one (its numerator, ``Z_y - Z_t``, is linear) in
    both balls, the untargeted one in the L-infinity ball (in the L2 ball it may spend the budget on pushing
    the third logit down, which raises the ratio too: an interior maximum the test does not hold it to)."""
    model, x, y, lengths = linear_clips(num_classes)
    d = minimal_distance(model, x, y, lengths, norm)
    for factor, fooled in ((1.01, True), (0.99, False)):
        for i in range(x.shape[0]):
            eps = float(d[i]) * factor
            attack = build_attack("apgd", model, "ntu25", norm=norm, eps=eps, n_iter=100, **kwargs)
            res = attack(x[i : i + 1], y[i : i + 1], lengths[i : i + 1])
            assert res.success.item() is fooled, (norm, i, factor)
            delta = (res.x_adv - x[i : i + 1]).flatten()
            size = delta.abs().max() if norm == "linf" else delta.norm()
            assert size <= eps * (1 + 1e-9)
            with torch.no_grad():
                assert torch.equal(model(res.x_adv).argmax(1), res.pred_adv)


def test_apgd_checkpoints_are_the_papers():
    """``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` of 100 iterations."""
    model = nn.Linear(1, 2)
    assert build_attack("apgd", model, "ntu25").checkpoints() == [22, 41, 57, 70, 80, 87, 93, 99]
    # 10 iterations: gaps int(2.2) = 2, then max(2 - 1, 1) = 1
    assert build_attack("apgd", model, "ntu25", n_iter=10).checkpoints() == [2, 3, 4, 5, 6, 7, 8, 9, 10]


class Flat(nn.Module):
    """Logits that do not depend on the input: the loss never rises, so every checkpoint halves the step."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([2.0, 0.0, 0.0, -1.0]))

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_halves_the_step_at_every_checkpoint_without_progress(data, loss):
    """A constant loss rises in none of the steps (condition 1 of the paper), so the step, 2 eps at the
    start, halves at each of the 8 checkpoints of 100 iterations."""
    x, _, lengths = data
    res = build_attack("apgd", Flat(), "ntu25", eps=0.01, loss=loss)(
        x[:3], torch.zeros(3).long(), lengths[:3]
    )
    torch.testing.assert_close(res.extras["step"], torch.full((3,), 2 * 0.01 / 2**8))
    assert res.grad_evals.tolist() == [101] * 3
    assert not res.success.any()


def test_dlr_losses_hand_computed():
    z = torch.tensor([[4.0, 1.0, 3.0, 0.0]])
    # untargeted: -(Z_y - max other) / (Z_pi1 - Z_pi3) = -(4 - 3) / (4 - 1)
    torch.testing.assert_close(dlr_loss(z, torch.tensor([0])), torch.tensor([-1 / 3]))
    # y not on top: -(1 - 4) / (4 - 1)
    torch.testing.assert_close(dlr_loss(z, torch.tensor([1])), torch.tensor([1.0]))
    # targeted at 2: -(Z_y - Z_t) / (Z_pi1 - (Z_pi3 + Z_pi4) / 2) = -(4 - 3) / (4 - 0.5)
    torch.testing.assert_close(
        dlr_loss_targeted(z, torch.tensor([0]), torch.tensor([2])), torch.tensor([-1 / 3.5])
    )


def test_apgd_t_targets_the_next_most_likely_classes(victim):
    """APGD-T's k runs aim at the clean clip's 2nd to (k + 1)th classes, each on the clips still robust: a
    clip spends one run per target until fooled, and the number of target classes is cut to K - 1."""
    model, x, y, lengths = victim
    res = build_attack("apgd", model, "ntu25", eps=0.005, n_iter=10, loss="dlr", n_target_classes=3)(
        x, y, lengths
    )
    runs = res.iterations // 10
    assert set(runs.tolist()) <= {1, 2, 3}
    assert torch.equal(res.grad_evals, runs * 11)
    assert (runs[~res.success] == 3).all()  # robust clips tried every target
    # 12 classes: at most 11 targets; 4 classes: at most 3
    flat = build_attack("apgd", Flat(), "ntu25", eps=0.01, n_iter=5, loss="dlr", n_target_classes=9)
    out = flat(x[:2], torch.zeros(2).long(), lengths[:2])
    assert out.iterations.tolist() == [15, 15]


# -------------------------------------------------------------------------------------------- Square


class NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        return z.clone()

    @staticmethod
    def backward(ctx, g):
        raise AssertionError("the model was differentiated")


class ForwardOnly(nn.Module):
    """A classifier that fails if anything differentiates through it, and records each forward pass's
    rows and whether autograd was recording."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x):
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return NoBackward.apply(self.net(x))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_never_calls_backward(victim, norm):
    """Square runs the model forward only, with autograd off: no backward, no parameter gradient; the
    result's forward evaluations are its queries (the clean labelling pass included), every one of them a
    row the model saw, and a clip stops querying once fooled."""
    tiny, x, y, lengths = victim
    for p in tiny.parameters():
        p.grad = None
    model = ForwardOnly(tiny).eval()
    eps = 0.05 if norm == "linf" else 1.0
    res = build_attack("square", model, "ntu25", norm=norm, eps=eps, n_queries=80)(x, y, lengths)
    assert model.calls and not any(grad for _, grad in model.calls)
    assert all(p.grad is None for p in tiny.parameters())
    assert res.grad_evals.tolist() == [0] * len(y)
    assert sum(rows for rows, _ in model.calls) == int(res.forward_evals.sum())
    assert (res.forward_evals <= 80 + 1).all()
    assert res.success.any()
    assert (res.forward_evals[res.success] < 81).any()  # fooled clips stopped early
    assert (res.forward_evals[~res.success] == 81).all()  # the others spent the budget
    with torch.no_grad():
        assert torch.equal(tiny(res.x_adv).argmax(1), res.pred_adv)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_stays_in_the_ball(victim, norm):
    """L-infinity: every valid entry at most eps from the clip (the start puts each at +-eps); L2: the
    perturbation's norm is eps exactly, the authors' search keeping it on the sphere."""
    model, x, y, lengths = victim
    eps = 0.01 if norm == "linf" else 0.2
    res = build_attack("square", model, "ntu25", norm=norm, eps=eps, n_queries=40)(x, y, lengths)
    delta = (res.x_adv - x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + rounding(x)
    else:
        torch.testing.assert_close(delta.norm(dim=1), torch.full((len(y),), eps), rtol=1e-5, atol=0)


def test_square_p_schedule_is_the_authors():
    sq = SquareAttack(nn.Linear(1, 2), "ntu25", n_queries=10000, rescale_schedule=False)
    expected = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 201: 0.1, 501: 0.05, 1001: 0.025, 8000: 0.8 / 256}
    for i, p in expected.items():
        assert sq.p_selection(i) == pytest.approx(p), i
    assert sq.p_selection(8001) == pytest.approx(0.8 / 512)
    # stretched over 1000 queries: iteration i reads the schedule at 10 i
    short = SquareAttack(nn.Linear(1, 2), "ntu25", n_queries=1000)
    assert short.p_selection(1) == pytest.approx(0.8) and short.p_selection(2) == pytest.approx(0.4)
    assert short.p_selection(801) == pytest.approx(0.8 / 512)


def test_square_linf_window_covers_the_fraction_p_of_the_valid_frames(victim):
    """A candidate differs from the best perturbation in one window of ``round(sqrt(p) T_n)`` valid frames
    by ``round(sqrt(p) 25)`` consecutive joints, every coordinate and person there set to +-eps."""
    model, x, _, lengths = victim
    sq = SquareAttack(model, "ntu25", eps=0.01)
    maskf = F.valid_mask(x, lengths).double()
    x = x.double()
    gen = torch.Generator().manual_seed(3)
    cand = sq._propose(torch.zeros_like(x), maskf, lengths, 0.25, gen)
    changed = cand != 0  # (N, C, T, V, M)
    assert ((cand.abs() == 0.01) | ~changed).all()
    assert not (changed & (maskf == 0)).any()
    window = changed[:, 0, :, :, 0]  # the first person is present in every clip
    frames = window.any(2).sum(1)
    joints = window.any(1).sum(1)
    assert torch.equal(frames, torch.round(0.5 * lengths.double()).long())
    assert (joints == 12).all()  # round(12.5), to even
    assert torch.equal(window.sum((1, 2)), frames * joints)  # a full rectangle
    last = torch.where(window.any(2), torch.arange(x.shape[2]), -1).amax(1)
    assert (last < lengths).all()


def test_square_l2_pattern_is_the_authors():
    """The L2 window pattern against the authors' loop (concentric squares of weight 1 / (k + 1)^2 in each
    half, halves normalised, the second negated), here for odd and even sides and both splits."""

    def reference(s: int, transpose: bool) -> torch.Tensor:
        def rect(h: int, w: int) -> torch.Tensor:
            out = torch.zeros(h, w, dtype=torch.float64)
            ch, cw = h // 2, w // 2
            for k in range(max(ch, cw) + 1):
                out[max(ch - k, 0) : ch + k + 1, max(cw - k, 0) : cw + k + 1] += 1 / (k + 1) ** 2
            return out / out.norm()

        eta = torch.cat([rect(s // 2, s), -rect(s - s // 2, s)])
        eta = eta / eta.norm()
        return eta.T if transpose else eta

    for s in (3, 4, 7):
        for transpose in (False, True):
            got = _eta_templates(
                torch.tensor([s]), torch.tensor([s]), torch.tensor([transpose]), s + 1, s + 2
            )[0]
            torch.testing.assert_close(got[:s, :s], reference(s, transpose))
            assert got[s:].abs().max() == 0 and got[:, s:].abs().max() == 0


# ----------------------------------------------------------------------------------------- AutoAttack


def test_autoattack_is_never_weaker_than_its_components(victim):
    """Each component runs on the clips the previous ones left robust and fools there exactly what it
    fools alone on those clips, so AutoAttack's successes hold each component's on the same clips; its
    counts are the components' sums."""
    model, x, y, lengths = victim
    common = {"eps": 0.015, "seed": 0}
    aa = build_attack("autoattack", model, "ntu25", **common, n_iter=10, n_target_classes=3, n_queries=200)
    res = aa(x, y, lengths)
    parts = [
        ("apgd", {"n_iter": 10, "loss": "ce"}),
        ("apgd", {"n_iter": 10, "loss": "dlr", "n_target_classes": 3}),
        ("square", {"n_queries": 200, "rescale_schedule": False}),
    ]
    robust = torch.ones_like(y, dtype=torch.bool)
    grad_evals = torch.zeros_like(y)
    fooled_any = torch.zeros_like(robust)
    for k, (name, kwargs) in enumerate(parts):
        alone = build_attack(name, model, "ntu25", **common, **kwargs)
        rows = robust.nonzero().squeeze(1)
        part = alone(x[rows], y[rows], lengths[rows], attack_all=True)
        assert torch.equal(res.extras["component"][rows] == k, part.success)
        assert (res.success[rows] >= part.success).all()
        grad_evals[rows] += part.grad_evals
        fooled_any[rows] |= part.success
        robust[rows[part.success]] = False
        # on all the clips, alone, each component fools no more than AutoAttack
        assert int(alone(x, y, lengths).success.sum()) <= int(res.success.sum())
    assert torch.equal(res.success, fooled_any)
    assert torch.equal(res.grad_evals, grad_evals)
    assert 0 < int(res.success.sum()) < len(y)  # the eps leaves work for later components
    assert (res.extras["component"] > 0).any()


def test_autoattack_versions(victim):
    model = victim[0]
    assert build_attack("autoattack", model, "ntu25").attacks == ("apgd-ce", "apgd-t", "square")
    rand = build_attack("autoattack", model, "ntu25", version="rand")
    assert rand.attacks == ("apgd-ce", "apgd-dlr")
    assert [c.eot_iter for c in rand.components] == [20, 20]
    custom = build_attack("autoattack", model, "ntu25", version="custom", attacks=["square", "apgd-dlr"])
    assert [c.name for c in custom.components] == ["square", "apgd"]
    assert custom.components[1].loss == "dlr" and custom.components[1].n_target_classes is None
    std = build_attack("autoattack", model, "ntu25").components
    assert std[1].n_target_classes == 9 and std[2].n_queries == 5000 and not std[2].rescale_schedule


# ------------------------------------------------------------------------------------------- MI-FGSM


def test_mifgsm_without_momentum_is_ifgsm(victim):
    """With decay 0 the accumulated gradient is the last one, whose sign I-FGSM steps along."""
    model, x, y, lengths = victim
    mi = build_attack("mifgsm", model, "ntu25", eps=0.02, steps=5, decay=0.0)(x, y, lengths)
    ifgsm = build_attack("ifgsm", model, "ntu25", eps=0.02, steps=5, alpha=0.02 / 5)(x, y, lengths)
    assert torch.equal(mi.x_adv, ifgsm.x_adv)


class Quadratic(nn.Module):
    """Two logits, ``(0, q(x'))`` with ``q(x') = 0.1 + u.d + sum(h d^2) / 2`` for ``d = x' - x`` around the
    clips ``x`` it was built on: the cross-entropy's input gradient for label 1 is ``-sigmoid(-q) (u + h d)``,
    whose positive factor MI-FGSM's normalisation removes. Small ``u`` and large ``h`` make the gradient
    turn within a few steps; ``q`` stays near 0, so the softmax does not saturate."""

    def __init__(self, x) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.register_buffer("center", x.clone())
        self.u = nn.Parameter(1e-3 * torch.randn(x.shape[1:], generator=gen, dtype=torch.float64))
        self.h = nn.Parameter(0.1 * torch.randn(x.shape[1:], generator=gen, dtype=torch.float64))

    def grad_q(self, x):
        return self.u + self.h * (x - self.center)

    def forward(self, x):
        d = x - self.center
        q = 0.1 + (self.u * d + 0.5 * self.h * d * d).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(q), q], 1)


def test_mifgsm_steps_along_the_accumulated_normalised_gradient(victim):
    """Three steps against the closed-form gradient: ``g <- g + grad / mean|grad|`` over the valid entries,
    ``delta <- clamp(delta + alpha sign(g))``; the momentum keeps the sign of entries whose gradient
    turned."""
    _, x, _, lengths = victim
    x = x[:3].double()
    lengths = lengths[:3]
    model = Quadratic(x)
    y = torch.ones(3, dtype=torch.long)
    maskf = F.valid_mask(x, lengths).double()
    eps, steps = 0.03, 3
    alpha = eps / steps
    delta, g = torch.zeros_like(x), torch.zeros_like(x)
    count = maskf.flatten(1).sum(1).view(-1, 1, 1, 1, 1) * 3 * 25
    turned = torch.zeros_like(x, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(steps):
            grad = -model.grad_q(x + delta) * maskf  # d CE / d q < 0 for label 1
            turned |= (grad.sign() != g.sign()) & (g != 0)
            g = g + grad / (grad.abs().sum((1, 2, 3, 4), keepdim=True) / count)
            delta = (delta + alpha * g.sign()).clamp(-eps, eps)
    assert turned.any()  # the gradient changed sign somewhere: the momentum matters
    res = build_attack("mifgsm", model, "ntu25", eps=eps, steps=steps)(x, y, lengths)
    torch.testing.assert_close(res.x_adv, x + delta, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------- every attack


@pytest.fixture(scope="module")
def streams(data):
    """Two TinyNets trained from different seeds, the streams of a fusion."""
    x, y, _ = data
    return train_tiny(0, x, y), train_tiny(1, x, y)


@pytest.mark.parametrize("name", list_attacks())
def test_attack_runs_against_a_score_fusion(data, streams, name):
    """A list of checkpoints is attacked as one classifier, the sum of their logits (ScoreFusion): the
    attack's labels are the fusion's, a gradient attack differentiates through every stream, and with one
    stream weighted 0 the attack is the attack on the other stream alone, bit for bit (``1 a + 0 b`` is
    ``a`` exactly, and so is the gradient that reaches the input through ``a`` plus the zero one through
    ``b``)."""
    x, y, lengths = data
    a, b = streams
    fused = ScoreFusion([a, b]).eval()
    with torch.no_grad():
        keep = (fused(x).argmax(1) == y).nonzero().squeeze(1)[:6]
    x, y, lengths = x[keep], y[keep], lengths[keep]
    backward = {id(a): 0, id(b): 0}
    hooks = [m.register_full_backward_hook(lambda m, gi, go: backward.__setitem__(id(m), backward[id(m)] + 1))
             for m in (a, b)]  # fmt: skip
    try:
        res = build_attack(name, fused, "ntu25", **FAST[name])(x, y, lengths)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        assert torch.equal(fused(res.x_adv).argmax(1), res.pred_adv)
    if name in GRADIENT_FREE:
        assert backward == {id(a): 0, id(b): 0}
    else:
        assert backward[id(a)] > 0 and backward[id(b)] > 0
    only_a = build_attack(name, ScoreFusion([a, b], [1.0, 0.0]).eval(), "ntu25", **FAST[name])(x, y, lengths)
    alone = build_attack(name, a, "ntu25", **FAST[name])(x, y, lengths)
    assert torch.equal(only_a.x_adv, alone.x_adv)
    assert torch.equal(only_a.success, alone.success)


@pytest.mark.parametrize("name", list_attacks())
def test_the_model_never_sees_perturbed_padding(victim, name):
    """Not only restored at the end: every input the model gets during the attack holds the clean padding
    and absent person (here the same frames and person in every clip, so any batch of them can be
    checked)."""
    model, x, y, lengths = victim
    x = x.clone()
    x[:, :, 12:] = 0
    x[:, :, :, :, 1] = 0
    lengths = torch.full_like(lengths, 12)
    seen = []

    def check(module, args):
        (inp,) = args
        seen.append(bool((inp[:, :, 12:] == 0).all() and (inp[..., 1] == 0).all()))

    hook = model.register_forward_pre_hook(check)
    try:
        res = build_attack(name, model, "ntu25", **FAST[name])(x, y, lengths)
    finally:
        hook.remove()
    assert res.attacked.sum() >= 4 and (res.x_adv != x).any()
    assert len(seen) > 1 and all(seen)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("apgd", {"loss": "ce", "n_iter": 20}),
        ("apgd", {"loss": "dlr", "n_iter": 20}),
        ("apgd", {"loss": "ce", "n_iter": 20, "norm": "l2", "eps": 1.5}),
        ("square", {"n_queries": 500, "eps": 0.1}),  # a random search: a larger ball than the gradients need
        ("mifgsm", {"steps": 20, "alpha": 0.005}),
        ("autoattack", {"n_iter": 10, "n_queries": 100}),
    ],
)
def test_targeted_variants_reach_targets(victim, name, kwargs):
    model, x, y, lengths = victim
    target = (y + 3) % 12
    res = build_attack(name, model, "ntu25", targeted=True, **{"eps": 0.05, **kwargs})(x, y, lengths, target)
    assert (res.pred_adv[res.success] == target[res.success]).all()
    assert res.success.float().mean() >= 0.75, f"{name}: {res.success.float().mean():.2f}"


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("apgd", {"n_iter": 20}),
        ("apgd", {"n_iter": 20, "loss": "dlr"}),
        ("apgd", {"n_iter": 20, "loss": "dlr", "n_target_classes": 3}),
        ("square", {"n_queries": 200, "eps": 0.1}),
        ("mifgsm", {}),
        ("autoattack", {"n_iter": 10, "n_target_classes": 3, "n_queries": 100}),
    ],
)
def test_untargeted_attacks_flip_labels_within_the_ball(victim, name, kwargs):
    model, x, y, lengths = victim
    kwargs = {"eps": 0.05, **kwargs}
    res = build_attack(name, model, "ntu25", **kwargs)(x, y, lengths)
    assert (res.x_adv - x).abs().max() <= kwargs["eps"] + rounding(x)
    with torch.no_grad():
        assert torch.equal(model(res.x_adv).argmax(1), res.pred_adv)
    assert torch.equal(res.success, res.pred_adv != y)
    assert res.success.float().mean() >= 0.75, f"{name}: {res.success.float().mean():.2f}"


def test_dlr_needs_enough_classes(data):
    x, _, lengths = data
    two = TinyNet(x.shape[1:], 2).eval()
    three = TinyNet(x.shape[1:], 3).eval()
    with torch.no_grad():
        y2, y3 = two(x[:2]).argmax(1), three(x[:2]).argmax(1)
    with pytest.raises(ValueError, match="apgd: the DLR loss needs 3 classes or more; the model has 2"):
        build_attack("apgd", two, "ntu25", loss="dlr", n_iter=2)(x[:2], y2, lengths[:2])
    with pytest.raises(
        ValueError, match=r"targeted DLR loss \(APGD-T\) needs 4 classes or more; the model has 3"
    ):
        build_attack("apgd", three, "ntu25", loss="dlr", n_iter=2, n_target_classes=2)(x[:2], y3, lengths[:2])


def test_argument_errors(victim):
    """Every bad hyper-parameter is named at once, with its rule."""
    model = victim[0]
    bad = {
        "apgd": ({"norm": "l1", "eps": 0, "n_iter": 0, "n_restarts": 1.5, "loss": "hinge", "rho": 2,
                  "momentum": 0, "eot_iter": 0, "seed": "a"},
                 ["norm must be one of ('linf', 'l2'), got 'l1'", "eps must be > 0 (metres), got 0",
                  "n_iter must be an integer >= 1, got 0", "n_restarts must be an integer >= 1, got 1.5",
                  "loss must be one of ('ce', 'dlr'), got 'hinge'", "rho must be in (0, 1], got 2",
                  "momentum must be in (0, 1], got 0", "eot_iter must be an integer >= 1, got 0",
                  "seed must be an integer or null, got 'a'"]),
        "square": ({"norm": "linf2", "eps": -1, "n_queries": 0, "p_init": 0, "n_restarts": 0, "loss": "dlr",
                    "rescale_schedule": "yes", "seed": 1.0},
                   ["norm must be one of ('linf', 'l2')", "eps must be > 0 (metres), got -1",
                    "n_queries must be an integer >= 1, got 0", "p_init must be in (0, 1], got 0",
                    "n_restarts must be an integer >= 1, got 0", "loss must be one of ('margin', 'ce'), got 'dlr'",
                    "rescale_schedule must be true or false, got 'yes'", "seed must be an integer or null, got 1.0"]),
        "autoattack": ({"norm": "l0", "eps": 0, "version": "plus", "n_iter": 0, "n_target_classes": 0,
                        "n_queries": 0},
                       ["norm must be one of ('linf', 'l2'), got 'l0'", "eps must be > 0 (metres), got 0",
                        "version must be one of ('standard', 'rand', 'custom'), got 'plus'",
                        "n_iter must be an integer >= 1, got 0", "n_target_classes must be an integer >= 1, got 0",
                        "n_queries must be an integer >= 1, got 0"]),
        "mifgsm": ({"eps": 0, "steps": 0, "alpha": -1, "decay": -0.5},
                   ["eps must be > 0 (metres), got 0", "steps must be an integer >= 1, got 0",
                    "alpha must be > 0 or null (eps / steps), got -1", "decay must be >= 0, got -0.5"]),
    }  # fmt: skip
    for name, (kwargs, parts) in bad.items():
        with pytest.raises(ValueError) as err:
            build_attack(name, model, "ntu25", **kwargs)
        assert str(err.value).startswith(f"{name}: invalid hyper-parameter(s): ")
        assert all(part in str(err.value) for part in parts), str(err.value)
    apgd_t = "n_target_classes must be null, or an integer >= 1 with loss 'dlr' and targeted false (APGD-T)"
    for kwargs in ({"n_target_classes": 3}, {"loss": "dlr", "n_target_classes": 0},
                   {"loss": "dlr", "n_target_classes": 3, "targeted": True}):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(apgd_t)):
            build_attack("apgd", model, "ntu25", **kwargs)
    attacks_rule = "attacks must be null, or with version 'custom' a non-empty list from"
    for kwargs in ({"attacks": ["square"]}, {"version": "custom"}, {"version": "custom", "attacks": []},
                   {"version": "custom", "attacks": ["fab-t"]}, {"version": "custom", "attacks": "square"}):  # fmt: skip
        with pytest.raises(ValueError, match=attacks_rule):
            build_attack("autoattack", model, "ntu25", **kwargs)


def test_class_docstrings_name_every_argument():
    for name in NEW:
        cls = ATTACKS.get(name)
        doc = cls.__doc__ or ""
        missing = [p for p in inspect.signature(cls.__init__).parameters if p != "self" and p not in doc]
        assert not missing, f"{name}: {missing}"
