"""The NTU reader's ``pipeline`` option: the official body selections of ST-GCN, 2s-AGCN and CTR-GCN / SGN
against arrays their own scripts computed, their rules on crafted bodies, and how ``prepare`` and the data
module record a pipeline and keep caches of different pipelines apart."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from lightning_skel.data.datamodule import SkeletonDataModule
from lightning_skel.data.io import load_npz, read_prepared_by, save_npz, validate
from lightning_skel.data.prepare import PrepareError, main, preparation, prepare
from lightning_skel.data.readers.base import ReadError
from lightning_skel.data.readers.ntu import (
    NTU_PIPELINES,
    NTUReader,
    RawSkeleton,
    denoise_ctrgcn,
    parse_skeleton,
    select_bodies,
    select_bodies_agcn,
    select_bodies_stgcn,
)
from tests.helpers import ntu_skeleton_text

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
NTU = SHARED / "data" / "ntu60_samples"
OFFICIAL = SHARED / "fixtures" / "official"
requires_fixtures = pytest.mark.skipif(
    not (NTU.is_dir() and (OFFICIAL / "preprocess_ctrgcn.pt").is_file()),
    reason=f"official preprocessing fixtures or NTU samples not found under {SHARED}",
)
TWO_BODIES = 2  # S001C003P008R002A058 in the sorted sample list


def official(name: str) -> dict:
    import torch

    return torch.load(OFFICIAL / f"preprocess_{name}.pt")


def clips(pipeline: str) -> list[np.ndarray]:
    """Our ``(3, T, 25, 2)`` clip of each sample file, in the fixtures' (sorted) order."""
    reader = NTUReader(options={"pipeline": pipeline})
    return [reader.read_file(path)[0].x for path in reader.files(NTU)]


def as_rows(x: np.ndarray) -> np.ndarray:
    """``(3, T, 25, 2)`` as the CTR-GCN scripts' ``(T, 150)`` rows: person, joint, axis."""
    return x.transpose(1, 3, 2, 0).reshape(x.shape[1], -1)


# ---- the official arrays of the six sample files ---------------------------------------------------------


@pytest.mark.data
@requires_fixtures
@pytest.mark.parametrize("pipeline", ["stgcn", "agcn"])
def test_reproduces_the_zero_padded_official_arrays(pipeline):
    ref = official(pipeline)
    assert [p.name for p in NTUReader().files(NTU)] == ref["files"]
    ref = ref["raw"].numpy()  # (6, 3, 300, 25, 2)
    ours = clips(pipeline)
    assert [x.shape[1] for x in ours] == [103, 82, 70, 100, 71, 124]
    for x, r in zip(ours, ref, strict=True):
        t = x.shape[1]
        np.testing.assert_array_equal(x, r[:, :t])  # bit for bit
        assert not r[:, t:].any()  # the rest is the official zero padding


@pytest.mark.data
@requires_fixtures
def test_stgcn_keeps_the_listed_order_and_agcn_ranks_by_energy():
    """The two-body file lists the less energetic body first: ST-GCN keeps it as person 1, 2s-AGCN swaps."""
    stgcn, agcn = clips("stgcn")[TWO_BODIES], clips("agcn")[TWO_BODIES]
    assert stgcn[..., 0].any() and stgcn[..., 1].any()
    assert not np.array_equal(stgcn, agcn)
    np.testing.assert_array_equal(stgcn[..., ::-1], agcn)


@pytest.mark.data
@requires_fixtures
@pytest.mark.parametrize("pipeline", ["ctrgcn", "sgn"])
def test_reproduces_the_official_denoised_joints(pipeline):
    ref = official("ctrgcn")["denoised"]  # list of (T, 75 | 150): person-major joints x xyz
    ours = clips(pipeline)
    assert [r.shape[1] for r in ref] == [75, 75, 150, 75, 75, 75]
    for x, r in zip(ours, ref, strict=True):
        rows, r = as_rows(x), r.numpy()
        np.testing.assert_array_equal(rows[:, : r.shape[1]], r)  # shapes and values
        assert not rows[:, r.shape[1] :].any()  # a one-actor file's person 2 is zeros
    agcn = clips("agcn")[TWO_BODIES]
    np.testing.assert_array_equal(ours[TWO_BODIES], agcn)  # actor 1 = the larger motion, as agcn's energy


