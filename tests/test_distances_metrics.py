import math

import pytest
import torch

from lightning_skel.attacks.distances import (
    BoneAngle,
    BoneLength,
    DynamicDistance,
    EmotionDistance,
    JointSpeed,
    Kinematics,
    masked_mean,
)
from lightning_skel.attacks.metrics import attack_metrics, per_sample_metrics
from lightning_skel.data.synthetic import generate
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton import get_layout

G16 = get_layout("gait16")


def rest_clip(t=3, dtype=torch.float64):
    x = torch.as_tensor(G16.rest_array, dtype=dtype).T[None, :, None, :, None].repeat(1, 1, t, 1, 1)
    return x


def kin(x, lengths=None):
    lengths = torch.full((x.shape[0],), x.shape[2]) if lengths is None else lengths
    return Kinematics(x, G16, F.valid_mask(x, lengths))


def test_masked_mean_ignores_invalid_entries():
    v = torch.tensor([[1.0, 2.0, 100.0], [4.0, 4.0, 4.0]])
    m = torch.tensor([[True, True, False], [True, True, True]])
    assert masked_mean(v, m).tolist() == [1.5, 4.0]


def test_bone_term_hand_computed():
    x = rest_clip()
    adv = x.clone()
    head, neck = G16.index("head"), G16.index("neck")
    adv[0, :, 1, head] = x[0, :, 1, neck] + 2 * (
        x[0, :, 1, head] - x[0, :, 1, neck]
    )  # head bone doubled, frame 1
    r, _ = BoneLength().entries(kin(x), kin(adv))
    b = G16.bones.index((head, neck))
    length = (x[0, :, 1, head] - x[0, :, 1, neck]).norm().item()
    assert r[0, 1, b, 0].item() == pytest.approx(length / (length + 1e-3), rel=1e-6)
    # one of 3 frames x 15 bones changed
    assert BoneLength()(kin(x), kin(adv)).item() == pytest.approx(r[0, 1, b, 0].item() / 45, rel=1e-6)
    # the hinge: tau above the change gives zero
    assert BoneLength(tau=1.0)(kin(x), kin(adv)).item() == 0.0


def test_angle_term_hand_computed():
    x = torch.zeros(1, 3, 1, 16, 1, dtype=torch.float64)
    sh, el, ha = (G16.index(n) for n in ("left_shoulder", "left_elbow", "left_hand"))
    x[0, :, 0, :, 0] = torch.linspace(0.1, 1.6, 16).unsqueeze(0).repeat(3, 1)  # non-degenerate filler
    x[0, :, 0, sh, 0] = torch.tensor([0.0, 0.0, 0.0], dtype=x.dtype)
    x[0, :, 0, el, 0] = torch.tensor([1.0, 0.0, 0.0], dtype=x.dtype)
    x[0, :, 0, ha, 0] = torch.tensor([2.0, 0.0, 0.0], dtype=x.dtype)  # straight arm: pi
    adv = x.clone()
    adv[0, :, 0, ha, 0] = torch.tensor([1.0, 1.0, 0.0], dtype=x.dtype)  # bent to a right angle
    r, _ = BoneAngle().entries(kin(x), kin(adv))
    k = G16.triplets.index((sh, el, ha))
    assert r[0, 0, k, 0].item() == pytest.approx(math.pi / 2, abs=1e-6)


def test_speed_term_hand_computed():
    x = rest_clip(t=3)
    hand = G16.index("left_hand")
    x[0, 0, :, hand] += torch.tensor([0.0, 0.1, 0.2], dtype=x.dtype)[:, None]  # moves 0.1 m per frame along x
    adv = x.clone()
    adv[0, 0, 2, hand] += 0.1  # second step twice as fast
    r, _ = JointSpeed().entries(kin(x), kin(adv))
    assert r.shape == (1, 2, 16, 1)
    assert r[0, 1, hand, 0].item() == pytest.approx(0.1 / (0.1 + 5e-3), rel=1e-5)
    assert r[0, 0, hand, 0].item() == pytest.approx(0.0, abs=1e-9)


def test_distance_zero_at_identity_and_weights_select_terms():
    d = generate(1, seed=0, frames=12, layout="gait16")
    x = torch.as_tensor(d["x"], dtype=torch.float64)
    mask = F.valid_mask(x, torch.as_tensor(d["lengths"]))
    dist = DynamicDistance("gait16", weights={"l2": 1.0}, tau={"bone": 0, "angle": 0, "speed": 0})
    total, parts = dist(dist.kinematics(x, mask), dist.kinematics(x.clone(), mask))
    assert total.abs().max().item() == 0.0
    assert set(parts) == {"bone", "angle", "speed", "l2"}
    only = DynamicDistance("gait16", weights={"bone": 0, "angle": 1.0, "speed": 0})
    adv = x + 0.01 * torch.randn_like(x) * mask
    total, parts = only(only.kinematics(x, mask), only.kinematics(adv, mask))
    assert list(parts) == ["angle"]
    torch.testing.assert_close(total, BoneAngle(0.05)(only.kinematics(x, mask), only.kinematics(adv, mask)))


