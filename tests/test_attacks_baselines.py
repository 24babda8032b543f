"""SMART as its authors define it and the augmented-Lagrangian attack of Zheng et al. 2020: their losses on
hand-computed examples, their update rules, and the attacks against tiny classifiers."""

import inspect

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_skel.attacks import ATTACKS, build_attack
from lightning_skel.attacks.distances import Kinematics
from lightning_skel.attacks.metrics import per_sample_metrics
from lightning_skel.attacks.smart import clip_update, joint_weights, per_frame_unit, spine_joints
from lightning_skel.attacks.zheng2020 import TAU
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.layouts import get_layout
from tests.helpers import attack_cfg
from tests.test_attacks import victim  # noqa: F401  (the shared victim fixture: a trained TinyNet and its clips)

GAIT = get_layout("gait16")
HEAD, NECK = GAIT.index("head"), GAIT.index("neck")
HAND, ELBOW = GAIT.index("left_hand"), GAIT.index("left_elbow")


def hand_pair():
    """A still 3-frame gait16 clip (float64) whose head stands 0.2 m straight above the neck and whose left
    hand hangs 0.25 m straight below the elbow, and a copy with the head raised 0.01 m in frame 1 and the
    left hand lowered 0.02 m in frame 0: each moves along its own bone, a leaf, so exactly two bone lengths
    change, by 0.01 and 0.02 m. Three frames: the fewest with an acceleration."""
    pose = torch.as_tensor(GAIT.rest_array, dtype=torch.float64).clone()  # (V, 3)
    pose[HEAD] = pose[NECK] + torch.tensor([0.0, 0.2, 0.0], dtype=torch.float64)
    pose[HAND] = pose[ELBOW] + torch.tensor([0.0, -0.25, 0.0], dtype=torch.float64)
    x = pose.T[None, :, None, :, None].expand(1, 3, 3, GAIT.num_joints, 1).clone()  # (1, C, T, V, M)
    adv = x.clone()
    adv[0, 1, 1, HEAD, 0] += 0.01
    adv[0, 1, 0, HAND, 0] -= 0.02
    return x, adv


def kinematics(x, adv):
    mask = F.valid_mask(x)
    return Kinematics(x, GAIT, mask), Kinematics(adv, GAIT, mask)


def test_smart_authors_loss_hand_computed():
    """rw * sum w_v |x' - x|^2 + (1 - rw) * (blw * sum (l' - l)^2 + (1 - blw) * sum |a' - a|^2 / dt^4)."""
    x, adv = hand_pair()
    attack = build_attack("smart", nn.Linear(1, 1), "gait16")
    joint = 0.04 * 0.01**2 + 0.02 * 0.02**2  # the head is a midline joint: weight 0.04; the hand 0.02
    bone = 0.01**2 + 0.02**2
    # frame 1's acceleration x2 - 2 x1 + x0: -0.02 m along y for the head (-2 * 0.01) and the hand (x0)
    acc = (0.02**2 + 0.02**2) * 30**4
    expected = 0.4 * joint + 0.6 * (0.7 * bone + 0.3 * acc)
    got = attack.perceptual_loss(*kinematics(x, adv))
    assert got.shape == (1,)
    assert float(got) == pytest.approx(expected, rel=1e-9)


def test_smart_balanced_loss_hand_computed():
    """The same three terms as means over valid entries: 3 x 16 joint entries, 3 x 15 bones, one frame of
    16 accelerations, each per frame^2."""
    x, adv = hand_pair()
    attack = build_attack("smart", nn.Linear(1, 1), "gait16", loss="balanced")
    joint = (0.01**2 + 0.02**2) / 48
    bone = (0.01**2 + 0.02**2) / 45
    acc = (0.02**2 + 0.02**2) / 16
    expected = 0.4 * joint + 0.6 * (0.7 * bone + 0.3 * acc)
    assert float(attack.perceptual_loss(*kinematics(x, adv))) == pytest.approx(expected, rel=1e-9)