@pytest.mark.data
@requires_fixtures
def test_prepare_cli_with_workers_reproduces_the_fixture(tmp_path, capsys):
    out = tmp_path / "ntu.npz"
    argv = ["ntu", str(NTU), str(out), "--pipeline", "ctrgcn", "--split", "xsub", "--no-progress"]
    assert main([*argv, "--workers", "2"]) == 0
    data = load_npz(out)
    assert json.loads(data["prepared_by"]) == {
        "format": "ntu",
        "options": {"pipeline": "ctrgcn"},
        "split": "xsub",
    }
    ref = official("ctrgcn")["denoised"]
    assert data["lengths"].tolist() == [len(r) for r in ref]
    for x, t, r in zip(data["x"], data["lengths"], ref, strict=True):
        np.testing.assert_array_equal(as_rows(x[:, :t])[:, : r.shape[1]], r.numpy())


# ---- the rules on crafted bodies -------------------------------------------------------------------------


def upright(n: int, rng, amplitude: float = 0.05, offset: float = 0.0) -> np.ndarray:
    """``n`` frames ``(n, 25, 3)`` of an upright body (x-range 0.4 m, y-range 1.5 m) moving with
    ``amplitude``."""
    base = np.stack([np.linspace(-0.2, 0.2, 25) + offset, np.linspace(-0.8, 0.7, 25), np.full(25, 3.0)], 1)
    return base + amplitude * rng.standard_normal((n, 1, 3))


def raw_of(frames: list[list[tuple[int, np.ndarray]]]) -> RawSkeleton:
    """A RawSkeleton from the bodies listed in each frame: ``(body ID, xyz (25, 3))`` in listed order."""
    recs = [(f, bid, xyz) for f, bodies in enumerate(frames) for bid, xyz in bodies]
    ids: dict[int, int] = {}
    for _, bid, _ in recs:
        ids.setdefault(bid, len(ids))
    return RawSkeleton(
        num_frames=len(frames),
        frame=np.array([r[0] for r in recs], dtype=np.int64),
        body=np.array([ids[r[1]] for r in recs], dtype=np.int64),
        body_ids=list(ids),
        xyz=np.array([r[2] for r in recs]).reshape(len(recs), 25, 3),
    )


def tracks(num_frames: int, **bodies: tuple[range, np.ndarray]) -> list[list[tuple[int, np.ndarray]]]:
    """Frames listing body ``k`` (an ID ``int(k[1:])``) over its range, in keyword order."""
    frames: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(num_frames)]
    for key, (span, xyz) in bodies.items():
        for i, f in enumerate(span):
            frames[f].append((int(key[1:]), xyz[i]))
    return frames


def channels(xyz: np.ndarray) -> np.ndarray:
    """``(T, 25, 3)`` frames as a person of a clip, ``(3, T, 25)`` float32."""
    return xyz.transpose(2, 0, 1).astype(np.float32)