def test_distance_argument_errors():
    with pytest.raises(KeyError, match="unknown distance term"):
        DynamicDistance("ntu25", weights={"jerk": 1.0})
    with pytest.raises(ValueError, match="no emotion recognizer was given"):
        DynamicDistance("ntu25", weights={"emotion": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        DynamicDistance("ntu25", weights={"bone": -1.0})
    with pytest.raises(ValueError, match="emotion_every must be an integer >= 1, got 0"):
        DynamicDistance("ntu25", emotion_every=0)
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 1.5"):
        EmotionDistance(Recognizer(), every=1.5)


class Recognizer(torch.nn.Module):
    """A stand-in emotion recognizer: a fixed random projection of the clip, counting its passes."""

    def __init__(self, size: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(size, 4).double()
        self.calls = 0

    def forward_features(self, x):
        self.calls += 1
        return torch.tanh(self.proj(x.flatten(1)))


@pytest.mark.parametrize("every", [1, 2, 5])
def test_network_term_gradient_follows_its_every(every):
    """The emotion term's linearisation is the distance's: over a block of 5 steps its gradient is
    recomputed at every step (``every = 1``), or at steps every, 2 every, ... with the carried gradient
    reused in between and at step 0; at a candidate the value comes with the gradient only when
    linearised. Without a network term nothing is computed and the carried value passes through."""
    d = generate(1, seed=0, frames=8, layout="gait16")
    x = torch.as_tensor(d["x"], dtype=torch.float64)[:3]
    mask = F.valid_mask(x, torch.as_tensor(d["lengths"])[:3])
    recognizer = Recognizer(x[0].numel())
    dist = DynamicDistance("gait16", {"emotion": 2.0}, emotion_model=recognizer, emotion_every=every)
    assert dist.network == ["emotion"] and dist.every == every
    clean = dist.reference(x, mask)
    carried = torch.full_like(x, 7.0)
    fresh = []
    for step in range(5):
        recognizer.calls = 0
        delta = 0.01 * (step + 1) * mask
        g = dist.network_grad(step, clean, delta, carried)
        fresh.append(g is not carried)
        if fresh[-1]:
            assert recognizer.calls == 1  # one pass with its backward: phi of the clean side is stored
            want = 2.0 * dist.terms["emotion"].value_and_grad(clean, dist.kinematics(x + delta, mask))[1]
            assert torch.equal(g, want)
    assert fresh == [step % every == 0 and (every == 1 or step > 0) for step in range(5)]
    values, g = dist.network_at(clean, x + 0.02 * mask)
    assert set(values) == {"emotion"} and values["emotion"].gt(0).all()
    assert (g is None) == (every == 1)
    plain = DynamicDistance("gait16")
    assert plain.network == [] and plain.every == 1
    assert plain.network_grad(0, clean, x, carried) is carried
    assert plain.network_at(clean, x) == ({}, None)


def test_kinematics_store_is_sliced_and_joined_whole():
    """A subset or a join of Kinematics slices every stored value (the terms' clean-side entries too) and
    recomputes nothing: the values equal those computed on the clips themselves."""
    d = generate(1, seed=1, frames=8, layout="gait16")
    x = torch.as_tensor(d["x"], dtype=torch.float64)[:4]
    mask = F.valid_mask(x, torch.as_tensor(d["lengths"])[:4])
    dist = DynamicDistance("gait16", {"l2": 1.0})
    clean = dist.reference(x, mask)
    assert {"bone_lengths", "bone_angles", "speed", "entry_weights_bone"} <= set(clean.values)
    joined = clean.subset(torch.tensor([2])).append(clean.subset(torch.tensor([True, False, False, True])))
    assert set(joined.values) == set(clean.values)
    order = torch.tensor([2, 0, 3])
    fresh = dist.reference(x[order], mask[order])
    for key, value in joined.values.items():
        parts = value if isinstance(value, tuple) else (value,)
        want = fresh.values[key] if isinstance(value, tuple) else (fresh.values[key],)
        assert all(torch.equal(a, b) for a, b in zip(parts, want, strict=True)), key
    kept = joined.keep(torch.tensor([False, True, True]))
    assert torch.equal(kept.x, x[[0, 3]]) and torch.equal(kept.bone_angles, clean.bone_angles[[0, 3]])


def test_every_metric_zero_for_identity():
    d = generate(1, seed=1, frames=12)
    x = torch.as_tensor(d["x"])
    ps = per_sample_metrics(x, x.clone(), torch.as_tensor(d["lengths"]), "ntu25")
    for key, value in ps.items():
        assert value.abs().max().item() == 0.0, key


def test_metrics_hand_computed():
    x = rest_clip(t=4)
    head = G16.index("head")
    x[0, :, :, head] = (
        x[0, :, :, G16.index("neck")] + torch.tensor([0.0, 0.15, 0.0], dtype=x.dtype)[:, None, None]
    )
    adv = x.clone()
    adv[0, 1, 2, head] += 0.003  # one joint, one frame, 3 mm up
    ps = per_sample_metrics(x, adv, None, "gait16")
    assert ps["l2"].item() == pytest.approx(0.003, rel=1e-6)
    assert ps["linf_mm"].item() == pytest.approx(3.0, rel=1e-6)
    assert ps["rms_mm"].item() == pytest.approx(math.sqrt(9.0 / (4 * 16)), rel=1e-6)
    # the head-neck bone is vertical: its length changes by 3 mm in one of 4 x 15 bone entries
    assert ps["delta_bone_mm"].item() == pytest.approx(3.0 / 60, rel=1e-5)
    # velocity changes by 3 mm at two of 3 x 16 entries; acceleration by 3, 6, 3 mm at 2 x 16 entries
    assert ps["delta_speed_mm"].item() == pytest.approx(6.0 / 48, rel=1e-5)
    assert ps["delta_acc_mm"].item() == pytest.approx(9.0 / 32, rel=1e-5)


def test_attack_metrics_aggregation():
    n = 4
    x = rest_clip(t=4).repeat(n, 1, 1, 1, 1)
    adv = x.clone()
    adv[1, 1, 0, 3] += 0.01
    adv[2, 1, 0, 3] += 0.02
    y = torch.tensor([0, 1, 2, 3])
    pred_clean = torch.tensor([0, 1, 2, 0])  # the last one is wrong: not attacked
    pred_adv = torch.tensor([0, 2, 0, 0])  # samples 1 and 2 fooled
    m = attack_metrics(
        x, adv, None, "gait16", y, pred_clean, pred_adv, grad_evals=torch.tensor([5, 10, 20, 0])
    )
    assert m["num_attacked"] == 3
    assert m["success_rate"] == pytest.approx(2 / 3)
    assert m["robust_accuracy"] == pytest.approx(1 / 4)
    assert m["linf_mm"] == pytest.approx(15.0, rel=1e-5)  # mean over the two successes
    assert m["grad_evals"] == pytest.approx(15.0)
    targeted = attack_metrics(
        x, adv, None, "gait16", y, pred_clean, pred_adv, target=torch.tensor([1, 2, 1, 1])
    )
    assert targeted["success_rate"] == pytest.approx(1 / 3)
    # within 15 mm L-infinity only sample 1 (10 mm) is fooled: samples 0 and 2 are robust
    budgeted = attack_metrics(x, adv, None, "gait16", y, pred_clean, pred_adv, budgets={"linf_mm": [15, 25]})
    assert budgeted["robust_accuracy_linf_mm_le_15"] == pytest.approx(2 / 4)
    assert budgeted["robust_accuracy_linf_mm_le_25"] == pytest.approx(1 / 4)
    for bad, match in (({"linf": [1]}, "not a distance metric"), ({"linf_mm": []}, "non-empty list"),
                       ({"linf_mm": [0]}, "> 0"), ({"linf_mm": 5}, "non-empty list")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            attack_metrics(x, adv, None, "gait16", y, pred_clean, pred_adv, budgets=bad)


def test_robust_accuracy_within_a_budget_hand_computed():
    from lightning_skel.attacks.metrics import robust_accuracy_within

    y = torch.tensor([0, 1, 2, 3, 4])
    pred_clean = torch.tensor([0, 1, 2, 3, 0])  # the last clip is wrong before any attack
    pred_adv = torch.tensor([5, 1, 5, 5, 0])  # clip 1 not fooled
    rms = torch.tensor([4.0, 1.0, 12.0, 10.0, 0.0])
    # within 10 mm clips 0 and 3 are fooled, clip 2 needed 12 mm: robust are 1 and 2
    assert robust_accuracy_within(y, pred_clean, pred_adv, rms, 10.0) == pytest.approx(2 / 5)
    assert robust_accuracy_within(y, pred_clean, pred_adv, rms, 3.0) == pytest.approx(4 / 5)
    assert robust_accuracy_within(y, pred_clean, pred_adv, rms, float("inf")) == pytest.approx(1 / 5)