def test_spine_joints_are_the_midline_of_every_layout():
    names = {
        "ntu25": {"spine_base", "spine_mid", "spine_shoulder", "neck", "head"},
        "kinect20": {"hip_center", "spine", "shoulder_center", "head"},
        "gait16": {"root", "spine", "neck", "head"},
        "openpose18": {"nose", "neck"},
        "coco17": {"nose"},
    }
    for layout, expected in names.items():
        got = spine_joints(layout)
        assert {get_layout(layout).joint_names[j] for j in got} == expected, layout
        w = joint_weights(layout)
        assert w.shape == (get_layout(layout).num_joints,)
        spine = torch.zeros(len(w), dtype=torch.bool)
        spine[list(got)] = True
        assert torch.equal(w, torch.where(spine, torch.tensor(0.04), torch.tensor(0.02))), layout


def test_per_frame_unit_holds_for_gradients_whose_squares_underflow():
    g = torch.zeros(2, 3, 4, 5, 2)
    g[0, :, 0] = torch.randn(3, 5, 2)
    tiny = torch.randn(3, 5, 2)
    g[0, :, 1] = tiny * 1e-30  # squares about 1e-60: zero in float32
    g[1, 0, 2, 3, 1] = -1e-40  # a subnormal
    u = per_frame_unit(g)
    norms = u.pow(2).sum((1, 3, 4)).sqrt()  # (N, T)
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(norms, expected)
    torch.testing.assert_close(u[0, :, 0], g[0, :, 0] / g[0, :, 0].norm())  # a plain frame: g / |g|
    torch.testing.assert_close(u[0, :, 1], tiny / tiny.norm())  # the same direction at 1e-30
    assert float(u[1, 0, 2, 3, 1]) == -1.0


