"""The NTU RGB+D ``.skeleton`` reader: real files, malformed files, a fuzz test, body selection, splits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lightning_skel.data.io import validate
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, ReadError
from lightning_skel.data.readers.ntu import (
    NTU60_ACTIONS,
    NTU120_ACTIONS,
    NTUReader,
    RawSkeleton,
    _checked,
    _fast,
    _number,
    _skip_number,
    parse_ntu_name,
    parse_skeleton,
    read_ntu_skeleton,
    select_bodies,
)
from tests.helpers import ntu_skeleton_text

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NTU = DATA / "ntu60_samples"
requires_data = pytest.mark.skipif(not NTU.is_dir(), reason=f"real recordings not found at {DATA}")
SAMPLES = (
    "S001C001P001R001A001",
    "S001C001P001R001A011",
    "S001C003P008R002A058",
    "S002C001P003R001A003",
    "S003C001P015R001A034",
    "S004C002P003R001A017",
)
FIRST = "S001C001P001R001A001"


def sample(name: str = FIRST) -> Path:
    return NTU / f"{name}.skeleton"


def lines_of(name: str = FIRST) -> list[bytes]:
    return sample(name).read_bytes().split(b"\r\n")


def write(tmp_path: Path, lines: list[bytes], name: str = FIRST) -> Path:
    path = tmp_path / f"{name}.skeleton"
    path.write_bytes(b"\r\n".join(lines))
    return path


# ---- real recordings -------------------------------------------------------------------------------------


@pytest.mark.data
@requires_data
@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_parses(name):
    (clip,) = NTUReader().read_file(sample(name))
    fields = parse_ntu_name(name)
    frames = int(sample(name).read_bytes().split(maxsplit=1)[0])
    assert clip.x.shape == (3, frames, 25, 2) and clip.x.dtype == np.float32
    assert np.isfinite(clip.x).all()
    assert (clip.label, clip.subject, clip.view, clip.name) == (
        fields.action - 1,
        fields.performer,
        fields.camera,
        name,
    )
    person1 = clip.x[..., 0]
    assert np.abs(person1).sum(axis=(0, 2)).min() > 0  # every frame tracks the first person
    assert 0.5 < np.median(person1[2]) < 6.0  # depth z in metres in front of the camera
    assert (np.abs(person1[:2]) < 3).all()


@pytest.mark.data
@requires_data
def test_two_person_sample_gives_two_people():
    (clip,) = NTUReader().read_file(sample("S001C003P008R002A058"))  # A058 handshaking
    a, b = clip.x[..., 0], clip.x[..., 1]
    assert np.abs(a).sum(axis=(0, 2)).min() > 0 and np.abs(b).sum(axis=(0, 2)).min() > 0
    spine_gap = np.linalg.norm(a[:, :, 0] - b[:, :, 0], axis=0)  # spine base of each person, per frame
    assert spine_gap.min() > 0.3  # two different bodies


@pytest.mark.data
@requires_data
def test_matches_official_txt2npy():
    # derived/ holds this clip after the NTU authors' txt2npy script: a pickled dict, a trusted local file.
    ref = np.load(NTU / "derived" / f"{FIRST}.skeleton.npy", allow_pickle=True).item()
    assert ref["file_name"].strip() == FIRST and set(ref["nbodys"]) == {1}
    data = read_ntu_skeleton(sample())
    assert data["x"].shape == (1, 3, len(ref["nbodys"]), 25, 2)
    ours = data["x"][0, :, :, :, 0].transpose(1, 2, 0)  # (T, 25, 3)
    np.testing.assert_allclose(ours, ref["skel_body0"], rtol=0, atol=1e-6)  # float32 rounding of metres
    raw = parse_skeleton(sample().read_bytes())
    np.testing.assert_array_equal(raw.xyz, ref["skel_body0"])  # the float64 parse is bit-identical
    assert not data["x"][0, ..., 1].any()
    assert data["layout"] == "ntu25" and data["class_names"][0] == "drink water"
    assert data["y"].tolist() == [0] and data["subject"].tolist() == [1] and data["view"].tolist() == [1]


@pytest.mark.data
@requires_data
@pytest.mark.parametrize("name", SAMPLES)
def test_fast_and_line_by_line_paths_agree(name):
    text = sample(name).read_bytes()
    fast = _fast(text)
    assert fast is not None  # the real files take the vectorised path
    slow = _checked(text, name)
    np.testing.assert_array_equal(fast.xyz, slow.xyz)
    np.testing.assert_array_equal(fast.frame, slow.frame)
    np.testing.assert_array_equal(fast.body, slow.body)
    assert fast.body_ids == slow.body_ids and fast.num_frames == slow.num_frames


@pytest.mark.data
@requires_data
def test_compiled_scan_survives_fork():
    """The scan is compiled with numba's parallel pipeline (it has no parallel loop). Loading it from the
    cache starts numba's threading layer; worker processes forked afterwards, as ``prepare --workers`` forks
    them, must still parse (an OpenMP pool used across a fork would hang them)."""
    code = (
        "import multiprocessing as mp\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from lightning_skel.data.readers.ntu import _fast\n"
        f"data = open({str(sample())!r}, 'rb').read()\n"
        "xyz = _fast(data).xyz\n"
        "with ProcessPoolExecutor(2, mp_context=mp.get_context('fork')) as pool:\n"
        "    assert all((r.xyz == xyz).all() for r in pool.map(_fast, [data] * 4))\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "ok"


@pytest.mark.data
@requires_data
def test_unusual_but_valid_spacing_reads_the_same():
    text = sample().read_bytes()
    variant = text.replace(b" ", b"\t").replace(b"\r\n", b"\n") + b"\n\n"
    assert _fast(variant) is None  # not the fast path's format ...
    np.testing.assert_array_equal(parse_skeleton(variant).xyz, parse_skeleton(text).xyz)  # ... same data


@pytest.mark.data
@requires_data
def test_reader_registry_files_and_assemble(tmp_path):
    reader = READERS.get("ntu")()
    assert isinstance(reader, NTUReader) and reader.layout == "ntu25"
    assert reader.files(NTU) == [sample(n) for n in SAMPLES]
    assert reader.files(sample()) == [sample()]
    clips = [c for n in SAMPLES for c in reader.read_file(sample(n))]
    data = reader.assemble(clips, split="xsub")
    assert data["x"].shape == (6, 3, 124, 25, 2) and len(data["class_names"]) == 60
    assert data["split"].tolist() == [
        "train",
        "train",
        "train",
        "test",
        "train",
        "test",
    ]  # P1 P1 P8 P3 P15 P3
    assert data["lengths"].tolist() == [103, 82, 70, 100, 71, 124]
    validate(data)


# ---- malformed files -------------------------------------------------------------------------------------


@pytest.mark.data
@requires_data
def test_truncated_file(tmp_path):
    path = write(tmp_path, lines_of()[:100])
    with pytest.raises(ReadError, match="truncated") as err:
        NTUReader().read_file(path)
    assert err.value.line == 101 and err.value.path == str(path)


@pytest.mark.data
@requires_data
def test_truncated_mid_line(tmp_path):
    text = sample().read_bytes()
    path = tmp_path / f"{FIRST}.skeleton"
    path.write_bytes(text[: text.index(b"\r\n", 5000) - 4])  # cut inside a joint line
    with pytest.raises(ReadError, match="joint line: expected 12 value") as err:
        NTUReader().read_file(path)
    assert err.value.line == text[:5000].count(b"\n") + 1


@pytest.mark.data
@requires_data
def test_wrong_joint_count(tmp_path):
    lines = lines_of()
    assert lines[3] == b"25"  # frames, bodies, body info, joint count
    lines[3] = b"24"
    with pytest.raises(ReadError, match="joint count is 24") as err:
        NTUReader().read_file(write(tmp_path, lines))
    assert err.value.line == 4


@pytest.mark.data
@requires_data
@pytest.mark.parametrize(
    ("field", "junk", "message"), [(4, b"abc", "not a number"), (0, b"nan", "not a finite")]
)
def test_non_numeric_field(tmp_path, field, junk, message):
    lines = lines_of()
    row = lines[9].split(b" ")
    row[field] = junk
    lines[9] = b" ".join(row)
    with pytest.raises(ReadError, match=message) as err:
        NTUReader().read_file(write(tmp_path, lines))
    assert err.value.line == 10 and junk.decode() in err.value.reason


@pytest.mark.data
@requires_data
def test_wrong_field_count_and_trailing_data(tmp_path):
    lines = lines_of()
    lines[2] = lines[2] + b" 7"  # an 11th body-info field
    with pytest.raises(ReadError, match="body info line of frame 1: expected 10") as err:
        NTUReader().read_file(write(tmp_path, lines))
    assert err.value.line == 3
    lines = lines_of()
    lines.insert(-1, b"1")
    with pytest.raises(ReadError, match="after the last of the 103 frames") as err:
        NTUReader().read_file(write(tmp_path, lines))
    assert err.value.line == len(lines) - 1


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        (b"", "empty file", 1),
        (b"  \r\n", "empty file", 1),
        (b"0\r\n", "frame count is 0", 1),
        (b"x\r\n", "frame count", 1),
    ],
)
def test_empty_and_zero_frame_files(tmp_path, text, message, line):
    path = tmp_path / f"{FIRST}.skeleton"
    path.write_bytes(text)
    with pytest.raises(ReadError, match=message) as err:
        NTUReader().read_file(path)
    assert err.value.line == line


def test_crafted_text_takes_the_fast_path():
    """The synthetic file of tests.helpers is in the exact Kinect layout: both parsers read it alike."""
    text = ntu_skeleton_text(frames=4, bodies=2)
    fast = _fast(text)
    assert fast is not None and fast.xyz.shape == (8, 25, 3)
    assert fast.body_ids == [72057594037931101, 72057594037931102]
    np.testing.assert_array_equal(fast.xyz, _checked(text, "crafted").xyz)


@pytest.mark.parametrize("frames", [10**8, 10**15])
def test_frame_count_beyond_the_file_size_is_a_read_error(tmp_path, frames):
    """A frame takes at least 2 bytes: a header claiming more frames than the file can hold is refused with
    its line, without preallocating for it (the compiled scan sized its arrays by the header: MemoryError)."""
    text = ntu_skeleton_text(frames=3)
    path = tmp_path / f"{FIRST}.skeleton"
    path.write_bytes(str(frames).encode() + text[text.index(b"\r\n") :])
    size = path.stat().st_size
    with pytest.raises(ReadError, match=f"frame count {frames} cannot fit in a file of {size} bytes") as err:
        NTUReader().read_file(path)
    assert err.value.line == 1 and err.value.path == str(path)


@pytest.mark.data
@requires_data
def test_real_file_with_an_impossible_frame_count_or_coordinate(tmp_path):
    lines = lines_of()
    lines[0] = b"100000000"
    with pytest.raises(ReadError, match="the frame count 100000000 cannot fit in a file of") as err:
        NTUReader().read_file(write(tmp_path, lines))
    assert err.value.line == 1
    lines = lines_of()
    lines[4] = b"1e39" + lines[4][lines[4].index(b" ") :]
    with pytest.raises(ReadError, match="b'1e39' is beyond float32's range") as err:
        NTUReader().read_file(write(tmp_path, lines))
    assert err.value.line == 5


def test_coordinate_beyond_float32_is_a_read_error(tmp_path):
    """1e39 is finite in float64 but infinite in the float32 clips: refused with its line."""
    lines = ntu_skeleton_text(frames=3).split(b"\r\n")
    row = lines[1 + 1 + 27 + 2 + 3].split(b" ")  # frame 2 (header, body count, a record of 27 lines), joint 4
    row[1] = b"-1e39"
    lines[1 + 1 + 27 + 2 + 3] = b" ".join(row)
    with pytest.raises(ReadError, match=r"joint line: b'-1e39' is beyond float32's range") as err:
        NTUReader().read_file(write(tmp_path, lines))
    assert err.value.line == 1 + 1 + 27 + 2 + 3 + 1


def test_file_without_any_body_is_a_read_error(tmp_path):
    path = tmp_path / f"{FIRST}.skeleton"
    path.write_bytes(b"3\r\n0\r\n0\r\n0\r\n")
    with pytest.raises(ReadError, match="no body is tracked in any of the 3 frames"):
        NTUReader().read_file(path)


def test_bad_file_name_is_a_read_error(tmp_path):
    path = tmp_path / "clip.skeleton"
    path.write_bytes(b"1\r\n0\r\n")
    with pytest.raises(ReadError, match="not an NTU sample name"):
        NTUReader().read_file(path)


# ---- fuzzing ---------------------------------------------------------------------------------------------

JUNK = (
    b"abc",
    b"nan",
    b"inf",
    b"1e999",
    b"--1",
    b"1.2.3",
    b"",
    b"-",
    b".",
    b"1e5",
    b"+3",
    b"\xe9",
    b"0x1F",
    b"9" * 30,
)


def _corrupt(text: bytes, data) -> bytes:
    lines = text.split(b"\r\n")
    kind = data.draw(st.sampled_from(["delete", "truncate", "junk", "duplicate", "blank"]))
    if kind == "delete":
        i = data.draw(st.integers(0, len(lines) - 1))
        del lines[i : i + data.draw(st.integers(1, 60))]
    elif kind == "truncate":
        return text[: data.draw(st.integers(0, len(text)))]
    elif kind == "junk":
        i = data.draw(st.integers(0, len(lines) - 1))
        toks = lines[i].split(b" ")
        toks[data.draw(st.integers(0, len(toks) - 1))] = data.draw(st.sampled_from(JUNK))
        lines[i] = b" ".join(toks)
    elif kind == "duplicate":
        i = data.draw(st.integers(0, len(lines) - 1))
        lines[i:i] = lines[i : i + data.draw(st.integers(1, 30))]
    else:
        for _ in range(data.draw(st.integers(1, 3))):
            lines.insert(data.draw(st.integers(0, len(lines))), b"")
    return b"\r\n".join(lines)


@pytest.mark.data
@requires_data
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(data=st.data())
def test_corrupted_files_give_a_clip_or_a_read_error(data):
    text = _corrupt(sample().read_bytes(), data)
    try:
        raw = parse_skeleton(text, "fuzz")
    except ReadError as e:
        error = e
    else:
        error = None
    if error is not None:
        assert error.reason and (error.line is None or error.line >= 1)
        event(f"ReadError: {error.reason.split(':')[0][:40]}")
        return
    event("parsed")
    assert raw.xyz.shape == (len(raw.frame), 25, 3) and np.isfinite(raw.xyz).all()
    if raw.body_ids:
        x = select_bodies(raw)
        assert x.shape == (3, raw.num_frames, 25, 2) and np.isfinite(x).all()


_SIMPLE = re.compile(rb"-?[0-9]*\.?[0-9]*")
_EXPONENT = re.compile(rb"-?[0-9]*\.?[0-9]*[eE][-+]?[0-9]{1,2}")


number_tokens = st.one_of(
    st.from_regex(rb"\A-?[0-9]{0,9}\.?[0-9]{0,8}\Z"),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.7g}".encode()),
    st.from_regex(rb"\A-?[0-9]{1,7}\.?[0-9]{0,7}[eE][-+]?[0-9]{1,2}\Z"),
    st.binary(min_size=1, max_size=18).map(lambda b: bytes(c if c > 32 else 0x2E for c in b)),
).filter(bool)


@settings(max_examples=200, deadline=None)
@given(number_tokens, st.sampled_from([b"", b" ", b"\r\n"]))
def test_compiled_number_reader_equals_python_float(tok, after):
    buf = np.frombuffer(tok + after, np.uint8)
    value, end = _number(buf, 0)
    assert _skip_number(buf, 0) == end  # the check without the value accepts the same tokens
    significand, _, exponent = tok.lower().partition(b"e")
    digits = sum(c in b"0123456789" for c in significand)
    if _SIMPLE.fullmatch(tok) and 1 <= digits <= 15:
        assert end == len(tok), tok  # every plain decimal of up to 15 digits is read
    if _EXPONENT.fullmatch(tok) and 1 <= digits <= 15:
        scale = len(significand.partition(b".")[2]) - int(exponent)  # value = integer / 10**scale
        assert (end == len(tok)) == (abs(scale) <= 22), tok  # exponents where the result is exact
    if end < 0:
        return
    assert end == len(tok), tok
    expected = float(tok)  # raises if the reader accepted what Python does not
    assert value == expected, tok  # bit-exact, the sign of zero included
    assert np.signbit(value) == np.signbit(expected), tok


# ---- body selection --------------------------------------------------------------------------------------


def _raw(bodies: dict[int, tuple[range, np.ndarray]], num_frames: int) -> RawSkeleton:
    """A RawSkeleton from ``{body_id: (frames, xyz (len(frames), 25, 3))}``, records in frame order."""
    recs = sorted((f, bid, xyz[i]) for bid, (frames, xyz) in bodies.items() for i, f in enumerate(frames))
    order = {}
    for _, bid, _ in recs:
        order.setdefault(bid, len(order))
    return RawSkeleton(
        num_frames=num_frames,
        frame=np.array([r[0] for r in recs]),
        body=np.array([order[r[1]] for r in recs]),
        body_ids=list(order),
        xyz=np.array([r[2] for r in recs]),
    )


def _person(n: int, rng, amplitude: float = 0.1, offset: float = 0.0) -> np.ndarray:
    """``n`` frames of an upright body (y-range 1.5 m > x-range 0.4 m) moving with ``amplitude``."""
    base = np.stack([np.linspace(-0.2, 0.2, 25) + offset, np.linspace(-0.8, 0.7, 25), np.full(25, 3.0)], 1)
    return base + amplitude * rng.standard_normal((n, 1, 3))


def test_body_selection_drops_short_and_flat_bodies_and_keeps_two():
    rng = np.random.default_rng(0)
    flat = _person(40, rng, 0.5)
    flat[..., 0] *= 10  # x-range 4 m > 0.8 * y-range: a misdetected object, despite much motion
    raw = _raw(
        {
            7: (range(5, 45), _person(40, rng, 0.05, offset=1.0)),  # appears second, moves little
            3: (range(0, 8), _person(8, rng, 2.0)),  # 8 frames: noise by length, despite much motion
            9: (range(2, 42), _person(40, rng, 0.2, offset=-1.0)),  # first long body, moves most
            5: (range(0, 40), flat),
            4: (range(10, 50), _person(40, rng, 0.01)),  # nearly still: third by motion, dropped
        },
        num_frames=50,
    )
    x = select_bodies(raw)
    assert x.shape == (3, 50, 25, 2)
    # kept: body 9 (from frame 2) then body 7 (from frame 5), ordered by first appearance
    np.testing.assert_allclose(
        x[0, 2:42, 0, 0], raw.xyz[raw.body == raw.body_ids.index(9)][:, 0, 0], atol=1e-6
    )
    np.testing.assert_allclose(
        x[0, 5:45, 0, 1], raw.xyz[raw.body == raw.body_ids.index(7)][:, 0, 0], atol=1e-6
    )
    assert not x[:, :2, :, 0].any() and not x[:, 42:, :, 0].any() and not x[:, :5, :, 1].any()


def test_body_selection_keeps_a_lone_short_body():
    rng = np.random.default_rng(1)
    raw = _raw({1: (range(3, 8), _person(5, rng))}, num_frames=10)
    x = select_bodies(raw)
    assert x[..., 0].any() and not x[..., 1].any() and not x[:, :3].any()


# ---- splits ----------------------------------------------------------------------------------------------


def clip(name: str) -> Clip:
    return Clip(x=np.zeros((3, 1, 25, 2), np.float32), label=0, name=name)


def test_splits():
    r = NTUReader()
    assert set(r.splits) >= {"xsub60", "xview60", "xsub120", "xset120", "xsub", "xview", "xset"}
    assert r.split_of(clip("S001C001P001R001A001"), "xsub60") == "train"
    assert r.split_of(clip("S001C001P003R001A001"), "xsub60") == "test"
    assert r.split_of(clip("S001C001P003R001A001"), "xsub") == "test"
    assert r.split_of(clip("S001C001P001R001A001"), "xview60") == "test"
    assert r.split_of(clip("S001C002P001R001A001"), "xview") == "train"
    assert r.split_of(clip("S001C003P001R001A001"), "xview60") == "train"
    assert r.split_of(clip("S002C001P003R001A001"), "xset120") == "train"
    assert r.split_of(clip("S001C001P001R001A001"), "xset") == "test"
    assert r.split_of(clip("S018C001P045R001A100"), "xsub120") == "train"
    assert r.split_of(clip("S018C001P044R001A100"), "xsub120") == "test"
    with pytest.raises(ValueError, match="S018C001P045R001A061"):
        r.split_of(clip("S018C001P045R001A061"), "xsub60")
    with pytest.raises(ValueError, match="no split protocol"):
        r.split_of(clip("S001C001P001R001A001"), "xsub99")
    with pytest.raises(ValueError, match="not an NTU sample name"):
        r.split_of(clip("clip_7"), "xview")


def test_reader_takes_only_the_pipeline_option():
    with pytest.raises(ValueError, match=r"only option is 'pipeline', got \['max_bodies'\]"):
        NTUReader(options={"max_bodies": 3})
    assert NTUReader().pipeline == "project" and NTUReader().settings() == {"pipeline": "project"}


def test_class_names():
    assert (
        len(NTU120_ACTIONS) == 120
        and len(set(NTU120_ACTIONS)) == 120
        and NTU120_ACTIONS[:60] == NTU60_ACTIONS
    )
    assert NTU120_ACTIONS[0] == "drink water" and NTU120_ACTIONS[1] == "eat meal/snack"
    assert NTU120_ACTIONS[57] == "handshaking" and NTU120_ACTIONS[59] == "walking apart from each other"
    assert NTU120_ACTIONS[119] == "finger-guessing game (playing rock-paper-scissors)"
