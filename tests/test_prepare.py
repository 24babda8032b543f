"""``python -m lightning_skel.data.prepare``: argument checks, skipped files, exit codes, parallel reading
that does not change the output, atomic writes, and the data configs that name a ``source``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import scipy.io
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lightning_skel.data.io import load_npz
from lightning_skel.data.prepare import (
    NothingReadError,
    PrepareError,
    PrepareReport,
    Skipped,
    _concat,
    load_readers,
    main,
    prepare,
)
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError
from tests.helpers import ntu_skeleton_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MY_FORMATS = {"utd_mhad", "emotion_gait", "kinetics", "pyskl"}


def kinetics_video(frames: int, label: int, seed: int, people: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "data": [
            {
                "frame_index": f,
                "skeleton": [
                    {
                        "pose": rng.uniform(0, 1, 36).round(3).tolist(),
                        "score": rng.uniform(0, 1, 18).round(3).tolist(),
                    }
                    for _ in range(people)
                ],
            }
            for f in range(frames)
        ],
        "label": f"action_{label}",
        "label_index": label,
    }


@pytest.fixture
def kinetics_dir(tmp_path) -> Path:
    """Five good videos of different lengths and people counts, and two bad files."""
    src = tmp_path / "kinetics"
    src.mkdir()
    for i in range(5):
        (src / f"good_{i}.json").write_text(json.dumps(kinetics_video(4 + 3 * i, i % 3, i, people=1 + i % 3)))
    (src / "bad_empty.json").write_text("")
    video = kinetics_video(3, 0, 9)
    video["data"][2]["skeleton"][0]["pose"] = [0.5] * 30
    (src / "bad_pose.json").write_text(json.dumps(video))
    return src


@pytest.fixture
def utd_dir(tmp_path) -> Path:
    src = tmp_path / "utd"
    src.mkdir()
    rng = np.random.default_rng(0)
    for a, s in ((1, 1), (2, 2), (3, 3)):
        scipy.io.savemat(src / f"a{a}_s{s}_t1_skeleton.mat", {"d_skel": rng.normal(size=(20, 3, 8 + a))})
    (src / "a4_s1_t1_skeleton.mat").write_bytes(rng.bytes(300))
    scipy.io.savemat(src / "a5_s1_t1_skeleton.mat", {"other": np.zeros((20, 3, 4))})
    scipy.io.savemat(src / "a6_s1_t1_skeleton.mat", {"d_skel": np.zeros((15, 3, 4))})
    return src


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---- registry and arguments ----------------------------------------------------------------------------
def test_load_readers_registers_every_module():
    assert set(load_readers()) >= MY_FORMATS
    for name in MY_FORMATS:
        assert issubclass(READERS.get(name), Reader)


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(
        PrepareError, match=r"unknown format 'nope'; known formats: .*emotion_gait.*kinetics.*utd_mhad"
    ):
        prepare("nope", tmp_path, tmp_path / "o.npz")


def test_missing_src_is_named(tmp_path):
    missing = tmp_path / "not_here"
    with pytest.raises(PrepareError, match=f"source '{missing}' does not exist"):
        prepare("utd_mhad", missing, tmp_path / "o.npz")


def test_bad_split_lists_the_known_ones(utd_dir, tmp_path):
    with pytest.raises(PrepareError, match=r"no split 'xview'; known: \['xsub'\]"):
        prepare("utd_mhad", utd_dir, tmp_path / "o.npz", split="xview")
    with pytest.raises(PrepareError, match="no split 'xsub'; known: none"):
        prepare("emotion_gait", utd_dir, tmp_path / "o.npz", split="xsub")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out": "o.h5"}, r"must end in \.npz"),
        ({"workers": 0}, "workers must be a positive integer"),
        ({"limit": 0}, "limit must be a positive integer"),
        ({"options": {"max_people": -1}}, "bad options.*max_people"),
        ({"options": {"label_map": "/no/such/map.json"}}, "bad options.*label_map"),
    ],
)
def test_bad_arguments(kinetics_dir, tmp_path, kwargs, message):
    kwargs = {"out": "o.npz", **kwargs}
    kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(PrepareError, match=message):
        prepare("kinetics", kinetics_dir, **kwargs)
    assert not kwargs["out"].exists()


def test_no_files_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="no utd_mhad files found"):
        prepare("utd_mhad", tmp_path / "empty", tmp_path / "o.npz")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope", ".", "o.npz"], "unknown format 'nope'; known formats:"),
        (["utd_mhad", "/no/such/dir", "o.npz"], "source '/no/such/dir' does not exist"),
        (["utd_mhad", ".", "o.npz", "--split", "xset"], "no split 'xset'; known: ['xsub']"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    argv = [a if a != "o.npz" else str(tmp_path / "o.npz") for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


# ---- skips, exit codes, nothing written ----------------------------------------------------------------
def test_bad_files_are_skipped_and_listed(kinetics_dir, tmp_path):
    out = tmp_path / "k.npz"
    report = prepare("kinetics", kinetics_dir, out, progress=False)
    assert isinstance(report, PrepareReport) and report.out == out and report.num_clips == 5
    assert report.num_files == 7
    assert [Path(s.path).name for s in report.skipped] == ["bad_empty.json", "bad_pose.json"]
    empty, pose = report.skipped
    assert empty.line == 1 and "not valid JSON" in empty.reason
    assert "frame 2 person 0: pose must list 36 values" in pose.reason and "got 30" in pose.reason
    d = load_npz(out)
    assert d["sample_name"].tolist() == [f"good_{i}" for i in range(5)]
    assert d["x"].shape == (5, 2, 16, 18, 2) and d["lengths"].tolist() == [4, 7, 10, 13, 16]
    assert not d["x"][0, :, :, :, 1].any()  # one person only in good_0: second slot empty


def test_cli_exit_1_lists_skips(utd_dir, tmp_path, capsys):
    out = tmp_path / "u.npz"
    assert main(["utd_mhad", str(utd_dir), str(out), "--split", "xsub", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert f"wrote 3 clip(s) from 3 file(s) to {out}" in text
    assert "skipped 3 file(s):" in text
    assert "a4_s1_t1_skeleton.mat: not a readable MATLAB .mat file" in text
    assert "a5_s1_t1_skeleton.mat: no variable 'd_skel'" in text
    assert "a6_s1_t1_skeleton.mat: wrong joint count: d_skel has 15 joints, expected 20" in text
    d = load_npz(out)
    assert d["sample_name"].tolist() == ["a1_s1_t1", "a2_s2_t1", "a3_s3_t1"]
    assert d["split"].tolist() == ["train", "test", "train"] and d["y"].tolist() == [0, 1, 2]


def test_cli_exit_0_and_options(kinetics_dir, tmp_path, capsys):
    for bad in kinetics_dir.glob("bad_*"):
        bad.unlink()
    out = tmp_path / "k.npz"
    assert main(["kinetics", str(kinetics_dir), str(out), "-o", "max_people=3", "--workers", "2"]) == 0
    assert "wrote 5 clip(s)" in capsys.readouterr().out
    assert load_npz(out)["x"].shape[-1] == 3


def test_all_bad_writes_nothing(tmp_path, capsys):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.json").write_text("")
    (src / "b.json").write_text('{"data": [{"frame_index": 0, "skeleton": [{"pose": [1], "score": [1]}]}]}')
    out = tmp_path / "o.npz"
    with pytest.raises(NothingReadError, match="no clip could be read") as e:
        prepare("kinetics", src, out, workers=2, progress=False)
    assert e.value.report.out is None and len(e.value.report.skipped) == 2
    assert not out.exists() and leftovers(tmp_path) == []
    assert main(["kinetics", str(src), str(out)]) == 2
    captured = capsys.readouterr()
    assert "nothing written" in captured.err and "b.json" in captured.out
    assert not out.exists() and leftovers(tmp_path) == []


def test_one_bad_ntu_file_does_not_abort_prepare(tmp_path, capsys):
    """A frame count larger than the file can hold (the parser preallocated for it: MemoryError) and a
    coordinate beyond float32's range (the assembly failed naming no file) are skips like any corrupt file."""
    src = tmp_path / "ntu"
    src.mkdir()
    good = ntu_skeleton_text(frames=3)
    lines = good.split(b"\r\n")
    lines[4] = b"1e39" + lines[4][lines[4].index(b" ") :]  # x of the first joint
    files = {
        "S001C001P001R001A001": good,
        "S001C001P001R001A002": b"100000000" + good[1:],  # the frame count "3" replaced
        "S001C001P002R001A003": b"1000000000000000" + good[1:],
        "S001C002P001R001A004": b"\r\n".join(lines),
        "S001C002P002R001A005": ntu_skeleton_text(frames=4, seed=1),
    }
    for name, text in files.items():
        (src / f"{name}.skeleton").write_bytes(text)
    out = tmp_path / "ntu.npz"
    assert main(["ntu", str(src), str(out), "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "wrote 2 clip(s) from 2 file(s)" in text and "skipped 3 file(s):" in text
    path = {name: src / f"{name}.skeleton" for name in files}
    assert f"{path['S001C001P001R001A002']}:1: the frame count 100000000 cannot fit in a file of" in text
    assert f"{path['S001C001P002R001A003']}:1: the frame count 1000000000000000 cannot fit" in text
    assert f"{path['S001C002P001R001A004']}:5: joint line: b'1e39' is beyond float32's range" in text
    assert load_npz(out)["sample_name"].tolist() == ["S001C001P001R001A001", "S001C002P002R001A005"]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_value_beyond_float32_skips_its_file(kinetics_dir, tmp_path):
    """Any reader's clip that is not finite in float32 (a finite float64 like 1e39 overflows) skips its file,
    naming it, instead of failing the whole assembly."""
    video = kinetics_video(3, 1, 7)
    video["data"][1]["skeleton"][0]["pose"][5] = 1e39
    (kinetics_dir / "huge.json").write_text(json.dumps(video))
    report = prepare("kinetics", kinetics_dir, tmp_path / "k.npz", progress=False)
    assert report.num_clips == 5 and len(report.skipped) == 3
    (huge,) = [s for s in report.skipped if s.path == str(kinetics_dir / "huge.json")]
    assert "NaN or Inf in float32" in huge.reason and "huge" in huge.reason


def test_subprocess_exit_code(utd_dir, tmp_path):
    out = tmp_path / "u.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_skel.data.prepare", "utd_mhad", str(utd_dir), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "skipped 3 file(s)" in proc.stdout and out.is_file()


# ---- parallel reading, limit, atomic writes ------------------------------------------------------------
def test_workers_do_not_change_the_output(kinetics_dir, utd_dir, tmp_path):
    for fmt, src in (("kinetics", kinetics_dir), ("utd_mhad", utd_dir)):
        reports = [
            prepare(
                fmt, src, tmp_path / f"{fmt}_{w}.npz", split="xsub" if fmt == "utd_mhad" else None, workers=w
            )
            for w in (1, 2, 3)
        ]
        assert reports[0].skipped == reports[1].skipped == reports[2].skipped
        one, *others = (load_npz(r.out) for r in reports)
        for other in others:
            assert one.keys() == other.keys()
            for key in one:
                np.testing.assert_array_equal(np.asarray(one[key]), np.asarray(other[key]), err_msg=key)


def test_limit(kinetics_dir, tmp_path):
    report = prepare("kinetics", kinetics_dir, tmp_path / "k.npz", limit=3)  # the two bad files sort first
    assert report.num_files == 3 and len(report.skipped) == 2 and report.num_clips == 1
    # one file of many clips: the limit also caps the clips
    np.savez(tmp_path / "gaits.npz", positions=np.zeros((5, 4, 16, 3)), labels=np.arange(5) % 4)
    report = prepare("emotion_gait", tmp_path / "gaits.npz", tmp_path / "e.npz", limit=2)
    assert report.num_clips == 2 and load_npz(report.out)["y"].tolist() == [0, 1]


def test_failed_write_leaves_no_partial_output(kinetics_dir, tmp_path, monkeypatch):
    out = tmp_path / "k.npz"

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        prepare("kinetics", kinetics_dir, out, progress=False)
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()

    first = prepare("kinetics", kinetics_dir, out, progress=False)  # an earlier good file stays intact
    before = out.read_bytes()
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        prepare("kinetics", kinetics_dir, out, progress=False)
    assert out.read_bytes() == before and first.num_clips == 5 and leftovers(tmp_path) == []


def test_sigterm_while_writing_leaves_no_temporary_file(kinetics_dir, tmp_path):
    """``prepare`` stopped by SIGTERM (a scheduler's kill, ``timeout``) while it writes the npz removes its
    temporary file, as it does on Ctrl-C, instead of leaving a hidden partial copy."""
    out = tmp_path / "k.npz"
    code = (
        "import sys, time\n"
        "import numpy as np\n"
        "from lightning_skel.data.prepare import main\n"
        "def slow(f, **arrays):\n"
        "    f.write(b'partial')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        "np.savez = slow\n"
        f"sys.exit(main(['kinetics', {str(kinetics_dir)!r}, {str(out)!r}, '--no-progress']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert len(leftovers(tmp_path)) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.stdout.close()
    assert leftovers(tmp_path) == [] and not out.exists()


# ---- readers that misbehave, and readers that return arrays ---------------------------------------------
@dataclass
class BoomReader(Reader):
    """Reads ``*.txt`` files holding a frame count; a file saying ``boom`` is a bug (TypeError)."""

    name: ClassVar[str] = "boom"
    layout: ClassVar[str] = "gait16"
    class_names: ClassVar[tuple[str, ...]] = ("a", "b")
    splits: ClassVar[tuple[str, ...]] = ("parity",)

    def files(self, src: Path) -> list[Path]:
        return sorted(src.glob("*.txt"))

    def read_file(self, path: Path):
        text = path.read_text().strip()
        if text == "boom":
            raise TypeError(f"a bug while reading {path.name}")
        if text == "bad":
            raise ReadError(path, "bad content", line=3)
        t = int(text)
        x = np.full((1, 3, t, 16, 1), t, dtype=np.float32)
        return {
            "x": x,
            "y": np.array([t % 2], dtype=np.int64),
            "lengths": np.array([t], dtype=np.int64),
            "layout": "gait16",
            "class_names": ["a", "b"],
            "subject": np.array([t], dtype=np.int64),
            "sample_name": np.array([path.stem]),
        }

    def split_of(self, clip: Clip, split: str) -> str:
        return "train" if clip.subject % 2 == 0 else "test"


@pytest.fixture
def boom(monkeypatch, tmp_path) -> Path:
    monkeypatch.setitem(READERS._items, "boom", BoomReader)
    src = tmp_path / "boom"
    src.mkdir()
    for i, text in enumerate(["3", "bad", "6", "5"]):
        (src / f"{i}.txt").write_text(text)
    return src


@pytest.mark.parametrize("workers", [1, 2])
def test_other_exceptions_propagate(boom, tmp_path, workers):
    (boom / "9.txt").write_text("boom")
    out = tmp_path / "o.npz"
    with pytest.raises(TypeError, match="a bug while reading 9.txt"):
        prepare("boom", boom, out, workers=workers, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_array_results_are_concatenated(boom, tmp_path, workers):
    report = prepare("boom", boom, tmp_path / "o.npz", split="parity", workers=workers)
    assert report.skipped == [Skipped(str(boom / "1.txt"), 3, "bad content")]
    assert str(report.skipped[0]) == f"{boom / '1.txt'}:3: bad content"
    d = load_npz(report.out)
    assert d["x"].shape == (3, 3, 6, 16, 1) and d["lengths"].tolist() == [3, 6, 5]
    assert d["x"][0, :, 3:].sum() == 0 and d["x"][1, 0, 5, 0, 0] == 6  # padded after each clip's frames
    assert d["split"].tolist() == ["test", "train", "test"] and d["sample_name"].tolist() == ["0", "2", "3"]
    limited = prepare("boom", boom, tmp_path / "l.npz", limit=3)
    assert limited.num_clips == 2  # 3 files read, one skipped


def test_concat_pads_files_and_scores():
    """Files of different lengths and person counts stack into one padded array; a file without scores
    gets zero scores."""
    a = {"x": np.ones((1, 2, 3, 17, 1), np.float32), "y": np.array([0]), "lengths": np.array([3]),
         "layout": "coco17", "score": np.full((1, 3, 17, 1), 0.5, np.float32)}  # fmt: skip
    b = {"x": np.full((2, 2, 4, 17, 2), 2.0, np.float32), "y": np.array([1, 1]), "lengths": np.array([4, 2]),
         "layout": "coco17"}  # fmt: skip
    out = _concat([a, b])
    assert out["x"].shape == (3, 2, 4, 17, 2) and out["lengths"].tolist() == [3, 4, 2]
    assert out["x"][0].sum() == 2 * 3 * 17 and (out["x"][1:] == 2).all()
    assert out["score"].shape == (3, 4, 17, 2) and out["score"].sum() == 0.5 * 3 * 17
    with pytest.raises(ValueError, match="joint count V"):
        _concat([a, {**b, "x": np.zeros((2, 2, 4, 25, 1), np.float32)}])


# ---- data configs --------------------------------------------------------------------------------------
CONFIGS = {
    "ntu60_xsub": ("ntu", "xsub60"),
    "ntu60_xview": ("ntu", "xview60"),
    "ntu120_xsub": ("ntu", "xsub120"),
    "ntu120_xset": ("ntu", "xset120"),
    "kinetics": ("kinetics", None),
    "utd_mhad": ("utd_mhad", "xsub"),
    "emotion_gait": ("emotion_gait", None),
}


def compose_data(name: str, data_dir: Path, overrides: Sequence[str] = ()):
    """The ``data`` group entry ``name`` as Hydra composes it (with its ``_base_``), paths from configs/paths."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose(overrides=[f"+data={name}", "+paths=default", f"paths.data_dir={data_dir}", *overrides])
    return cfg


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_data_configs(name, tmp_path):
    raw = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "data" / f"{name}.yaml"))
    assert raw["defaults"] == ["_base_", "_self_"]
    assert raw["source"]["src"].startswith("${paths.data_dir}/")
    cfg = compose_data(name, tmp_path)
    fmt, split = CONFIGS[name]
    assert cfg.data.name == name and cfg.data.source.format == fmt and cfg.data.source.split == split
    assert cfg.data.path is None and cfg.data.synthetic is None  # exactly one source of data
    assert cfg.data.source.src.startswith(str(tmp_path))
    assert isinstance(cfg.data.window, int) and cfg.data.window > 0
    load_readers()
    if fmt in READERS:  # the NTU reader is written separately
        READERS.get(fmt)().check_split(split)
    if fmt == "ntu":  # the body selection is named, so that each has its own cache file
        assert cfg.data.source.options == {"pipeline": "project"}
        other = compose_data(name, tmp_path, ["data.source.options.pipeline=agcn"]).data.source
        assert READERS.get("ntu")(options=dict(other.options)).pipeline == "agcn"


@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings not found at {DATA}")
@pytest.mark.parametrize("name", ["kinetics", "utd_mhad", "emotion_gait"])
def test_data_config_sources_exist(name):
    source = compose_data(name, DATA).data.source
    load_readers()
    assert READERS.get(source.format)().files(Path(source.src))


def test_unlistable_source_is_a_prepare_error(tmp_path):
    """A reader that cannot list SRC (two CTR-GCN benchmark files in one folder) fails as bad arguments."""
    from lightning_skel.data.prepare import PrepareError, prepare

    for name in ("a.npz", "b.npz"):
        np.savez(tmp_path / name, x_train=np.zeros((1, 4, 150), np.float32))
    with pytest.raises(PrepareError, match="cannot list the files"):
        prepare("ctrgcn", tmp_path, tmp_path / "out.npz", progress=False)