def test_stgcn_takes_the_first_two_listed_and_agcn_the_two_slots_of_most_energy():
    rng = np.random.default_rng(0)
    still, mid, lively = upright(6, rng, 0.0), upright(6, rng, 0.3), upright(6, rng, 1.0)
    # frames 0-2 list still, lively, mid; frames 3-5 list mid, still, lively
    frames = [[(1, still[t]), (3, lively[t]), (2, mid[t])] for t in range(3)]
    frames += [[(2, mid[t]), (1, still[t]), (3, lively[t])] for t in range(3, 6)]
    raw = raw_of(frames)
    x = select_bodies_stgcn(raw)
    assert x.shape == (3, 6, 25, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], channels(np.concatenate([still[:3], mid[3:]])))
    np.testing.assert_array_equal(x[..., 1], channels(np.concatenate([lively[:3], still[3:]])))
    # 2s-AGCN ranks the slots (the m-th listed body of each frame), not the bodies
    slots = [
        np.concatenate(p) for p in ((still[:3], mid[3:]), (lively[:3], still[3:]), (mid[:3], lively[3:]))
    ]
    energy = [sum(s[..., c].std() for c in range(3)) for s in slots]  # no zero frames here
    assert energy[2] > energy[1] > energy[0]
    x = select_bodies_agcn(raw)
    np.testing.assert_array_equal(x[..., 0], channels(slots[2]))
    np.testing.assert_array_equal(x[..., 1], channels(slots[1]))


def test_agcn_energy_leaves_out_the_frames_a_slot_is_empty():
    """Each frame lists a compact body, an upright one and, in 2 of 40 frames, a far point-like one. Over
    its own frames the point has the least spread; counted with the 38 empty frames, the most."""
    rng = np.random.default_rng(1)
    compact = np.full((40, 25, 3), [0.0, 0.0, 3.0]) + 0.1 * rng.standard_normal((40, 25, 3))
    body = upright(40, rng, 0.05)
    point = np.full((2, 25, 3), [2.0, 0.0, 3.0]) + 0.01 * rng.standard_normal((2, 25, 3))
    frames = [
        [(1, compact[t]), (2, body[t])] + ([(3, point[t - 19])] if t in (19, 20) else []) for t in range(40)
    ]
    with_zeros = np.zeros((40, 25, 3))
    with_zeros[19:21] = point

    def spread(s):
        return sum(s[..., c].std() for c in range(3))

    assert spread(body) > spread(compact) > spread(point)
    assert spread(with_zeros) > spread(body)
    x = select_bodies_agcn(raw_of(frames))
    np.testing.assert_array_equal(x[..., 0], channels(body))
    np.testing.assert_array_equal(x[..., 1], channels(compact))


def test_ctrgcn_drops_empty_frames_and_numbers_a_body_s_frames_consecutively():
    rng = np.random.default_rng(2)
    a, b = upright(20, rng, 0.3), upright(12, rng, 0.02, 1.0)
    span_b = [*range(0, 6), *range(10, 16)]  # 12 frames with a gap: kept by length (> 11)
    frames = tracks(22, b1=(range(20), a), b2=(span_b, b))
    frames.insert(7, [])  # a frame that lists no body
    frames.insert(0, [])
    raw = raw_of(frames)
    assert raw.num_frames == 24
    x = denoise_ctrgcn(raw)
    assert x.shape == (3, 20, 25, 2)  # the four frames that list no body are gone ...
    np.testing.assert_array_equal(x[..., 0], channels(a))
    # ... and body 2's 12 records fill frames 0-11 in order, across its gap (the scripts' ``interval``)
    np.testing.assert_array_equal(x[:, :12, :, 1], channels(b))
    assert not x[:, 12:, :, 1].any()
    project = select_bodies(raw)  # the project's selection keeps every frame and the true timing
    assert project.shape == (3, 24, 25, 2)
    one = raw_of([[(1, a[0])], [(1, a[1])], [], [(1, a[2])], [(1, a[3])], [(1, a[4])]])
    assert one.num_frames == 6
    x = denoise_ctrgcn(one)  # one body: only the frames that list nobody go
    np.testing.assert_array_equal(x[..., 0], channels(a[:5]))
    assert x.shape == (3, 5, 25, 2) and not x[..., 1].any()


