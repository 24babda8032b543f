"""The array-file readers: 2s-AGCN / MS-G3D ``*_data_joint.npy`` + ``*_label.pkl`` and CTR-GCN ``.npz``,
on small files made here, and the restricted unpickler against a malicious label file."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.agcn import AGCNReader, valid_lengths
from lightning_skel.data.readers.base import ReadError
from lightning_skel.data.readers.ctrgcn import CTRGCNReader
from lightning_skel.data.readers.ntu import NTU60_ACTIONS, NTU120_ACTIONS
from lightning_skel.data.safe_pickle import UnsafePickleError, safe_load


class Pwn:
    """A pickle payload that would run a shell command when unpickled by ``pickle.load``."""

    def __init__(self, target) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def skeletons(lengths, c=3, t=20, v=25, m=2, seed=0) -> np.ndarray:
    """Random ``(N, C, T, V, M)`` float32, zero after each row's length; row 1 has one person only."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, size=(len(lengths), c, t, v, m)).astype(np.float32)
    for i, n in enumerate(lengths):
        x[i, :, n:] = 0
    x[1, ..., 1] = 0
    return x


def write_agcn(folder, prefix, x, names, labels, label_name=None):
    folder.mkdir(parents=True, exist_ok=True)
    npy = folder / f"{prefix}data_joint.npy"
    np.save(npy, x)
    with open(folder / (label_name or f"{prefix}label.pkl"), "wb") as f:
        pickle.dump((names, labels), f)
    return npy


# ---- 2s-AGCN / MS-G3D ------------------------------------------------------------------------------------


def test_agcn_reads_train_and_val_pairs(tmp_path):
    lengths = [20, 7, 1, 13, 20]
    x_train = skeletons(lengths)
    names = [f"S001C00{1 + i % 3}P00{i + 1}R001A0{10 + i}.skeleton" for i in range(5)]
    labels = [9, 10, 11, 12, 13]
    write_agcn(tmp_path, "train_", x_train, names, labels)
    x_val = skeletons([5, 20], seed=1)
    write_agcn(
        tmp_path, "val_", x_val, ["S002C002P002R002A002.skeleton", "S002C003P003R002A059.skeleton"], [1, 58]
    )
    np.save(tmp_path / "train_data_bone.npy", x_train)  # other modalities are not joints: ignored

    reader = READERS.get("agcn")()
    files = reader.files(tmp_path)
    assert files == [tmp_path / "train_data_joint.npy", tmp_path / "val_data_joint.npy"]
    train, val = (reader.read_file(p) for p in files)
    np.testing.assert_array_equal(train["x"], x_train)
    assert train["y"].tolist() == labels and train["lengths"].tolist() == lengths
    assert train["split"].tolist() == ["train"] * 5 and val["split"].tolist() == ["test"] * 2
    assert train["layout"] == "ntu25" and train["class_names"] == list(NTU60_ACTIONS)
    assert train["sample_name"][0] == "S001C001P001R001A010"
    assert train["subject"].tolist() == [1, 2, 3, 4, 5] and train["view"].tolist() == [1, 2, 3, 1, 2]
    assert val["y"].tolist() == [1, 58] and val["lengths"].tolist() == [5, 20]


def test_agcn_single_file_layouts_and_scores(tmp_path):
    x = skeletons([20, 3, 9], v=18)
    npy = write_agcn(tmp_path, "kinetics_", x, ["a", "b", "c"], [0, 399, 5])
    data = AGCNReader().read_file(npy)
    assert data["layout"] == "openpose18" and len(data["class_names"]) == 400
    np.testing.assert_array_equal(data["x"], x[:, :2])  # C = 3 is (x, y, confidence) for OpenPose
    np.testing.assert_array_equal(data["score"], x[:, 2])
    assert data["lengths"].tolist() == [20, 3, 9] and "split" not in data and "subject" not in data

    npy = write_agcn(tmp_path / "k20", "", skeletons([4, 4], v=20), ["a", "b"], [0, 1])
    assert npy.name == "data_joint.npy"  # data_joint.npy pairs with label.pkl
    assert AGCNReader().read_file(npy)["layout"] == "kinect20"

    with pytest.raises(ValueError, match="expected a file named"):
        AGCNReader().files(tmp_path / "kinetics_label.pkl")
    npy = write_agcn(tmp_path / "v17", "x_", skeletons([4, 4], v=17), ["a", "b"], [0, 1])
    with pytest.raises(ReadError, match=r"V=17 joints matches no known layout; known: 25 \(ntu25\)"):
        AGCNReader().read_file(npy)


def test_agcn_options_fix_the_class_count(tmp_path):
    npy = write_agcn(tmp_path, "train_", skeletons([3, 3]), ["a", "b"], [0, 1])
    assert len(AGCNReader(options={"num_classes": 120}).read_file(npy)["class_names"]) == 120
    with pytest.raises(ReadError, match="labels go up to 1 but there are only 1 class names"):
        AGCNReader(options={"num_classes": 1}).read_file(npy)
    with pytest.raises(ValueError, match="only the option num_classes"):
        AGCNReader(options={"classes": 3})
    with pytest.raises(ValueError, match="positive integer"):
        AGCNReader(options={"num_classes": 0})


