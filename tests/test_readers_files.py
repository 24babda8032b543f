"""Readers of per-file and array-file formats: UTD-MHAD .mat, Kinetics-skeleton JSON, pyskl pickles and
Emotion-Gait arrays, on the real recordings (marked ``data``) and on small files written here."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from lightning_skel.data.io import load_npz
from lightning_skel.data.prepare import load_readers, prepare
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import ReadError
from lightning_skel.data.readers.pyskl import split_roles
from lightning_skel.data.readers.utd_mhad import UTD_MHAD_ACTIONS, UTD_TO_KINECT20
from lightning_skel.data.safe_pickle import UnsafePickleError
from lightning_skel.skeleton import get_layout

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
load_readers()


def reader(fmt: str, **options):
    return READERS.get(fmt)(options=options)


# ---- writers of small files ---------------------------------------------------------------------------
def kinetics_video(frames: int = 5, people: int = 1, label: int = 0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    data = []
    for f in range(frames):
        skel = [
            {
                "pose": np.round(rng.uniform(0, 1, 36), 3).tolist(),
                "score": np.round(rng.uniform(0.1, 1, 18), 3).tolist(),
            }
            for _ in range(people)
        ]
        data.append({"frame_index": f + 1, "skeleton": skel})
    return {"data": data, "label": f"action_{label}", "label_index": label}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def write_utd(path: Path, frames: int = 10, joints: int = 20, seed: int = 0, **extra) -> Path:
    skel = np.random.default_rng(seed).normal(size=(joints, 3, frames))
    scipy.io.savemat(path, {"d_skel": skel, **extra})
    return path


def pyskl_anno(
    name: str, label: int, m: int = 2, t: int = 12, v: int = 17, c: int = 2, seed: int = 0
) -> dict:
    rng = np.random.default_rng(seed)
    anno = {
        "frame_dir": name,
        "label": label,
        "total_frames": t,
        "img_shape": (240, 320),
        "keypoint": rng.uniform(0, 300, (m, t, v, c)).astype(np.float16),
    }
    if c == 2:
        anno["keypoint_score"] = rng.uniform(0, 1, (m, t, v)).astype(np.float16)
    return anno


def write_pickle(path: Path, obj) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


# ---- UTD-MHAD ------------------------------------------------------------------------------------------
@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings not found at {DATA}")
def test_utd_mhad_all_real_clips(tmp_path):
    src = DATA / "utd_mhad"
    report = prepare("utd_mhad", src, tmp_path / "utd.npz", split="xsub", workers=2, progress=False)
    assert report.skipped == [] and report.num_clips == 861
    d = load_npz(tmp_path / "utd.npz")
    assert d["layout"] == "kinect20" and d["x"].shape[1:] == (3, 125, 20, 1)
    assert d["class_names"] == list(UTD_MHAD_ACTIONS) and len(d["class_names"]) == 27
    assert sorted(set(d["subject"].tolist())) == list(range(1, 9))
    assert sorted(set(d["y"].tolist())) == list(range(27))
    assert d["lengths"].min() >= 41 and d["lengths"].max() == 125

    # labels, subjects and the split agree with the file names
    names = sorted(p.name for p in src.rglob("*_skeleton.mat"))
    parsed = {
        f"a{a}_s{s}_t{t}": (int(a), int(s))
        for a, s, t in (re.match(r"a(\d+)_s(\d+)_t(\d+)", n).groups() for n in names)
    }
    assert sorted(d["sample_name"].tolist()) == sorted(parsed)
    for name, y, subj in zip(d["sample_name"], d["y"], d["subject"], strict=True):
        assert parsed[name] == (y + 1, subj)
    odd = sum(s % 2 for _, s in parsed.values())
    assert (d["split"] == "train").sum() == odd and (d["split"] == "test").sum() == len(names) - odd
    assert set(d["split"][d["subject"] % 2 == 1]) == {"train"} and set(d["split"][d["subject"] % 2 == 0]) == {
        "test"
    }

    # the joint permutation: Kinect v1 SDK order, y up
    lay = get_layout("kinect20")
    hip, spine, sc, head = (lay.index(n) for n in ("hip_center", "spine", "shoulder_center", "head"))
    assert (hip, spine, sc, head) == (0, 1, 2, 3)
    valid = np.arange(d["x"].shape[2])[None, :] < d["lengths"][:, None]  # (N, T)
    p = d["x"][..., 0].transpose(0, 2, 3, 1)  # (N, T, V, 3)
    y = p[..., 1]
    assert (y[..., head] > y[..., hip])[valid].mean() > 0.99
    assert ((y[..., spine] > y[..., hip]) & (y[..., spine] < y[..., sc]))[valid].mean() > 0.99
    ls, rs = lay.index("left_shoulder"), lay.index("right_shoulder")
    d_left = np.linalg.norm(p[:, :, ls] - p[:, :, sc], axis=-1)[valid]
    d_right = np.linalg.norm(p[:, :, rs] - p[:, :, sc], axis=-1)[valid]
    assert np.median(np.abs(d_left - d_right)) < 0.02 and 0.1 < np.median(d_left) < 0.3
    side = (p[:, :, ls, 0] - p[:, :, spine, 0]) * (p[:, :, rs, 0] - p[:, :, spine, 0])
    assert (side < 0)[valid].mean() > 0.95  # the shoulders lie on either side of the spine
    # "right arm swipe to the left": the right hand moves more than the left one in every clip
    rh, lh = lay.index("right_hand"), lay.index("left_hand")
    for i in np.nonzero(d["y"] == 0)[0]:
        clip = p[i, : d["lengths"][i]]
        assert clip[:, rh].std(0).sum() > clip[:, lh].std(0).sum()


def test_utd_permutation_and_metadata(tmp_path):
    skel = np.arange(20, dtype=float)[:, None, None] * np.ones((1, 3, 4))  # joint j holds the value j
    path = tmp_path / "a27_s8_t3_skeleton.mat"
    scipy.io.savemat(path, {"d_skel": skel})
    [clip] = reader("utd_mhad").read_file(path)
    assert clip.x.shape == (3, 4, 20, 1) and clip.x.dtype == np.float32
    np.testing.assert_array_equal(clip.x[0, 0, :, 0], np.array(UTD_TO_KINECT20, dtype=np.float32))
    assert clip.x[0, 0, 3, 0] == 0  # UTD joint 1 (head) is kinect20 joint 3
    assert (clip.label, clip.subject, clip.name) == (26, 8, "a27_s8_t3")
    assert reader("utd_mhad").split_of(clip, "xsub") == "test"


def test_utd_files_natural_order(tmp_path):
    for a in (10, 2, 1):
        write_utd(tmp_path / f"a{a}_s1_t1_skeleton.mat")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name[:3] for p in reader("utd_mhad").files(tmp_path)] == ["a1_", "a2_", "a10"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(512)), "not a readable MATLAB .mat file"),
        (lambda p: p.write_bytes(b""), "not a readable MATLAB .mat file"),
        (
            lambda p: scipy.io.savemat(p, {"skeleton": np.zeros((20, 3, 5))}),
            r"no variable 'd_skel'.*skeleton",
        ),
        (lambda p: write_utd(p, joints=25), "wrong joint count: d_skel has 25 joints, expected 20"),
        (lambda p: scipy.io.savemat(p, {"d_skel": np.zeros((20, 3, 2, 2))}), r"shape \(20, 3, T\)"),
        (lambda p: scipy.io.savemat(p, {"d_skel": np.full((20, 3, 4), np.nan)}), "NaN or Inf"),
        (lambda p: scipy.io.savemat(p, {"d_skel": "text"}), "numeric"),
    ],
    ids=["random-bytes", "empty", "no-d_skel", "25-joints", "4d", "nan", "string"],
)
def test_utd_bad_files(tmp_path, make, reason):
    path = tmp_path / "a1_s1_t1_skeleton.mat"
    make(path)
    with pytest.raises(ReadError, match=reason) as e:
        reader("utd_mhad").read_file(path)
    assert e.value.path == str(path)


@pytest.mark.parametrize(
    ("name", "reason"), [("foo.mat", "does not match"), ("a28_s1_t1_skeleton.mat", "outside")]
)
def test_utd_bad_names(tmp_path, name, reason):
    with pytest.raises(ReadError, match=reason):
        reader("utd_mhad").read_file(write_utd(tmp_path / name))


# ---- Kinetics-skeleton JSON ----------------------------------------------------------------------------
@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings not found at {DATA}")
def test_kinetics_real_json(tmp_path):
    src = DATA / "kinetics_skeleton" / "kinetics_skeleton_json_derived"
    report = prepare("kinetics", src, tmp_path / "k.npz", progress=False)
    assert report.skipped == [] and report.num_clips == 3
    d = load_npz(tmp_path / "k.npz")
    assert d["layout"] == "openpose18" and d["x"].shape == (3, 2, 90, 18, 2)  # C == 2: x, y only
    assert "score" in d and d["score"].shape == (3, 90, 18, 2)
    assert d["score"].min() >= 0 and d["score"].max() <= 1
    assert d["x"].min() >= 0 and d["x"].max() <= 1  # raw normalised image coordinates, not centred
    assert d["class_names"] == [
        "treadmill_walk_teenage_hooligan",
        "treadmill_walk_scuba_diver",
        "treadmill_walk_collapsing",
    ]
    assert d["y"].tolist() == [0, 1, 2] and d["lengths"].tolist() == [90, 90, 90]

    # against the JSON: per frame the most confident people, in order of mean score
    video = json.loads((src / "treadmill_27.json").read_text())
    i = d["sample_name"].tolist().index("treadmill_27")
    multi = 0
    for frame in video["data"]:
        t = frame["frame_index"] - video["data"][0]["frame_index"]
        people = sorted(frame["skeleton"], key=lambda s: -np.mean(s["score"]))
        multi += len(people) > 2
        for m in range(2):
            if m < len(people):
                np.testing.assert_allclose(d["x"][i, :, t, :, m].T.ravel(), people[m]["pose"], atol=1e-6)
                np.testing.assert_allclose(d["score"][i, t, :, m], people[m]["score"], atol=1e-6)
            else:
                assert not d["x"][i, :, t, :, m].any() and not d["score"][i, t, :, m].any()
    assert multi > 0  # the clip has frames with 3 people, of which 2 are kept


def test_kinetics_keeps_most_confident_people(tmp_path):
    frames = [
        {
            "frame_index": 3,
            "skeleton": [
                {"pose": [0.1] * 36, "score": [0.2] * 18},
                {"pose": [0.3] * 36, "score": [0.9] * 18},
                {"pose": [0.5] * 36, "score": [0.5] * 18},
            ],
        },
        {"frame_index": 5, "skeleton": [{"pose": [0.7] * 36, "score": [0.4] * 18}]},
        {"frame_index": 6, "skeleton": []},
    ]
    path = write_json(tmp_path / "v.json", {"data": frames, "label": "x", "label_index": 4})
    [clip] = reader("kinetics").read_file(path)
    assert clip.x.shape == (2, 4, 18, 2) and clip.score.shape == (4, 18, 2)  # frames 3..6, M = 2
    assert clip.x[0, 0, 0].tolist() == pytest.approx([0.3, 0.5])
    assert clip.score[0, 0].tolist() == pytest.approx([0.9, 0.5])
    assert not clip.x[:, 1].any()  # frame_index 4 is missing: zeros
    assert clip.x[0, 2, 0].tolist() == pytest.approx([0.7, 0.0])
    assert not clip.x[:, 3].any() and clip.label == 4
    [clip3] = reader("kinetics", max_people=3).read_file(path)
    assert clip3.x[0, 0, 0].tolist() == pytest.approx([0.3, 0.5, 0.1])


def test_kinetics_label_map(tmp_path):
    (tmp_path / "map.json").write_text(json.dumps(["a", "b", "c"]))
    video = kinetics_video()
    del video["label_index"]
    video["label"] = "c"
    path = write_json(tmp_path / "v.json", video)
    r = reader("kinetics", label_map=str(tmp_path / "map.json"))
    clips = r.read_file(path)
    assert clips[0].label == 2 and r.assemble(clips)["class_names"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="max_people"):
        reader("kinetics", max_people=0)


@pytest.mark.parametrize(
    ("content", "reason", "line"),
    [
        ("", "not valid JSON", 1),
        ('{"data": [\n {"frame_index": 1,\n "skeleton": [}]}', "not valid JSON", 3),
        ("{}", 'expected an object with a "data" list', None),
        ("[1, 2]", 'expected an object with a "data" list', None),
        ('{"data": [], "label_index": 0}', "no frames", None),
        (
            {"pose": [0.5] * 34, "score": [0.5] * 18},
            r"frame 1 person 0: pose must list 36 values .*got 34",
            None,
        ),
        ({"pose": [0.5] * 36, "score": [0.5] * 17}, "score must list 18 values, got 17", None),
        ({"pose": ["a"] * 36, "score": [0.5] * 18}, "must be numbers", None),
        ({"pose": [None] * 36, "score": [0.5] * 18}, "NaN, Infinity or null", None),
        ({"score": [0.5] * 18}, "pose must list 36 values", None),
    ],
    ids=[
        "empty",
        "syntax",
        "no-data",
        "list",
        "no-frames",
        "pose-34",
        "score-17",
        "strings",
        "nulls",
        "no-pose",
    ],
)
def test_kinetics_malformed(tmp_path, content, reason, line):
    path = tmp_path / "bad.json"
    if isinstance(content, dict):  # a bad person in the second frame of a good video
        video = kinetics_video(frames=3)
        video["data"][1]["skeleton"] = [content]
        content = json.dumps(video)
    path.write_text(content)
    with pytest.raises(ReadError, match=reason) as e:
        reader("kinetics").read_file(path)
    assert e.value.line == line and e.value.path == str(path)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"label_index": None}, "label_index must be an integer"),
        ({"label_index": -1}, "unlabelled"),
        ({"data": [{"frame_index": 1, "skeleton": []}, {"frame_index": 1, "skeleton": []}]}, "duplicate"),
        ({"data": [{"frame_index": -2, "skeleton": []}]}, "non-negative"),
        ({"data": [{"frame_index": 0}, {"frame_index": 10**6}]}, "spans"),
        ({"data": [[1]]}, "frame 0: expected"),
    ],
)
def test_kinetics_bad_labels_and_frames(tmp_path, change, reason):
    path = write_json(tmp_path / "v.json", {**kinetics_video(), **change})
    with pytest.raises(ReadError, match=reason):
        reader("kinetics").read_file(path)


def test_kinetics_official_split(tmp_path):
    for folder, label in (("kinetics_train", 0), ("kinetics_val", 1)):
        (tmp_path / folder).mkdir()
        write_json(tmp_path / folder / f"{folder}_v.json", kinetics_video(label=label))
    write_json(tmp_path / "kinetics_train_label.json", {"v": {"label_index": 0}})  # not a video
    report = prepare("kinetics", tmp_path, tmp_path / "k.npz", split="official", progress=False)
    assert report.skipped == []
    d = load_npz(tmp_path / "k.npz")
    assert d["split"].tolist() == ["train", "test"] and d["class_names"] == ["action_0", "action_1"]


# ---- pyskl ---------------------------------------------------------------------------------------------
@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings not found at {DATA}")
def test_pyskl_real_pickle(tmp_path):
    src = DATA / "kinetics_skeleton" / "paddlevideo" / "example_UCF101_skeleton.pkl"
    report = prepare("pyskl", src, tmp_path / "p.npz", progress=False)
    assert report.num_clips == 1 and report.skipped == []
    d = load_npz(tmp_path / "p.npz")
    assert d["layout"] == "coco17" and d["x"].shape == (1, 2, 163, 17, 2)
    assert d["lengths"].tolist() == [163] and d["y"].tolist() == [0]
    assert d["sample_name"].tolist() == ["v_ApplyEyeMakeup_g01_c01"]
    assert d["score"].shape == (1, 163, 17, 2) and d["score"].min() >= 0 and d["score"].max() <= 1
    assert d["x"].max() > 100  # pixel coordinates, kept as they are


def test_pyskl_annotation_list_and_split(tmp_path):
    annos = [
        pyskl_anno(f"S001C001P00{i}R001A00{i}", label=i, t=10 + i, m=1 + i % 2, seed=i) for i in range(1, 5)
    ]
    split = {"xsub_train": [a["frame_dir"] for a in annos[:2]], "xsub_val": [annos[2]["frame_dir"]]}
    path = write_pickle(tmp_path / "ntu.pkl", {"split": split, "annotations": annos})
    r = reader("pyskl")
    clips = r.read_file(path)
    assert [c.x.shape for c in clips] == [(2, 11, 17, 2), (2, 12, 17, 1), (2, 13, 17, 2), (2, 14, 17, 1)]
    np.testing.assert_array_equal(clips[0].x, annos[0]["keypoint"].astype(np.float32).transpose(3, 1, 2, 0))
    np.testing.assert_array_equal(
        clips[0].score, annos[0]["keypoint_score"].astype(np.float32).transpose(1, 2, 0)
    )
    d = r.assemble(clips, "xsub")  # the 4th clip is in no xsub subset: left out
    assert d["split"].tolist() == ["train", "train", "test"] and d["y"].tolist() == [1, 2, 3]
    assert d["class_names"] == [f"class_{i}" for i in range(5)]  # from every label read, before the split
    with pytest.raises(ValueError, match=r"no subset for split 'xview'.*xsub_train"):
        r.assemble(clips, "xview")


def test_pyskl_3d_and_layouts(tmp_path):
    path = write_pickle(tmp_path / "a.pkl", [pyskl_anno("a", 0, v=25, c=3), pyskl_anno("b", 1, v=25, c=3)])
    d = reader("pyskl").assemble(reader("pyskl").read_file(path))
    assert d["layout"] == "ntu25" and d["x"].shape[1] == 3 and "score" not in d
    path = write_pickle(tmp_path / "b.pkl", pyskl_anno("c", 0, v=18, t=20))
    anno = pyskl_anno("c", 0, v=18, t=20)
    anno["total_frames"] = 15
    write_pickle(path, anno)
    d = reader("pyskl").assemble(reader("pyskl").read_file(path))
    assert d["layout"] == "openpose18" and d["lengths"].tolist() == [15]


def test_pyskl_split_roles():
    assert split_roles("xsub", ["xsub_train", "xsub_val", "xview_train"]) == {
        "xsub_train": "train",
        "xsub_val": "test",
    }
    assert split_roles("official", ["train", "val", "test"]) == {
        "train": "train",
        "val": "val",
        "test": "test",
    }
    assert split_roles("split2", ["train1", "test1", "train2", "test2"]) == {
        "train2": "train",
        "test2": "test",
    }
    assert split_roles("xset", ["xsub_train"]) == {}


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([], "non-empty list"),
        ("text", "non-empty list"),
        ([{"frame_dir": "a", "label": 0}], "no keypoint array"),
        ([pyskl_anno("a", 0, v=10)], "10 joints"),
        ([pyskl_anno("a", 0, c=4)], "C=4"),
        ([{**pyskl_anno("a", 0), "label": -1}], "label must be a non-negative integer"),
        ([{**pyskl_anno("a", 0), "label": None}], "label must be"),
        ([{**pyskl_anno("a", 0), "total_frames": 99}], "total_frames"),
        ([{**pyskl_anno("a", 0), "keypoint_score": np.zeros((2, 3, 17))}], "keypoint_score must be"),
        ([{**pyskl_anno("a", 0), "keypoint": np.full((1, 4, 17, 2), np.nan)}], "NaN"),
        ([pyskl_anno("a", 0), pyskl_anno("b", 0, v=25)], r"annotation 1 \('b'\) has \(V, C\)"),
        ({"split": {"train": "abc"}, "annotations": [pyskl_anno("a", 0)]}, "split"),
    ],
)
def test_pyskl_malformed(tmp_path, obj, reason):
    path = write_pickle(tmp_path / "bad.pkl", obj)
    with pytest.raises(ReadError, match=reason):
        reader("pyskl").read_file(path)


def test_pyskl_not_a_pickle(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ReadError, match="not a readable pickle"):
        reader("pyskl").read_file(path)


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_pyskl_refuses_malicious_pickle(tmp_path):
    target = tmp_path / "pwned"
    path = write_pickle(tmp_path / "evil.pkl", {"annotations": [_Evil(target)]})
    with pytest.raises(UnsafePickleError, match=r"refusing to load (io|builtins)\.open"):
        reader("pyskl").read_file(path)
    assert not target.exists()
    with pytest.raises(UnsafePickleError):
        prepare("pyskl", path, tmp_path / "out.npz", progress=False)
    assert not target.exists() and not (tmp_path / "out.npz").exists()


# ---- Emotion-Gait --------------------------------------------------------------------------------------
@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings not found at {DATA}")
def test_emotion_gait_real_arrays(tmp_path):
    src = DATA / "emotion_gait" / "emotion_gait_real342_T75.npz"
    prepare("emotion_gait", src, tmp_path / "e.npz", progress=False)
    d = load_npz(tmp_path / "e.npz")
    assert d["x"].shape == (342, 3, 75, 16, 1) and d["layout"] == "gait16"
    assert d["class_names"] == ["Happy", "Angry", "Sad", "Neutral"] == d["emotion_names"]
    assert np.bincount(d["y"]).tolist() == [112, 33, 78, 119]
    np.testing.assert_array_equal(d["emotion"], d["y"])
    with np.load(src) as raw:
        np.testing.assert_array_equal(d["x"][..., 0], raw["positions"].transpose(0, 3, 1, 2))
        assert d["sample_name"].tolist() == raw["keys"].tolist()


@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings not found at {DATA}")
def test_emotion_gait_real_proxemo_h5(tmp_path):
    src = DATA / "emotion_gait" / "proxemo_sample_data" / "sample_features.h5"
    prepare("emotion_gait", src, tmp_path / "e.npz", progress=False)
    d = load_npz(tmp_path / "e.npz")
    assert d["lengths"].tolist() == [32, 26, 30] and d["y"].tolist() == [3, 1, 1]
    assert d["sample_name"].tolist() == [
        "002_Sad_positions.csv",
        "004_Angry_positions.csv",
        "008_Happy_positions.csv",
    ]
    bone = np.linalg.norm(d["x"][0, :, :32, 3, 0] - d["x"][0, :, :32, 2, 0], axis=0)  # neck-head, metres
    assert bone.std() < 1e-3 and 0.05 < bone.mean() < 0.3


def test_emotion_gait_npz_checks(tmp_path):
    good = {"positions": np.zeros((3, 5, 16, 3), np.float32), "labels": np.array([0, 3, 1])}
    np.savez(tmp_path / "ok.npz", **good)
    clips = reader("emotion_gait").read_file(tmp_path / "ok.npz")
    assert [c.emotion for c in clips] == [0, 3, 1] and clips[0].x.shape == (3, 5, 16, 1)
    bad = {
        "shape": {**good, "positions": np.zeros((3, 5, 17, 3))},
        "labels": {**good, "labels": np.array([0, 4, 1])},
        "missing": {"positions": good["positions"]},
        "object": {**good, "labels": np.array([0, "a", None], dtype=object)},
    }
    reasons = {
        "shape": r"\(N, T, 16, 3\)",
        "labels": "outside 0..3",
        "missing": "labels",
        "object": "plain npz",
    }
    for key, arrays in bad.items():
        np.savez(tmp_path / f"{key}.npz", **arrays)
        with pytest.raises(ReadError, match=reasons[key]):
            reader("emotion_gait").read_file(tmp_path / f"{key}.npz")
