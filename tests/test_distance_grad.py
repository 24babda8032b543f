"""The distance terms' closed-form gradients (``value_and_grad``) against autograd's, and ADMM's candidate
check, which runs the classifier only where its verdict can change the attack's state."""

import pytest
import torch
from torch import nn

from lightning_skel.attacks import build_attack
from lightning_skel.attacks.admm import ADMMAttack
from lightning_skel.attacks.distances import DynamicDistance, Kinematics
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton import get_layout


def clips(
    layout: str, channels: int, n: int = 4, t: int = 7, m: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 clips around the rest pose with padding (short clips) and a person absent in some frames."""
    lay = get_layout(layout)
    gen = torch.Generator().manual_seed(3)
    rest = torch.as_tensor(lay.rest_array, dtype=torch.float64).T[:channels]
    x = rest[None, :, None, :, None] + 0.05 * torch.randn(
        n, channels, t, lay.num_joints, m, generator=gen, dtype=torch.float64
    )
    lengths = torch.tensor([t, t - 2, t - 3, 2])[:n]
    if m > 1:
        x[1, :, :, :, 1] = 0  # second person absent throughout
        x[2, :, 1:3, :, 1] = 0  # and for two frames
    x = x * F.valid_mask(x, lengths)
    return x, lengths


def perturbed(x: torch.Tensor, mask: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return x + scale * torch.randn(x.shape, generator=gen, dtype=x.dtype) * mask


def autograd_total(dist: DynamicDistance, clean: Kinematics, x_adv: torch.Tensor, mask: torch.Tensor):
    xa = x_adv.clone().requires_grad_(True)
    total, parts = dist(clean, dist.kinematics(xa, mask))
    (g,) = torch.autograd.grad(total.sum(), xa)
    return total.detach(), {k: v.detach() for k, v in parts.items()}, g


CASES = [("ntu25", 3), ("kinect20", 3), ("gait16", 3), ("openpose18", 2), ("coco17", 2)]


@pytest.mark.numerics
@pytest.mark.parametrize(("layout", "channels"), CASES)
@pytest.mark.parametrize("hinge", ["mean", "entry"])
@pytest.mark.parametrize("tau", [None, {"bone": 0.0, "angle": 0.0, "speed": 0.0}])
@pytest.mark.parametrize("scale", [0.002, 0.03])
def test_closed_form_gradients_equal_autograd(layout, channels, hinge, tau, scale):
    """Every term's value equals ``forward``'s bit for bit and its gradient autograd's, with padding and
    absent persons, both hinge readings, with the default thresholds (some hinges open, some closed at
    the small perturbation) and at 0."""
    x, lengths = clips(layout, channels)
    mask = F.valid_mask(x, lengths)
    dist = DynamicDistance(layout, {"bone": 1.0, "angle": 2.0, "speed": 0.5, "l2": 3.0}, tau, hinge=hinge)
    clean = dist.reference(x, mask)
    x_adv = perturbed(x, mask, scale, seed=4)
    want_total, want_parts, want_grad = autograd_total(dist, clean, x_adv, mask)
    total, parts, grad = dist.value_and_grad(clean, dist.kinematics(x_adv, mask))
    assert torch.equal(total, want_total)
    assert parts.keys() == want_parts.keys() and all(torch.equal(parts[k], want_parts[k]) for k in parts)
    assert grad.abs().max() > 0
    torch.testing.assert_close(grad, want_grad, rtol=1e-9, atol=1e-12)
    if tau is None and scale == 0.002 and hinge == "mean":  # some means within their thresholds: closed
        assert any(v.eq(0).any() for k, v in parts.items() if k != "l2")


@pytest.mark.parametrize("hinge", ["mean", "entry"])
def test_gradients_are_computed_on_the_open_samples_only(hinge):
    """Samples whose hinge is closed have a zero gradient: the closed forms compute the chain rule on the
    others only, and the result equals computing every sample (``gather_rows=False``, what traced code
    runs), bit for bit."""
    x, lengths = clips("ntu25", 3)
    mask = F.valid_mask(x, lengths)
    dist = DynamicDistance("ntu25", {"bone": 1.0, "angle": 2.0, "speed": 0.5}, hinge=hinge)
    clean = dist.reference(x, mask)
    # samples 0 and 2 barely moved (every hinge closed at the default thresholds), 1 and 3 moved a lot
    scale = torch.tensor([1e-5, 0.05, 1e-5, 0.05], dtype=x.dtype).view(-1, 1, 1, 1, 1)
    x_adv = x + scale * (perturbed(x, mask, 1.0, seed=8) - x)
    adv = dist.kinematics(x_adv, mask)
    for name in ("bone", "angle", "speed"):
        _, rows, g = dist.terms[name].value_and_row_grad(clean, adv)
        assert rows.tolist() == [1, 3], name
        assert g.shape[0] == 2 and g.abs().max() > 0
    total, parts, grad = dist.value_and_grad(clean, adv)
    assert grad[[0, 2]].eq(0).all() and grad[[1, 3]].abs().amax((1, 2, 3, 4)).gt(0).all()
    for name in ("bone", "angle", "speed"):
        assert dist.terms[name].value_and_row_grad(clean, adv, gather_rows=False)[1] is None
    total_all, parts_all, grad_all = dist.value_and_grad(
        clean, dist.kinematics(x_adv, mask), gather_rows=False
    )
    assert torch.equal(total, total_all) and torch.equal(grad, grad_all)
    assert all(torch.equal(parts[k], parts_all[k]) for k in parts)


def test_active_rows():
    from lightning_skel.attacks.distances import active_rows

    slope = torch.zeros(3, 4, 2)
    assert active_rows(slope).tolist() == []
    slope[1, 2, 0] = 0.5
    assert active_rows(slope).tolist() == [1]
    assert active_rows(slope, gather_rows=False) is None  # traced code: every row
    slope[[0, 2], 0, 1] = 1.0
    assert active_rows(slope) is None  # every sample open: no gather


@pytest.mark.parametrize(("layout", "channels"), [("ntu25", 3), ("coco17", 2)])
def test_distance_traces_whole_and_equal(layout, channels):
    """The kinematics, the distance and its closed-form gradients trace as one graph (torch.compile's
    ``fullgraph``, captured with eager kernels), with no branch on whether they are traced: the traced
    call takes every row (``gather_rows=False``) and gives the eager values bit for bit."""
    x, lengths = clips(layout, channels)
    mask = F.valid_mask(x, lengths)
    dist = DynamicDistance(layout, {"bone": 1.0, "angle": 2.0, "speed": 0.5, "l2": 3.0})
    clean = dist.reference(x, mask)
    x_adv = perturbed(x, mask, 0.01, seed=9)

    def total_and_grad(clean, x_adv, gather_rows):
        total, _, grad = dist.value_and_grad(
            clean, dist.kinematics(x_adv, clean.mask), gather_rows=gather_rows
        )
        return total, grad

    torch._dynamo.reset()
    traced = torch.compile(total_and_grad, backend="eager", fullgraph=True)(clean, x_adv, False)
    eager = total_and_grad(clean, x_adv, True)
    assert torch.equal(traced[0], eager[0]) and torch.equal(traced[1], eager[1])


@pytest.mark.numerics
def test_gradients_of_a_subset_equal_those_of_the_whole():
    """ADMM takes subsets of the clean side's cached kinematics and weights as samples finish."""
    x, lengths = clips("ntu25", 3)
    mask = F.valid_mask(x, lengths)
    dist = DynamicDistance("ntu25", tau={"bone": 0.0, "angle": 0.0, "speed": 0.0})
    clean = dist.reference(x, mask)
    x_adv = perturbed(x, mask, 0.01, seed=5)
    total, _, grad = dist.value_and_grad(clean, dist.kinematics(x_adv, mask))
    idx = torch.tensor([2, 0])
    sub = clean.subset(idx)
    total_i, _, grad_i = dist.value_and_grad(sub, dist.kinematics(x_adv[idx], sub.mask))
    torch.testing.assert_close(total_i, total[idx], rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_i, grad[idx], rtol=1e-12, atol=0)


class Features(nn.Module):
    """A stand-in emotion recognizer: ``forward_features`` is a fixed random projection with a tanh."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(size, 5).double()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x.flatten(1)))


def test_terms_without_closed_form_fall_back_to_autograd():
    x, lengths = clips("kinect20", 3, m=1)
    mask = F.valid_mask(x, lengths)
    torch.manual_seed(0)
    dist = DynamicDistance("kinect20", {"emotion": 2.0}, emotion_model=Features(x[0].numel()))
    clean = dist.reference(x, mask)
    x_adv = perturbed(x, mask, 0.02, seed=6)
    want_total, _, want_grad = autograd_total(dist, clean, x_adv, mask)
    total, parts, grad = dist.value_and_grad(clean, dist.kinematics(x_adv, mask))
    assert parts["emotion"].gt(0).all()
    torch.testing.assert_close(total, want_total)
    torch.testing.assert_close(grad, want_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["bone", "triplet"])
def test_adjoints_are_adjoint(kind):
    """<D x, g> = <x, D* g> for the joint differences and for the velocity."""
    lay = get_layout("ntu25")
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 5, lay.num_joints, 2, generator=gen, dtype=torch.float64)
    dx = F._differences(x, lay, kind)
    g = torch.randn(dx.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close((dx * g).sum(), (x * F.differences_adjoint(g, lay, kind)).sum())
    v = F.velocity(x)
    h = torch.randn(v.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close((v * h).sum(), (x * F.velocity_adjoint(h)).sum())


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_velocity_adjoint_of_short_clips(frames):
    """The velocity's adjoint at the shortest clips: <v(x), h> = <x, v*(h)>, and 0 for one frame."""
    gen = torch.Generator().manual_seed(frames)
    x = torch.randn(2, 3, frames, 4, 2, generator=gen, dtype=torch.float64)
    v = F.velocity(x)
    h = torch.randn(v.shape, generator=gen, dtype=torch.float64)
    back = F.velocity_adjoint(h)
    assert back.shape == x.shape
    torch.testing.assert_close((v * h).sum(), (x * back).sum())
    if frames > 1:
        assert back.abs().max() > 0


class Linear(nn.Module):
    """A linear classifier that counts the clips it sees in forward-only passes."""

    def __init__(self, size: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(size, classes)
        self.forward_only = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_only += 0 if torch.is_grad_enabled() else len(x)
        return self.fc(x.flatten(1))


def test_candidate_check_skips_only_rows_whose_verdict_changes_nothing(monkeypatch):
    """The classifier sees a candidate only if its sample is not yet fooled, is closer than its best, or
    closes every hinge; checking every row instead gives the same attack, with more forward passes."""
    torch.manual_seed(0)
    x, lengths = clips("kinect20", 3, n=4, t=8, m=1)
    x = torch.cat([x, x.flip(0)])
    lengths = torch.cat([lengths, lengths.flip(0)])
    model = Linear(x[0].numel(), 4).double().eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    kwargs = dict(
        max_iter=12, delta_steps=2, z_steps=2, lr=0.01, patience=4, tau={"bone": 0, "angle": 0, "speed": 0}
    )
    model.forward_only = 0
    skipping = build_attack("admm", model, "kinect20", **kwargs)(x, y, lengths)
    skipped_rows = model.forward_only

    fooled = ADMMAttack._fooled

    def check_all(self, cand, y, target, rows, clips=None):
        return fooled(self, cand, y, target, torch.ones_like(rows), clips)

    monkeypatch.setattr(ADMMAttack, "_fooled", check_all)
    model.forward_only = 0
    checking = build_attack("admm", model, "kinect20", **kwargs)(x, y, lengths)
    assert skipping.success.sum() >= 4
    assert torch.equal(skipping.x_adv, checking.x_adv)
    assert torch.equal(skipping.grad_evals, checking.grad_evals)
    assert torch.equal(skipping.extras["distance"], checking.extras["distance"])
    # the clean labelling pass, then one candidate per outer step, against fewer: the counts say so too; the
    # labels come from the checks (no final labelling pass) and are the classifier's labels of x_adv
    assert model.forward_only == int(checking.iterations.sum()) + len(y)
    assert skipped_rows == int(skipping.forward_evals.sum()) < model.forward_only
    with torch.no_grad():
        assert torch.equal(skipping.pred_adv, model(skipping.x_adv).argmax(1))
    assert torch.equal(skipping.success, skipping.pred_adv != y)