def test_ctrgcn_denoising_by_length_spread_and_actor_assignment():
    rng = np.random.default_rng(3)
    a = upright(15, rng, 0.4)  # the largest motion: actor 1
    c = upright(15, rng, 0.2, 0.5)  # after actor 1 without overlap: joins actor 1
    flat = upright(30, rng, 0.3, -1.0)
    flat[..., 0] *= 8  # every frame's x-range > 0.8 * y-range: noise by spread
    short = upright(11, rng, 0.6)  # 11 frames: noise by length, despite the most motion
    f = upright(30, rng, 0.1, 1.5)  # overlaps actor 1: actor 2
    flat = np.concatenate([flat, flat[:2]])  # also in 2 frames after the others: those end empty and go
    frames = tracks(32, b4=(range(32), flat), b1=(range(15), a), b7=(range(3, 14), short), b9=(range(30), f))
    for t, xyz in enumerate(c):
        frames[15 + t].append((5, xyz))
    x = denoise_ctrgcn(raw_of(frames))
    assert x.shape == (3, 30, 25, 2)
    np.testing.assert_array_equal(x[..., 0], channels(np.concatenate([a, c])))
    np.testing.assert_array_equal(x[..., 1], channels(f))


def test_ctrgcn_spread_keeps_the_last_body_and_lowers_motion_by_noisy_frames():
    rng = np.random.default_rng(4)
    noisy_mover = upright(30, rng, 0.05)
    noisy_mover[:10, :, 0] *= 8  # a third of its frames fail the spread test: kept, motion of the rest
    calm = upright(30, rng, 0.3, 1.0)  # moves less than the mover overall, more than its clean frames
    x = denoise_ctrgcn(raw_of(tracks(30, b1=(range(30), noisy_mover), b2=(range(30), calm))))
    np.testing.assert_array_equal(x[..., 0], channels(calm))  # actor 1 now
    np.testing.assert_array_equal(x[..., 1], channels(noisy_mover))
    flat_a, flat_b = upright(20, rng, 0.3), upright(20, rng, 0.2, 1.0)
    flat_a[..., 0] *= 8
    flat_b[..., 0] *= 8
    x = denoise_ctrgcn(raw_of(tracks(20, b1=(range(20), flat_a), b2=(range(20), flat_b))))
    np.testing.assert_array_equal(x[..., 0], channels(flat_b))  # the last left
    assert not x[..., 1].any()


def test_ctrgcn_failures_of_the_official_scripts_are_read_errors(tmp_path):
    rng = np.random.default_rng(5)
    short = raw_of(tracks(20, b1=(range(11), upright(11, rng)), b2=(range(9, 20), upright(11, rng, 0.1, 1))))
    with pytest.raises(ReadError, match="each of the 2 bodies is tracked in at most 11 frames"):
        denoise_ctrgcn(short)
    assert select_bodies(short).any()  # the other pipelines keep them
    path = tmp_path / "S001C001P001R001A050.skeleton"
    path.write_bytes(ntu_skeleton_text(frames=8, bodies=2))
    with pytest.raises(ReadError, match="tracked in at most 11 frames") as err:
        NTUReader(options={"pipeline": "sgn"}).read_file(path)
    assert err.value.path == str(path)
    assert NTUReader(options={"pipeline": "stgcn"}).read_file(path)[0].x.shape == (3, 8, 25, 2)


def test_every_pipeline_gives_two_finite_persons_and_sgn_is_ctrgcn():
    raw = parse_skeleton(ntu_skeleton_text(frames=14, bodies=2, seed=3))
    outs = {name: fn(raw) for name, fn in NTU_PIPELINES.items()}
    assert set(outs) == {"project", "stgcn", "agcn", "ctrgcn", "sgn"}
    for name, x in outs.items():
        assert x.shape == (3, 14, 25, 2) and x.dtype == np.float32 and np.isfinite(x).all(), name
    np.testing.assert_array_equal(outs["sgn"], outs["ctrgcn"])


# ---- the option, the record and the cache ----------------------------------------------------------------


