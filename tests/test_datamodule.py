import numpy as np
import pytest
import torch

from lightning_skel.data.datamodule import SkeletonDataModule, SkeletonDataset, stratified_split
from lightning_skel.data.io import load_npz, save_npz
from lightning_skel.data.synthetic import generate
from lightning_skel.data.transforms import random_affine, random_mirror, temporal_resample
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton.layouts import Layout, get_layout
from tests.helpers import tiny_npz


def test_stratified_split_disjoint_and_balanced():
    y = np.repeat(np.arange(5), 20)
    test, val, train = stratified_split(y, (0.2, 0.1), seed=3)
    assert (
        len(np.intersect1d(test, train))
        == len(np.intersect1d(val, train))
        == len(np.intersect1d(test, val))
        == 0
    )
    assert sorted(np.concatenate([test, val, train]).tolist()) == list(range(100))
    assert np.bincount(y[test]).tolist() == [4] * 5
    assert np.bincount(y[val]).tolist() == [2] * 5
    again = stratified_split(y, (0.2, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (test, val, train), strict=True))


def test_datamodule_from_one_npz_with_seeded_split(tmp_path):
    path = tiny_npz(tmp_path / "d.npz", num_per_class=10)
    dm = SkeletonDataModule(name="d", path=str(path), window=16, batch_size=8)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sizes == {"test": 24, "val": 12, "train": 84}
    assert dm.layout == "ntu25" and dm.num_classes == 12 and dm.num_persons == 2
    x, _, lengths, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 24, 25, 2)
    xw, lw = dm.window_batch(x, lengths, train=False)
    assert xw.shape == (8, 3, 16, 25, 2)
    assert (lw == 16).all()


def test_datamodule_uses_split_column_and_separate_files(tmp_path):
    data = generate(6, seed=0, frames=16)
    split = np.where(np.arange(len(data["y"])) % 3 == 0, "test", "train")
    path = save_npz(tmp_path / "s.npz", {**data, "split": split})
    dm = SkeletonDataModule(name="s", path=str(path), val_fraction=0.25)
    dm.setup()
    assert len(dm.datasets["test"]) == int((split == "test").sum())
    assert len(dm.datasets["val"]) + len(dm.datasets["train"]) == int((split == "train").sum())
    test_rows = set(dm.datasets["test"].indices.tolist())
    assert test_rows == set(np.nonzero(split == "test")[0].tolist())

    a = tiny_npz(tmp_path / "a.npz", seed=1)
    b = tiny_npz(tmp_path / "b.npz", seed=2)
    dm2 = SkeletonDataModule(name="f", train_path=str(a), test_path=str(b), val_fraction=0.25)
    dm2.setup()
    assert len(dm2.datasets["test"]) == 48
    assert len(dm2.datasets["train"]) + len(dm2.datasets["val"]) == 48


def test_split_all_is_every_clip_and_a_test_only_file_is_read_as_it_is(tmp_path):
    """``split_set("all")`` is every row of the file in order, whatever the carving; a split column with
    test rows only gives a test set and nothing carved (training on it fails by name, not at load); "all"
    over separate files is refused."""
    path = tiny_npz(tmp_path / "d.npz", num_per_class=10)
    dm = SkeletonDataModule(name="d", path=str(path), window=16)
    dm.setup()
    assert dm.split_set("all").indices.tolist() == list(range(120))
    assert dm.carved == {"test": "test_fraction=0.2", "val": "val_fraction=0.1"}
    data = load_npz(path)
    only_test = save_npz(tmp_path / "t.npz", {**data, "split": np.full(len(data["y"]), "test")})
    dm = SkeletonDataModule(name="t", path=str(only_test), window=16)
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"test": 120} and dm.carved == {}
    assert dm.layout == "ntu25" and dm.num_classes == 12
    assert len(dm.split_set("test")) == len(dm.split_set("all")) == 120
    with pytest.raises(ValueError, match=r"data 't': no 'train' set; it has \['test'\]"):
        dm.check_sets("train", "test")
    files = SkeletonDataModule(name="f", train_path=str(path), test_path=str(only_test))
    files.setup()
    with pytest.raises(ValueError, match=r"split 'all' needs one file, not separate \['train', 'test'\]"):
        files.split_set("all")