def test_clip_update_rescales_and_keeps_small_steps():
    step = torch.tensor([[3.0, 4.0], [0.3, 0.4]])  # norms 5 and 0.5
    torch.testing.assert_close(clip_update(step, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


class Linear(nn.Module):
    """Logits ``(s, -s)`` with ``s = k * sum of the x coordinates' change from x0 + s0``: class 0 at x0."""

    def __init__(self, x0: torch.Tensor, k: float, s0: float) -> None:
        super().__init__()
        self.register_buffer("x0", x0)
        self.k, self.s0 = k, s0

    def forward(self, x):
        s = self.k * (x[:, 0] - self.x0[:, 0]).flatten(1).sum(1) + self.s0
        return torch.stack([s, -s], 1)


def still_clip(frames: int = 8, layout: str = "kinect20", dtype=torch.float32) -> torch.Tensor:
    pose = torch.as_tensor(get_layout(layout).rest_array, dtype=dtype).T  # (C, V)
    return pose[None, :, None, :, None].expand(1, 3, frames, pose.shape[1], 1).contiguous()


def test_smart_fools_a_clip_whose_softmax_is_saturated():
    """A logit gap of 60: the softmax is exactly 1.0 in float32 and the class gradient is about 1e-25 per
    entry, whose squares underflow. Flooring the frame norm at 1e-12 (or adding the authors' 1e-18) leaves
    a step of 1e-13 m at most; the normalised step still moves the clip by ``lr`` per frame."""
    x = still_clip()
    model = Linear(x, k=20.0, s0=30.0)
    y = torch.zeros(1, dtype=torch.long)
    xa = x.clone().requires_grad_(True)
    logits = model(xa)
    assert float(logits.detach().softmax(1).max()) == 1.0
    (g,) = torch.autograd.grad(-nn.functional.cross_entropy(logits, y), xa)
    assert 0 < float(g.abs().max()) < 1e-20
    assert float(g.pow(2).sum((1, 3, 4)).sqrt().max()) < 1e-18  # what the authors' + 1e-18 would divide by
    res = build_attack("smart", model, "kinect20")(x, y)
    assert bool(res.success.all())
    assert int(res.grad_evals) < 200
    assert float((res.x_adv - x)[:, 0].sum()) < -1.5 + 1e-3  # s fell below 0: the x coordinates fell by 1.5 m


def test_smart_clip_rescales_the_update_rather_than_clamping_it():
    """One step with and without a bound on the clip's update norm, in float64 so that ``x_adv - x`` is the
    step to 1e-16 m."""
    x = still_clip(dtype=torch.float64)
    w = torch.randn(x.shape, dtype=torch.float64)

    class Tilted(nn.Module):
        def forward(self, xx):
            s = ((xx - x) * w).flatten(1).sum(1) + 5.0
            return torch.stack([s, -s], 1)

    y = torch.zeros(1, dtype=torch.long)
    free = build_attack("smart", Tilted(), "kinect20", steps=1)(x, y).x_adv - x
    bound = 1e-3
    clipped = build_attack("smart", Tilted(), "kinect20", steps=1, clip=bound)(x, y).x_adv - x
    assert float(free.norm()) > 10 * bound  # the bound binds
    assert float(clipped.norm()) == pytest.approx(bound, rel=1e-9)
    torch.testing.assert_close(clipped, free * (bound / free.norm()), rtol=1e-8, atol=1e-14)
    assert not torch.allclose(clipped, free.clamp(-bound, bound), atol=bound / 10)


def test_smart_argument_errors():
    with pytest.raises(ValueError, match=r"smart: invalid hyper-parameter\(s\): loss must be one of \('authors', "
                                         r"'balanced'\), got 'mean'"):  # fmt: skip
        build_attack("smart", nn.Linear(1, 1), "ntu25", loss="mean")


@pytest.mark.parametrize(("config", "changes"), [("smart", {}), ("smart_balanced", {"loss": "balanced"})])
def test_smart_configs_are_the_class_defaults(tmp_path, config, changes):
    """configs/attack/smart.yaml is the authors' SMART: each key is the constructor's default, but for what
    the variant changes."""
    cfg = OmegaConf.to_container(attack_cfg(tmp_path, tmp_path / "x.ckpt", [f"attack={config}"]).attack)
    assert cfg.pop("name") == "smart"
    signature = inspect.signature(ATTACKS.get("smart")).parameters.items()
    assert cfg == {**{k: p.default for k, p in signature if k not in ("model", "layout")}, **changes}


# ---- zheng2020 -----------------------------------------------------------------------------------------


def gap(d: float) -> float:
    """A displacement's length as the constraints take it: the safe norm less its value at 0 (1e-6)."""
    return (d**2 + 1e-12) ** 0.5 - 1e-6


def test_zheng2020_constraints_hand_computed():
    """The hand pair: the head's bone grows 0.01 m of 0.2 and the hand's 0.02 of 0.25; the head moves
    0.01 m at the end of the triplet (spine, neck, head) and the hand 0.02 m at the end of (shoulder,
    elbow, hand); their velocities change by 0.01 and 0.02 m per frame against still joints (speed 0,
    guarded by 1e-4)."""
    x, adv = hand_pair()
    attack = build_attack("zheng2020", nn.Linear(1, 1), "gait16", tau={"angle": 0.0})
    g = attack.constraints(*kinematics(x, adv))
    bones = [child for child, _ in GAIT.bones]
    bone = torch.zeros(1, 3, GAIT.num_bones, 1, dtype=torch.float64)
    bone[0, 1, bones.index(HEAD), 0] = 0.01 / (0.2 + 1e-5) - 0.01
    bone[0, 0, bones.index(HAND), 0] = 0.02 / (0.25 + 1e-5) - 0.01
    torch.testing.assert_close(g["bone"], bone, rtol=1e-9, atol=1e-12)
    angle = torch.zeros(1, 3, len(GAIT.triplets), 1, dtype=torch.float64)
    ends = [c for _, _, c in GAIT.triplets]
    assert HEAD not in [j for _, j, _ in GAIT.triplets] + [p for p, _, _ in GAIT.triplets]  # leaves
    angle[0, 1, ends.index(HEAD), 0] = gap(0.01) / (0.2 + 1e-5)
    angle[0, 0, ends.index(HAND), 0] = gap(0.02) / (0.25 + 1e-5)
    torch.testing.assert_close(g["angle"], angle, rtol=1e-9, atol=1e-12)
    speed = torch.zeros(1, 2, GAIT.num_joints, 1, dtype=torch.float64)
    speed[0, :, HEAD, 0] = gap(0.01) / 1e-4 - 0.1  # frames 0 -> 1 and 1 -> 2
    speed[0, 0, HAND, 0] = gap(0.02) / 1e-4 - 0.1
    torch.testing.assert_close(g["speed"], speed, rtol=1e-9, atol=1e-9)


def test_zheng2020_exact_angle_option():
    """``angle="exact"``: the angle change itself. The neck's angle between spine and head is straight (pi);
    a sideways head move of 0.2 * tan(0.3) m bends it by 0.3 rad, 0.2 over the threshold of 0.1. The safe
    norm takes the straight angle as atan2(1e-6, |u| |v|) off pi, 1e-6 / (0.24 * 0.2) = 2e-5 rad."""
    x, _ = hand_pair()
    adv = x.clone()
    adv[0, 0, 2, HEAD, 0] += 0.2 * torch.tan(torch.tensor(0.3, dtype=torch.float64))
    g = build_attack("zheng2020", nn.Linear(1, 1), "gait16", angle="exact").constraints(*kinematics(x, adv))
    k = [c for _, _, c in GAIT.triplets].index(HEAD)
    assert GAIT.triplets[k] == (GAIT.index("spine"), NECK, HEAD)
    assert float(g["angle"][0, 2, k, 0]) == pytest.approx(0.2, abs=3e-5)
    g["angle"][0, 2, k, 0] = 0
    assert float(g["angle"].abs().sum()) == 0.0  # no other angle changes


def test_zheng2020_penalty_and_multiplier_update_hand_computed():
    attack = build_attack("zheng2020", nn.Linear(1, 1), "gait16", beta=2.0)
    g = {"bone": torch.tensor([[0.2, 0.0, 0.1]]), "speed": torch.tensor([[0.0, 0.3]])}
    lam = {"bone": torch.tensor([[1.0, 0.5, 0.0]]), "speed": torch.tensor([[0.25, 0.0]])}
    counts = {"bone": torch.tensor([3.0]), "speed": torch.tensor([2.0])}
    # mean over entries of lambda * g + beta / 2 * g^2
    bone = (1.0 * 0.2 + 0.5 * 0.0 + 0.0 * 0.1 + (0.2**2 + 0.1**2)) / 3
    speed = (0.25 * 0.0 + 0.3**2) / 2
    torch.testing.assert_close(attack.lagrangian(g, lam, counts), torch.tensor([bone + speed]))
    raised = attack.raise_multipliers(g, lam)  # lambda + beta * g
    torch.testing.assert_close(raised["bone"], torch.tensor([[1.4, 0.5, 0.2]]))
    torch.testing.assert_close(raised["speed"], torch.tensor([[0.25, 0.6]]))


def test_zheng2020_counts_its_evaluations(victim):  # noqa: F811
    model, x, y, lengths = victim
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args: calls.append(len(args[0])))
    try:
        res = build_attack("zheng2020", model, "ntu25", max_iter=3, inner_steps=4)(x[:5], y[:5], lengths[:5])
    finally:
        hook.remove()
    assert res.grad_evals.tolist() == [12] * 5
    assert res.iterations.tolist() == [3] * 5
    assert res.forward_evals.tolist() == [2] * 5  # the clean labelling pass and the final one
    assert calls == [5] * 14


@pytest.mark.parametrize("kwargs", [{}, {"angle": "exact"}])
def test_zheng2020_fools_a_tiny_model_within_its_constraints(victim, kwargs):  # noqa: F811
    """The multipliers hold the constraints: the bone, angle and speed changes of the result are below those
    of the same attack whose penalties are 1000 times weaker."""
    model, x, y, lengths = victim
    res = build_attack("zheng2020", model, "ntu25", max_iter=20, **kwargs)(x, y, lengths)
    assert res.success.float().mean() >= 0.75
    assert torch.equal(res.pred_adv, model(res.x_adv).argmax(1))
    loose = build_attack("zheng2020", model, "ntu25", max_iter=20, beta=1e-3, **kwargs)(x, y, lengths)
    tight_m, loose_m = (per_sample_metrics(x, r.x_adv, lengths, "ntu25") for r in (res, loose))
    for key in ("delta_bone", "delta_angle_deg", "delta_speed"):
        assert float(tight_m[key].mean()) < float(loose_m[key].mean()), key


@pytest.mark.parametrize(
    ("name", "kwargs"), [("zheng2020", {"max_iter": 3}), ("zheng2020", {"max_iter": 3, "angle": "exact"}),
                         ("smart", {"steps": 20, "loss": "balanced"})]
)  # fmt: skip
def test_padding_and_absent_persons_are_left_alone(victim, name, kwargs):  # noqa: F811
    model, x, y, lengths = victim
    x, lengths = x.clone(), lengths.clone()
    lengths[0] = 10
    x[0, :, 10:] = 0
    x[1, ..., 1] = 0  # a single-person clip
    mask = F.valid_mask(x, lengths)
    res = build_attack(name, model, "ntu25", **kwargs)(x, y, lengths)
    assert torch.equal(res.x_adv[~mask.expand_as(x)], x[~mask.expand_as(x)])
    assert (res.x_adv != x).flatten(1).any(1).all()


def test_zheng2020_constraints_ignore_invalid_entries():
    """Perturbing padding frames and an absent person everywhere changes no constraint value."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 25, 2)
    x[0, :, 4:] = 0  # padding
    x[1, ..., 1] = 0  # absent person
    lengths = torch.tensor([4, 6])
    mask = F.valid_mask(x, lengths)
    noise = torch.randn_like(x) * 0.05
    attack = build_attack("zheng2020", nn.Linear(1, 1), "ntu25")
    clean = Kinematics(x, attack.layout, mask)
    inside = attack.constraints(clean, Kinematics(x + noise * mask, attack.layout, mask))
    everywhere = attack.constraints(clean, Kinematics(x + noise, attack.layout, mask))
    for key in inside:
        assert float(inside[key].sum()) > 0, key
        torch.testing.assert_close(everywhere[key], inside[key], msg=key)


def test_zheng2020_argument_errors():
    bad = {"max_iter": 0, "inner_steps": 0, "lr": 0, "beta": 0, "kappa": -1, "tau": {"bone": -1, "elbow": 1},
           "angle": "cos"}  # fmt: skip
    with pytest.raises(ValueError) as err:
        build_attack("zheng2020", nn.Linear(1, 1), "ntu25", **bad)
    msg = str(err.value)
    assert msg.startswith("zheng2020: invalid hyper-parameter(s): ")
    for part in ("max_iter must be >= 1, got 0", "inner_steps must be >= 1, got 0", "lr must be > 0 (metres), got 0",
                 "beta must be > 0, got 0", "kappa must be >= 0, got -1",
                 "tau must be keyed by ['angle', 'bone', 'speed'] only, got ['elbow']", "tau.bone must be >= 0, got -1",
                 "angle must be one of ('proxy', 'exact'), got 'cos'"):  # fmt: skip
        assert part in msg, msg


def test_zheng2020_config_is_the_class_defaults(tmp_path):
    """configs/attack/zheng2020.yaml holds the authors' defaults, which are the constructor's."""
    cfg = OmegaConf.to_container(attack_cfg(tmp_path, tmp_path / "x.ckpt", ["attack=zheng2020"]).attack)
    assert cfg.pop("name") == "zheng2020"
    assert cfg.pop("tau") == TAU
    signature = inspect.signature(ATTACKS.get("zheng2020")).parameters.items()
    assert cfg == {k: p.default for k, p in signature if k not in ("model", "layout", "tau")}