def test_unknown_pipeline_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(
        ValueError, match="unknown ntu pipeline 'msg3d'; known: project, stgcn, agcn, ctrgcn, sgn"
    ):
        NTUReader(options={"pipeline": "msg3d"})
    with pytest.raises(PrepareError, match="unknown ntu pipeline 'msg3d'"):
        preparation("ntu", {"pipeline": "msg3d"})
    src = tmp_path / "ntu"
    src.mkdir()
    (src / "S001C001P001R001A001.skeleton").write_bytes(ntu_skeleton_text(frames=3))
    assert main(["ntu", str(src), str(tmp_path / "o.npz"), "--pipeline", "msg3d", "--no-progress"]) == 2
    assert "known: project, stgcn, agcn, ctrgcn, sgn" in capsys.readouterr().err
    argv = ["ntu", str(src), str(tmp_path / "o.npz"), "--pipeline", "agcn", "-o", "pipeline=stgcn"]
    assert main(argv) == 2
    assert "--pipeline agcn and -o pipeline=stgcn disagree" in capsys.readouterr().err
    assert main(["ctrgcn", str(src), str(tmp_path / "o.npz"), "--pipeline", "agcn"]) == 2
    assert "the ctrgcn reader takes no options" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def skeleton_text(frames: list[list[tuple[int, np.ndarray]]]) -> bytes:
    """A ``.skeleton`` file in the exact Kinect layout listing, per frame, ``(body ID, xyz (25, 3))``."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for bid, xyz in bodies:
            lines += [f"{bid} 0 1 1 1 1 0 0.1 -0.2 2", "25"]
            lines += [
                f"{x:.6f} {y:.6f} {z:.6f} 250.5 200.25 900.1 500.2 0.1 0.2 0.3 0.9 2" for x, y, z in xyz
            ]
    return ("\r\n".join(lines) + "\r\n").encode()


NAMES = ("S001C001P001R001A001", "S001C001P001R001A050", "S001C001P001R001A003")


@pytest.fixture
def ntu_dir(tmp_path) -> Path:
    """Six crafted files, P1 trains and P3 tests under xsub. The A050 files list a calm body, then a lively
    one: ST-GCN keeps that order, the other pipelines put the lively one first."""
    src = tmp_path / "ntu"
    src.mkdir()
    rng = np.random.default_rng(6)
    for i, name in enumerate(NAMES + tuple(n.replace("P001", "P003") for n in NAMES)):
        n = 14 + i
        bodies = {"b72057594037931101": (range(n), upright(n, rng, 0.02))}
        if "A050" in name:
            bodies["b72057594037931102"] = (range(n), upright(n, rng, 0.3, 1.0))
        (src / f"{name}.skeleton").write_bytes(skeleton_text(tracks(n, **bodies)))
    return src


@pytest.mark.parametrize("pipeline", ["project", "agcn", "ctrgcn"])
def test_prepare_records_the_pipeline_and_workers_do_not_change_the_output(ntu_dir, tmp_path, pipeline):
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"{workers}.npz"
        argv = [
            "ntu",
            str(ntu_dir),
            str(out),
            "--pipeline",
            pipeline,
            "--workers",
            str(workers),
            "--no-progress",
        ]
        assert main(argv) == 0
        outs.append(load_npz(out))
    assert read_prepared_by(tmp_path / "2.npz") == {
        "format": "ntu",
        "options": {"pipeline": pipeline},
        "split": None,
    }
    for key in ("x", "lengths", "y", "sample_name"):
        np.testing.assert_array_equal(outs[0][key], outs[1][key])
    assert outs[0]["prepared_by"] == outs[1]["prepared_by"]
    default = prepare("ntu", ntu_dir, tmp_path / "d.npz", progress=False, limit=2)
    assert read_prepared_by(default.out) == {
        "format": "ntu",
        "options": {"pipeline": "project"},  # the default is recorded by name
        "split": None,
        "limit": 2,
    }


def test_prepared_by_must_be_a_json_object(tmp_path):
    data = {"x": np.zeros((1, 3, 2, 25, 1), np.float32), "y": np.array([0]), "lengths": np.array([2]),
            "layout": "ntu25", "class_names": ["a"]}  # fmt: skip
    with pytest.raises(ValueError, match="prepared_by must be a string holding a JSON object"):
        validate({**data, "prepared_by": "pipeline=agcn"})
    with pytest.raises(ValueError, match="prepared_by must be a string holding a JSON object"):
        validate({**data, "prepared_by": "[1, 2]"})
    path = save_npz(tmp_path / "d.npz", {**data, "prepared_by": '{"format": "ntu"}'})
    assert load_npz(path)["prepared_by"] == '{"format": "ntu"}'
    assert read_prepared_by(path) == {"format": "ntu"}
    assert read_prepared_by(save_npz(tmp_path / "e.npz", data)) is None


def datamodule(src: Path, cache: Path, pipeline: str | None) -> SkeletonDataModule:
    source = {"format": "ntu", "src": str(src), "split": "xsub60"}
    if pipeline is not None:
        source["options"] = {"pipeline": pipeline}
    return SkeletonDataModule(name="ntu", source=source, cache_dir=str(cache), val_fraction=0.0)


def test_each_pipeline_has_its_own_cache_and_a_stale_one_is_converted_again(ntu_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    stgcn = datamodule(ntu_dir, cache, "stgcn")
    assert stgcn.cache_file == cache / "ntu-xsub60-pipeline=stgcn.npz"
    stgcn.setup()
    assert read_prepared_by(stgcn.cache_file) == {
        "format": "ntu",
        "options": {"pipeline": "stgcn"},
        "split": "xsub60",
    }
    default = datamodule(ntu_dir, cache, None)
    assert default.cache_file == datamodule(ntu_dir, cache, "project").cache_file != stgcn.cache_file
    default.setup()
    two = default.datasets["train"].data["sample_name"].tolist().index("S001C001P001R001A050")
    x_stgcn, x_default = (dm.datasets["train"].data["x"][two] for dm in (stgcn, default))
    assert not np.array_equal(x_stgcn, x_default)

    # a cache at stgcn's path that another pipeline made (or an older version, recording nothing)
    data = load_npz(default.cache_file)
    for record in ('{"format": "ntu", "options": {"pipeline": "agcn"}, "split": "xsub60"}', None):
        stale = {k: v for k, v in data.items() if k != "prepared_by"}
        if record is not None:
            stale["prepared_by"] = record
        save_npz(stgcn.cache_file, stale)
        again = datamodule(ntu_dir, cache, "stgcn")
        with caplog.at_level(logging.WARNING, logger="lightning_skel.data.datamodule"):
            again.setup()
        assert "not {'format': 'ntu', 'options': {'pipeline': 'stgcn'}" in caplog.text
        assert ("'pipeline': 'agcn'" if record else "a version that recorded nothing") in caplog.text
        caplog.clear()
        assert read_prepared_by(stgcn.cache_file)["options"] == {"pipeline": "stgcn"}
        np.testing.assert_array_equal(again.datasets["train"].data["x"][two], x_stgcn)


def test_a_stale_cache_is_never_loaded(ntu_dir, tmp_path, monkeypatch):
    """Where nothing converts it again (``prepare_data`` runs on rank 0 only), loading it is an error."""
    cache = tmp_path / "cache"
    dm = datamodule(ntu_dir, cache, "agcn")
    data = load_npz(prepare("ntu", ntu_dir, tmp_path / "p.npz", split="xsub60", progress=False).out)
    cache.mkdir()
    save_npz(dm.cache_file, data)  # made with the project pipeline
    monkeypatch.setattr(SkeletonDataModule, "prepare_data", lambda self: None)
    with pytest.raises(
        ValueError, match=r"pipeline=agcn.npz: prepared by .*'project'.*; delete it to convert"
    ):
        dm.setup()
