import errno
import io
import os
import pickle
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from lightning_skel.data.io import load_npz, pad_concat, save_npz
from lightning_skel.data.readers.base import Clip, stack_clips


def tiny(n=4, t=8, v=25, m=2):
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(n, 3, t, v, m)).astype(np.float32),
        "y": np.arange(n, dtype=np.int64) % 3,
        "lengths": np.full(n, t, dtype=np.int64),
        "layout": "ntu25",
        "class_names": ["a", "b", "c"],
        "subject": np.arange(n),
        "split": np.array(["train", "train", "test", "test"][:n]),
    }


def test_roundtrip(tmp_path):
    path = save_npz(tmp_path / "d.npz", tiny())
    d = load_npz(path)
    np.testing.assert_array_equal(d["x"], tiny()["x"])
    assert d["layout"] == "ntu25" and d["class_names"] == ["a", "b", "c"]
    assert d["split"].tolist() == ["train", "train", "test", "test"]
    assert not list(tmp_path.glob("*.tmp"))


def write_raw(tmp_path, **changes):
    d = {**tiny(), **changes}
    d = {k: v for k, v in d.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in d.items()})
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"x": np.zeros((4, 3, 8, 25), np.float32)}, "5-D array"),
        ({"x": np.zeros((4, 3, 8, 25, 2), np.float64)}, "float32"),
        ({"y": np.array([0, 1, 2, 3])}, r"labels y must lie in \[0, 3\)"),
        ({"y": np.array([0, -1, 2, 1])}, "labels y must lie"),
        ({"layout": "ntu26"}, "unknown skeleton layout 'ntu26'"),
        ({"layout": "kinect20"}, "has 20 joints but x has V=25"),
        ({"lengths": np.array([8, 9, 8, 8])}, r"lengths must lie in \[1, T=8\]"),
        ({"lengths": np.array([8, 0, 8, 8])}, "lengths must lie"),
        ({"y": None}, "missing key"),
        ({"subject": np.arange(3)}, "subject must be an integer array of shape"),
    ],
)
def test_load_rejects(tmp_path, changes, message):
    path = write_raw(tmp_path, **changes)
    with pytest.raises(ValueError, match=message) as e:
        load_npz(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_load_rejects_non_finite(tmp_path, bad):
    x = tiny()["x"]
    x[2, 0, 3, 4, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf .* first at index 2"):
        load_npz(write_raw(tmp_path, x=x))


def test_load_never_unpickles(tmp_path):
    """Pickled data is refused, naming the file (and the array), without numpy's advice to unpickle it."""
    path = tmp_path / "obj.npz"
    np.savez(path, **{**tiny(), "class_names": np.array([{"evil": 1}], dtype=object)})
    with pytest.raises(ValueError, match=f"{path}: array 'class_names' holds Python objects") as e:
        load_npz(path)
    assert "allow_pickle" not in str(e.value)
    pkl = tmp_path / "p.npz"
    pkl.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match=f"{pkl}: not an npz archive") as e:
        load_npz(pkl)
    assert "allow_pickle" not in str(e.value)


def test_save_validates_and_leaves_nothing_on_error(tmp_path):
    with pytest.raises(ValueError, match="labels y"):
        save_npz(tmp_path / "o.npz", {**tiny(), "y": np.array([0, 5, 1, 1])})
    assert list(tmp_path.iterdir()) == []


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_npz(tmp_path / "nope.npz")


def test_pad_concat_pads_every_axis_but_the_first():
    a = np.ones((1, 2, 3), dtype=np.float32)
    b = np.full((2, 1, 4), 2.0)
    out = pad_concat([a, b])
    assert out.shape == (3, 2, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], [[1, 1, 1, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(out[1:], [[[2, 2, 2, 2], [0, 0, 0, 0]]] * 2)
    assert pad_concat([a, np.zeros((1, 0, 0))], (3, 5)).shape == (2, 3, 5)  # a shape given: empty rows pad


def test_stack_clips_pads_clips_and_their_scores():
    rng = np.random.default_rng(0)
    short = Clip(rng.normal(size=(2, 3, 17, 1)).astype(np.float32), 0, "a", score=np.full((3, 17, 1), 0.5))
    long = Clip(rng.normal(size=(2, 5, 17, 2)).astype(np.float32), 1, "b")  # no scores
    d = stack_clips([short, long], "coco17", ["p", "q"])
    assert d["x"].shape == (2, 2, 5, 17, 2) and d["lengths"].tolist() == [3, 5]
    np.testing.assert_array_equal(d["x"][0, :, :3, :, :1], short.x)
    assert not d["x"][0, :, 3:].any() and not d["x"][0, ..., 1].any()
    np.testing.assert_array_equal(d["x"][1], long.x)
    assert d["score"].shape == (2, 5, 17, 2)
    assert (d["score"][0, :3, :, 0] == 0.5).all() and d["score"].sum() == 0.5 * 3 * 17


def test_random_bytes_are_not_an_npz(tmp_path):
    """Random bytes are neither a zip nor an .npy: named as such, without numpy's advice to unpickle."""
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ValueError, match=f"{path}: not an npz archive") as e:
        load_npz(path)
    assert "allow_pickle" not in str(e.value)


def test_header_claiming_more_rows_than_the_file_holds(tmp_path):
    """An .npy header is only a claim: 10^12 rows in a small file is refused, naming the file and the array,
    instead of numpy allocating for it (MemoryError)."""
    good = save_npz(tmp_path / "good.npz", tiny())
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "x.npy":
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3, 8, 25, 2)}
                )
                old = io.BytesIO(data)
                np.lib.format.read_magic(old)
                np.lib.format.read_array_header_1_0(old)
                data = header.getvalue() + data[old.tell() :]
            dst.writestr(name, data)
    with pytest.raises(ValueError, match=rf"{path}: array 'x' claims shape \(1000000000000, 3, 8, 25, 2\)"):
        load_npz(path)


def test_full_disk_names_the_file(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full)
    out = tmp_path / "d.npz"
    with pytest.raises(OSError, match=f"No space left on device.*{out}") as e:
        save_npz(out, tiny())
    assert e.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_stale_temporary_files_of_a_killed_writer_are_removed(tmp_path):
    """A writer killed before its rename (SIGKILL) leaves its temporary file: the next write of the same
    file removes it when its process is gone, and leaves those of live writers and of other files."""
    out = tmp_path / "d.npz"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".d.npz.{host}.{dead.pid}.abc123.tmp"
    live = tmp_path / f".d.npz.{host}.{os.getpid()}.def456.tmp"
    other = tmp_path / f".e.npz.{host}.{dead.pid}.ghi789.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    save_npz(out, tiny())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["d.npz", live.name, other.name])