def test_agcn_opens_the_array_memory_mapped(tmp_path, monkeypatch):
    npy = write_agcn(tmp_path, "train_", skeletons([3, 3]), ["a", "b"], [0, 1])
    calls = []
    load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    AGCNReader().read_file(npy)
    assert calls == [{"mmap_mode": "r", "allow_pickle": False}]


@pytest.mark.parametrize(
    ("names", "labels", "message"),
    [
        (["a"], [0, 1], "1 sample names but 2 labels"),
        (["a", "b", "c"], [0, 1, 2], "3 labels"),
        (["a", "b"], [0.5, 1.0], "integer labels"),
        (["a", "b"], [-1, 1], "non-negative"),
    ],
)
def test_agcn_rejects_bad_label_files(tmp_path, names, labels, message):
    npy = write_agcn(tmp_path, "train_", skeletons([3, 3]), names, labels)
    with pytest.raises(ReadError, match=message):
        AGCNReader().read_file(npy)


def test_agcn_refuses_a_malicious_label_pickle(tmp_path):
    npy = write_agcn(tmp_path, "train_", skeletons([3, 3]), ["a", "b"], [0, 1])
    target = tmp_path / "pwned"
    (tmp_path / "train_label.pkl").write_bytes(pickle.dumps((["a", "b"], Pwn(target))))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        AGCNReader().read_file(npy)
    assert not target.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_safe_load_refuses_code_and_reads_plain_data(tmp_path, protocol):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Pwn(target), protocol=protocol))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        safe_load(evil)
    assert not target.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps((["S001", "S002"], [np.int64(3), 4], np.arange(3)), protocol=protocol))
    names, labels, arr = safe_load(plain)
    assert names == ["S001", "S002"] and labels == [3, 4] and arr.tolist() == [0, 1, 2]


def test_valid_lengths():
    x = np.zeros((3, 2, 6, 4))
    x[0, 1, 4, 2] = 1.0  # last non-zero frame 4 -> 5 frames, even with a zero frame inside
    x[1, :, :] = 2.0
    assert valid_lengths(x, time_axis=2).tolist() == [5, 6, 1]


# ---- CTR-GCN / SGN ---------------------------------------------------------------------------------------


def ctrgcn_arrays(n, t, width, lengths, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, t, 150)).astype(np.float32)
    for i, k in enumerate(lengths):
        x[i, k:] = 0
    labels = rng.integers(0, width, size=n)
    return x, np.eye(width, dtype=np.float32)[labels], labels


def test_ctrgcn_reshapes_person_major(tmp_path):
    x_train, y_train, l_train = ctrgcn_arrays(4, 30, 60, [30, 12, 1, 29], seed=0)
    x_test, y_test, l_test = ctrgcn_arrays(3, 30, 60, [30, 5, 17], seed=1)
    x_train[1, 5] = 0
    x_train[1, 5, 75 + 3 * 3 + 1] = 7.5  # frame 5 of row 1: person 2, joint 3, y
    path = tmp_path / "NTU60_CS.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    reader = READERS.get("ctrgcn")()
    assert reader.files(tmp_path) == [path] and reader.files(path) == [path]
    data = reader.read_file(path)
    x = data["x"]
    assert x.shape == (7, 3, 30, 25, 2) and x.dtype == np.float32
    assert x[1, 1, 5, 3, 1] == 7.5 and np.count_nonzero(x[1, :, 5]) == 1
    expected = np.concatenate([x_train, x_test]).reshape(7, 30, 2, 25, 3).transpose(0, 4, 1, 3, 2)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(x[0, :, 2, 24, 0], x_train[0, 2, 72:75])  # person 1, last joint
    assert data["y"].tolist() == [*l_train, *l_test]
    assert data["lengths"].tolist() == [30, 12, 1, 29, 30, 5, 17]
    assert data["split"].tolist() == ["train"] * 4 + ["test"] * 3
    assert data["class_names"] == list(NTU60_ACTIONS) and data["layout"] == "ntu25"


def test_ctrgcn_ntu120_names_and_bad_archives(tmp_path):
    x, y, _ = ctrgcn_arrays(2, 10, 120, [10, 4], seed=2)
    good = tmp_path / "NTU120_CSub.npz"
    np.savez(good, x_train=x, y_train=y, x_test=x, y_test=y)
    assert CTRGCNReader().read_file(good)["class_names"] == list(NTU120_ACTIONS)

    bad = tmp_path / "bad"
    bad.mkdir()
    cases = {
        "missing.npz": ({"x_train": x, "y_train": y}, "missing array"),
        "hot.npz": ({"x_train": x, "y_train": y * 2, "x_test": x, "y_test": y}, "not one-hot"),
        "width.npz": ({"x_train": x, "y_train": y[:, :50], "x_test": x, "y_test": y[:, :50]}, r"\(N, 60\)"),
        "shape.npz": ({"x_train": x[..., :75], "y_train": y, "x_test": x, "y_test": y}, r"\(N, T, 150\)"),
        "obj.npz": (
            {"x_train": np.array([object()] * 2), "y_train": y, "x_test": x, "y_test": y},
            "unpickling",
        ),
    }
    for name, (arrays, message) in cases.items():
        np.savez(bad / name, **arrays)
        with pytest.raises(ReadError, match=message):
            CTRGCNReader().read_file(bad / name)
    with pytest.raises(ValueError, match="pick one"):
        CTRGCNReader().files(bad)
    with pytest.raises(ValueError, match="takes no options"):
        CTRGCNReader(options={"num_classes": 60})