def test_synthetic_source_generated_once_into_cache(tmp_path):
    syn = {"num_per_class": 2, "seed": 0, "frames": 16}
    dm = SkeletonDataModule(name="syn", synthetic=syn, cache_dir=str(tmp_path))
    dm.prepare_data()
    files = list(tmp_path.glob("syn-*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    dm.prepare_data()
    assert files[0].stat().st_mtime_ns == stamp
    assert load_npz(files[0])["x"].shape[0] == 24


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"path": "a.npz", "synthetic": {"num_per_class": 1}}, "exactly one of"),
        ({"path": "missing.npz"}, "no such file missing.npz"),
        ({"synthetic": {"num_per_class": 1}, "val_fraction": 1.5}, r"val_fraction must be in \[0, 1\)"),
        ({"synthetic": {"num_per_class": 1}, "temporal": "warp"}, "temporal must be"),
        ({"source": {"format": "ntu"}}, r"source needs keys \['src'\]"),
        ({"synthetic": {"num_per_class": 1}, "augment": {"flip": True}}, r"unknown augment keys \['flip'\]"),
    ],
)
def test_datamodule_argument_errors(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        SkeletonDataModule(name="bad", **kwargs)


def test_temporal_resample_keeps_endpoints_and_linear_motion():
    x = torch.zeros(2, 3, 10, 1, 1)
    x[:, 0, :, 0, 0] = torch.arange(10.0) + 1  # a joint moving linearly, valid for 6 and 10 frames
    lengths = torch.tensor([6, 10])
    x[0, :, 6:] = 0
    out, new_len = temporal_resample(x, lengths, window=4)
    assert new_len.tolist() == [4, 4]
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor([1.0, 8 / 3, 13 / 3, 6.0]))
    torch.testing.assert_close(out[1, 0, :, 0, 0], torch.tensor([1.0, 4.0, 7.0, 10.0]))
    crop, _ = temporal_resample(
        x, lengths, window=4, crop=(0.5, 0.5), generator=torch.Generator().manual_seed(0)
    )
    assert (crop[0, 0, :, 0, 0] <= 6).all()  # never reads padding
    assert (crop[0, 0, :, 0, 0] >= 1).all()


def test_random_affine_keeps_absent_persons_zero_and_is_rigid_without_scale_shear():
    data = generate(1, seed=0, frames=12)
    x = torch.as_tensor(data["x"], dtype=torch.float64)
    out = random_affine(x, rotate_deg=30, generator=torch.Generator().manual_seed(0))
    single = [i for i, name in enumerate(data["class_names"]) if name not in ("handshake", "push")]
    assert out[single, :, :, :, 1].abs().max() == 0
    torch.testing.assert_close(F.bone_lengths(out, "ntu25"), F.bone_lengths(x, "ntu25"))
    assert not torch.allclose(out, x)


def test_random_mirror_swaps_sides_negates_x_and_keeps_bones():
    data = generate(1, seed=0, frames=12)
    x = torch.as_tensor(data["x"], dtype=torch.float64)
    layout = get_layout("ntu25")
    index = torch.as_tensor(layout.mirror_index)
    out = random_mirror(x, index, p=1.0)
    left, right = layout.index("left_hand"), layout.index("right_hand")
    torch.testing.assert_close(out[:, 0, :, left], -x[:, 0, :, right])
    torch.testing.assert_close(out[:, 1:, :, left], x[:, 1:, :, right])
    torch.testing.assert_close(out[:, :, :, layout.index("head")] * torch.tensor([-1.0, 1, 1]).view(1, 3, 1, 1),
                               x[:, :, :, layout.index("head")])  # fmt: skip
    torch.testing.assert_close(random_mirror(out, index, p=1.0), x)  # an involution
    # The mirror image of a body has its bones, left and right exchanged.
    bones = F.bone_lengths(x, layout)
    child, _ = layout.bone_index
    swap = [list(child).index(layout.mirror_index[c]) for c in child]
    torch.testing.assert_close(F.bone_lengths(out, layout), bones[:, :, swap])
    assert torch.equal(random_mirror(x, index, p=0.0), x)
    flipped = random_mirror(x, index, p=0.5, generator=torch.Generator().manual_seed(0))
    changed = (flipped != x).flatten(1).any(1)
    assert 0 < changed.sum() < len(x)


def test_mirror_index_refuses_a_side_without_twin():
    odd = Layout(
        name="odd",
        joint_names=("root", "left_hand"),
        parents=(-1, 0),
        gait16_map=({0: 1.0},) * 16,
        rest_pose=((0, 0, 0), (0, 1, 0)),
    )
    with pytest.raises(ValueError, match="no mirror twin 'right_hand'"):
        _ = odd.mirror_index


def test_k_fold_test_sets_partition_the_data(tmp_path):
    path = tiny_npz(tmp_path / "d.npz", num_per_class=5)
    seen = []
    for k in range(5):
        dm = SkeletonDataModule(name="d", path=str(path), num_folds=5, fold=k, val_fraction=0.25)
        dm.setup()
        test = set(dm.datasets["test"].indices.tolist())
        other = set(dm.datasets["train"].indices.tolist()) | set(dm.datasets["val"].indices.tolist())
        assert not test & other
        assert len(test) + len(other) == 60
        assert np.bincount(dm.datasets["test"].labels, minlength=12).tolist() == [1] * 12
        seen.extend(test)
    assert sorted(seen) == list(range(60))
    with pytest.raises(ValueError, match="0 <= fold < num_folds"):
        SkeletonDataModule(name="d", path=str(path), num_folds=5, fold=5)


def test_dataset_batch_equals_stacked_items(tmp_path):
    data = load_npz(tiny_npz(tmp_path / "d.npz", num_per_class=2, frames=16))
    ds = SkeletonDataset(data, np.array([5, 0, 17, 3]))
    items = np.array([2, 0, 3])
    x, y, lengths = ds.batch(items)
    expected = [ds[int(i)] for i in items]
    assert torch.equal(x, torch.stack([e[0] for e in expected]))
    assert y.tolist() == [e[1] for e in expected] and lengths.tolist() == [e[2] for e in expected]
