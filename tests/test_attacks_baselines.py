"""SMART as its authors define it: its losses on hand-computed examples, its update rules, and the attack
against tiny classifiers."""

import inspect

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_skel.attacks import ATTACKS, build_attack
from lightning_skel.attacks.distances import Kinematics
from lightning_skel.attacks.smart import clip_update, joint_weights, per_frame_unit, spine_joints
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.layouts import get_layout
from tests.helpers import attack_cfg

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
