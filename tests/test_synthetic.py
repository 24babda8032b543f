import numpy as np
import pytest
import torch

from lightning_skel.data.synthetic import ACTIONS, EMOTIONS, TWO_PERSON, generate
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton import get_layout


@pytest.fixture(scope="module")
def clean():
    return generate(8, seed=0, frames=48, noise_std=0.0)


def test_format_and_balance(clean):
    n = 8 * len(ACTIONS)
    assert clean["x"].shape == (n, 3, 48, 25, 2)
    assert len(clean["class_names"]) >= 10
    assert np.bincount(clean["y"]).tolist() == [8] * len(ACTIONS)
    assert clean["emotion_names"] == list(EMOTIONS)
    for c in range(len(ACTIONS)):  # emotions balanced within each class
        counts = np.bincount(clean["emotion"][clean["y"] == c], minlength=4)
        assert counts.max() - counts.min() <= 1


def _bone_cv(data, layout):
    x = torch.as_tensor(data["x"], dtype=torch.float64)
    lengths = torch.as_tensor(data["lengths"])
    bl = F.bone_lengths(x, layout)  # (N, T, B, M)
    m = F.valid_mask(x, lengths)[:, 0, :, 0, :].unsqueeze(2).to(bl.dtype)  # (N, T, 1, M)
    cnt = m.sum(1)
    mean = (bl * m).sum(1) / cnt.clamp_min(1)
    var = (((bl - mean.unsqueeze(1)) ** 2) * m).sum(1) / cnt.clamp_min(1)
    cv = var.sqrt() / mean.clamp_min(1e-9)
    return cv[cnt.expand_as(cv) > 0]


@pytest.mark.parametrize("layout", ["ntu25", "kinect20", "gait16"])
def test_bone_lengths_constant_within_clip(layout):
    data = generate(2, seed=1, frames=32, layout=layout, noise_std=0.0)
    assert _bone_cv(data, layout).max() < 1e-4


def test_noise_is_gaussian_with_given_std():
    a = generate(2, seed=4, frames=32, noise_std=0.0)
    b = generate(2, seed=4, frames=32, noise_std=0.01)
    mask = (
        F.valid_mask(torch.as_tensor(a["x"]), torch.as_tensor(a["lengths"])).expand(-1, 3, -1, 25, -1).numpy()
    )
    d = (b["x"] - a["x"])[mask]
    assert abs(d.std() - 0.01) < 1e-3
    assert abs(d.mean()) < 1e-3
    assert (b["x"][~mask] == 0).all()  # padding and absent persons untouched by noise


def test_proportions_vary_between_clips(clean):
    x = torch.as_tensor(clean["x"], dtype=torch.float64)
    h = F.skeletal_height(x, "ntu25", torch.as_tensor(clean["lengths"]))
    assert h.std() / h.mean() > 0.03


def test_two_person_classes_fill_second_person(clean):
    present = np.abs(clean["x"][..., 1]).reshape(len(clean["y"]), -1).max(1) > 0
    two = np.isin(np.array(clean["class_names"])[clean["y"]], TWO_PERSON)
    assert len(TWO_PERSON) >= 2
    assert (present == two).all()


def test_padding_is_zero_and_lengths_vary(clean):
    for i in range(len(clean["y"])):
        assert not clean["x"][i, :, clean["lengths"][i] :].any()
    assert len(set(clean["lengths"].tolist())) > 1


def test_deterministic_for_a_seed():
    a, b, c = generate(2, seed=7, frames=24), generate(2, seed=7, frames=24), generate(2, seed=8, frames=24)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])


def test_classes_have_distinct_trajectories(clean):
    """Mean normalised joint speed profile per class: no two classes alike."""
    x = F.normalize(torch.as_tensor(clean["x"]), "ntu25", torch.as_tensor(clean["lengths"]))
    speed = F.velocity(x)[..., 0].norm(dim=1).mean(1)  # (N, V) mean speed per joint
    prof = torch.stack([speed[torch.as_tensor(clean["y"]) == c].mean(0) for c in range(len(ACTIONS))])
    d = torch.cdist(prof, prof) + torch.eye(len(ACTIONS)) * 1e9
    assert d.min() > 1e-3


def test_emotion_style_changes_posture_and_tempo():
    d = generate(24, seed=3, frames=64, noise_std=0.0, classes=("walk in place",))
    x = F.normalize(
        torch.as_tensor(d["x"], dtype=torch.float64), "ntu25", torch.as_tensor(d["lengths"]), scale=True
    )
    lay = get_layout("ntu25")
    head_y = x[:, 1, :, lay.index("head"), 0].mean(1)
    speed = F.velocity(x)[:, :, :, :, 0].norm(dim=1).mean((1, 2))
    e = torch.as_tensor(d["emotion"])
    sad, angry, happy = (EMOTIONS.index(k) for k in ("sad", "angry", "happy"))
    assert head_y[e == sad].mean() < head_y[e == happy].mean()  # head lowered
    assert speed[e == sad].mean() < speed[e == angry].mean()  # slower, smaller


def test_argument_errors():
    with pytest.raises(ValueError, match="num_per_class"):
        generate(0, seed=0)
    with pytest.raises(ValueError, match="noise_std"):
        generate(1, seed=0, noise_std=-1)
    with pytest.raises(KeyError, match="unknown action"):
        generate(1, seed=0, classes=("moonwalk",))
    with pytest.raises(KeyError, match="known layouts"):
        generate(1, seed=0, layout="smpl")


def test_emotion_labels():
    d = generate(4, seed=0, frames=16, layout="gait16", label="emotion")
    assert d["class_names"] == list(EMOTIONS)
    np.testing.assert_array_equal(d["y"], d["emotion"])
    with pytest.raises(ValueError, match="label must be"):
        generate(1, seed=0, label="style")
