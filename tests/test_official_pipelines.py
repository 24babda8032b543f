"""The official 2s-AGCN / MS-G3D and CTR-GCN input pipelines and 2s-AGCN's bone stream: they reproduce the
official preprocessing fixtures, follow the official rules where the fixtures do not reach (absent persons,
empty frames, degenerate rotations), have finite gradients that vanish where the official output does not
read the input, and refuse what they are not defined on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lightning_skel.data.pipelines import build_pipeline
from lightning_skel.data.pipelines.agcn import (
    align_rotation,
    center_on_main_body,
    pre_normalization,
    repeat_into_padding,
)
from lightning_skel.data.pipelines.ctrgcn import seq_translation, valid_crop_resize
from lightning_skel.models import Classifier
from lightning_skel.skeleton.features import to_modality
from tests.helpers import CONFIGS

OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official"
requires_official = pytest.mark.skipif(
    not OFFICIAL.is_dir(), reason=f"official-code fixtures not found at {OFFICIAL}"
)
EPS32 = torch.finfo(torch.float32).eps


def _fixture(name: str) -> dict:
    return torch.load(OFFICIAL / f"preprocess_{name}.pt", weights_only=True)


def _ctrgcn_clips(rows: torch.Tensor) -> torch.Tensor:
    """``(N, T, 150)`` person-major rows -> ``(N, 3, T, 25, 2)``, as the ctrgcn reader and feeder reshape."""
    n, t, _ = rows.shape
    return rows.reshape(n, t, 2, 25, 3).permute(0, 4, 1, 3, 2)


def _clips(n: int = 3, t: int = 40, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Random clips with padding and absent persons: clip 0 has two persons, 30 and 22 frames; clip 1 one
    person of 40 frames; clip 2 one person whose first 5 frames are empty, 25 frames in all."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, t, 25, 2, generator=g, dtype=dtype)
    x[0, :, 30:, :, 0] = 0
    x[0, :, 22:, :, 1] = 0
    x[1, ..., 1] = 0
    x[2, ..., 1] = 0
    x[2, :, :5, :, 0] = 0
    x[2, :, 25:, :, 0] = 0
    return x


def _grad(fn, x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """The gradient of a random linear function of ``fn(x)`` with respect to ``x``."""
    x = x.clone().requires_grad_(True)
    out = fn(x)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (g,) = torch.autograd.grad((out * w).sum(), x)
    return g


# ---- agcn: pre_normalization ------------------------------------------------------------------------


def _sin_of_alignments(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sines of the two alignment angles of each clip (float64)."""
    y = center_on_main_body(repeat_into_padding(raw.double()))[:, :, 0, :, 0]
    vz = y[:, :, 1] - y[:, :, 0]
    turned = torch.einsum("nij,njv->niv", align_rotation(vz, 2), y[:, :, [8, 4]])
    vx = turned[:, :, 0] - turned[:, :, 1]
    return vz[:, :2].norm(dim=1) / vz.norm(dim=1), vx[:, 1:].norm(dim=1) / vx.norm(dim=1)


@requires_official
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_agcn_pipeline_reproduces_pre_normalization(dtype):
    """``preprocess_agcn.pt['normalized']`` from ``['raw']``. The official code centres in float32 (exact
    here too) and rotates in float64 from float32 data, rounding to float32 after each of the two
    rotations (each moves a joint, of norm at most J = sqrt(3) max|x|, by half an ulp: eps J / 2), with
    each angle taken from a float32 unit vector (cos off by about eps, the angle by eps / sin, a joint by
    eps J / sin). So a float64 run is within eps J (1 + 1 / sin_z + 1 / sin_x) of it; a float32 run is the
    same computation in float32 and carries the same error once more (twice the bound)."""
    fx = _fixture("agcn")
    raw, want = fx["raw"], fx["normalized"]
    out = build_pipeline("agcn", "ntu25")(raw.to(dtype))
    assert out.dtype == dtype and out.shape == want.shape
    assert torch.equal(out == 0, want == 0)  # the zeros are the official zeros: absent persons, none padded
    sin_z, sin_x = _sin_of_alignments(raw)
    bound = EPS32 * 3**0.5 * want.abs().amax((1, 2, 3, 4)) * (1 + 1 / sin_z + 1 / sin_x)
    bound = bound * (2 if dtype == torch.float32 else 1)
    err = (out.double() - want.double()).abs().amax((1, 2, 3, 4))
    assert (err <= bound).all(), (err / bound).tolist()
    # every real person fills the 300 frames; person 1 of the one-body clips stays absent
    filled = (want.sum((1, 3)) != 0).all(1)
    assert filled[:, 0].all() and filled[:, 1].tolist() == [False, False, True, False, False, False]


def test_repeat_into_padding_follows_the_official_rules_per_person():
    """Frame 0 non-empty: empty frames before the last non-empty one stay and repeat with the rest (period =
    last + 1). Frame 0 empty: the non-empty frames move to the front in order first (period = their count).
    Each person has its own period; an absent person stays zero; a full person is unchanged."""
    t = 10
    x = torch.zeros(2, 3, t, 25, 2, dtype=torch.float64)
    frames = torch.arange(1, t + 1, dtype=torch.float64).view(t, 1)  # frame f holds f + 1 (person 0)
    x[0, :, :6, :, 0] = frames[:6]
    x[0, :, 2, :, 0] = 0  # an empty frame inside person 0
    x[0, :, [2, 3, 5], :, 1] = -frames[[2, 3, 5]]  # person 1: frames 0, 1 and 4 empty
    x[1, :, :, :, 0] = frames  # a full person; person 1 of clip 1 absent
    out = repeat_into_padding(x)
    want0 = [(f % 6 + 1) * (f % 6 != 2) for f in range(t)]
    want1 = [-[3, 4, 6][f % 3] for f in range(t)]
    assert out[0, 0, :, 0, 0].tolist() == want0 and out[0, 0, :, 0, 1].tolist() == want1
    assert torch.equal(out[1], x[1])
    assert (out[0, :, :, :, 0] == out[0, :1, :, :1, 0]).all()  # whole frames move


def test_center_on_main_body_keeps_zero_joints_and_uses_person_0_per_frame():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 4, 25, 2, dtype=torch.float64, generator=g)
    x[0, :, 1, 1, 0] = 0  # person 0 lacks its centre joint in frame 1: nothing is subtracted there
    x[0, :, 2, 7, 1] = torch.tensor([0.25, -0.25, 0.0], dtype=torch.float64)  # coordinates summing to zero
    x[0, :, 3, :, 1] = 0
    out = center_on_main_body(x)[0]
    x = x[0]
    for f in (0, 2):
        torch.testing.assert_close(out[:, f, :, 0], x[:, f, :, 0] - x[:, f, 1:2, 0], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 0, :, 1], x[:, 0, :, 1] - x[:, 0, 1:2, 0], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 1], x[:, 1], rtol=0, atol=0)
    assert (out[:, 2, 7, 1] == 0).all() and (out[:, 3, :, 1] == 0).all() and (out[:, :, 1, 0] == 0).all()
    others = [j for j in range(25) if j != 7]
    torch.testing.assert_close(out[:, 2, others, 1], x[:, 2, others, 1] - x[:, 2, 1:2, 0], rtol=0, atol=0)


def test_agcn_without_person_0_repeats_person_1_unturned_and_uncentred():
    """The centre and the two alignments are person 0's: without it nothing is subtracted and both rotations
    are the identity; person 1 is still repeated into its padding and keeps its zero joints."""
    x = torch.zeros(1, 3, 9, 25, 2, dtype=torch.float64)
    x[0, :, 1:4, :, 1] = torch.randn(3, 3, 25, dtype=torch.float64)
    x[0, :, 2, 5, 1] = 0
    want = x[:, :, [1, 2, 3] * 3]
    torch.testing.assert_close(pre_normalization(x), want, rtol=0, atol=0)


def _rodrigues(v: torch.Tensor, axis: int) -> torch.Tensor:
    """The axis-angle rotation of ``cross(v, e)`` by ``angle(v, e)`` (float64, non-degenerate ``v``)."""
    e = torch.zeros(3, dtype=v.dtype)
    e[axis] = 1
    k = torch.linalg.cross(v, e.expand_as(v), dim=-1)
    k = k / k.norm(dim=-1, keepdim=True)
    theta = torch.arccos((v[:, axis] / v.norm(dim=-1)).clamp(-1, 1))
    kx = torch.zeros(len(v), 3, 3, dtype=v.dtype)
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx = kx - kx.transpose(1, 2)
    s, c = theta.sin()[:, None, None], theta.cos()[:, None, None]
    return torch.eye(3, dtype=v.dtype) + s * kx + (1 - c) * kx @ kx


@pytest.mark.parametrize("axis", [2, 0])
def test_align_rotation_is_the_axis_angle_rotation_and_the_identity_where_degenerate(axis):
    g = torch.Generator().manual_seed(3)
    v = torch.randn(64, 3, generator=g, dtype=torch.float64)
    v[:32, axis] = -v[:32, axis].abs()  # half of them more than 90 degrees away: the c < 0 branch
    rot = align_rotation(v, axis)
    e = torch.zeros(3, dtype=torch.float64)
    e[axis] = 1
    torch.testing.assert_close(rot @ (v / v.norm(dim=1, keepdim=True))[..., None], e.expand(64, 3)[..., None])
    torch.testing.assert_close(rot, _rodrigues(v, axis), rtol=0, atol=1e-14)
    # rotation.py's identities: a (near) zero vector, a vector along +-e, an angle below 1e-6, and in
    # float32 any angle whose cosine rounds to 1 (about 3e-4 rad here)
    tiny = torch.zeros(3, dtype=torch.float64)
    tiny[(axis + 1) % 3] = 3e-7
    near = e.clone()
    near[(axis + 1) % 3] = 1e-7
    degenerate = torch.stack(
        [torch.zeros(3, dtype=torch.float64), tiny, -e, 2 * e, 0.5 * e + tiny / 10, near]
    )
    rot = align_rotation(degenerate, axis)
    assert torch.equal(rot, torch.eye(3, dtype=torch.float64).expand(6, 3, 3))
    band = e.float() + 2e-4 * torch.eye(3)[(axis + 1) % 3]
    assert torch.equal(align_rotation(band[None], axis), torch.eye(3)[None])  # float32 cos(2e-4) == 1
    assert not torch.equal(align_rotation(band[None].double(), axis), torch.eye(3, dtype=torch.float64)[None])
    # finite gradients everywhere, the degenerate rows (identity, constant) with zero gradient
    both = torch.cat([degenerate, v[:4]])
    g = _grad(lambda u: align_rotation(u, axis), both)
    assert torch.isfinite(g).all() and (g[:6] == 0).all() and (g[6:] != 0).any(1).all()


def test_agcn_gradient_is_finite_and_zero_exactly_where_the_input_is_zero():
    """Padding frames (after the last non-empty one), empty frames moved out of the way, absent persons and
    missing joints are not read (their output is repeated real frames or zero); every non-zero joint is."""
    x = _clips()
    x[1, :, 7, 3, 0] = 0  # a missing joint
    g = _grad(pre_normalization, x)
    assert torch.isfinite(g).all()
    zero = (x.sum(1, keepdim=True) == 0).expand_as(x)
    assert (g[zero] == 0).all() and (g[~zero] != 0).all()
    out = pre_normalization(x)
    assert (out[2, :, :, :, 0].sum((0, 2)) != 0).all()  # clip 2: 20 frames moved to the front, repeated


def test_agcn_degenerate_first_frames_give_the_identity_with_finite_gradients():
    """Person 0's spine (joint 1 - joint 0) in frame 0 zero, along -z (rotation.py's identity, not a half
    turn) or along +z: only the shoulder alignment turns the clip; the shoulders (joint 8 - joint 4) zero:
    only the spine alignment does."""
    x = _clips(n=4)
    for i, spine in enumerate([[0.0, 0.0, 0.0], [0.0, 0.0, -0.3], [0.0, 0.0, 0.3]]):
        x[i, :, 0, 0, 0] = x[i, :, 0, 1, 0] - torch.tensor(spine, dtype=x.dtype)
    x[3, :, 0, 8, 0] = x[3, :, 0, 4, 0]
    out = pre_normalization(x)
    y = center_on_main_body(repeat_into_padding(x))
    first = y[:, :, 0, :, 0]
    rot = align_rotation(first[:, :, 8] - first[:, :, 4], 0)
    rot[3] = align_rotation(first[3:, :, 1] - first[3:, :, 0], 2)[0]
    torch.testing.assert_close(out, torch.einsum("nij,njtvm->nitvm", rot, y), rtol=0, atol=1e-15)
    g = _grad(pre_normalization, x)
    assert torch.isfinite(g).all()


@requires_official
def test_agcn_gradient_is_finite_on_real_clips():
    raw = _fixture("agcn")["raw"][:3]
    g = _grad(pre_normalization, raw)
    assert torch.isfinite(g).all() and (g[raw.sum(1, keepdim=True).expand_as(raw) == 0] == 0).all()


# ---- agcn: the bone stream -------------------------------------------------------------------------


@requires_official
def test_bone_agcn_reproduces_gen_bone_data_exactly():
    fx = _fixture("agcn")
    bone = to_modality(fx["normalized"], "ntu25", "bone_agcn")
    assert torch.equal(bone, fx["bone"])
    assert (bone[:, :, :, 20] == 0).all()  # the pair (21, 21): the spine shoulder, the root


@requires_official
def test_classifier_feeds_the_bone_stream_of_the_pre_normalised_clips():
    """Pipeline then modality: each bone a difference of two joints, each within the float64 bound of
    :func:`test_agcn_pipeline_reproduces_pre_normalization`."""
    fx = _fixture("agcn")
    clf = Classifier(torch.nn.Identity(), "ntu25", normalize="none", modality="bone_agcn", pipeline="agcn")
    got = clf.preprocess(fx["raw"].double())
    sin_z, sin_x = _sin_of_alignments(fx["raw"])
    joint = EPS32 * 3**0.5 * fx["normalized"].abs().amax((1, 2, 3, 4)) * (1 + 1 / sin_z + 1 / sin_x)
    assert ((got - fx["bone"].double()).abs().amax((1, 2, 3, 4)) <= 2 * joint).all()


def test_bone_agcn_is_the_official_pairs_and_only_for_ntu25():
    x = torch.randn(2, 3, 4, 25, 2, dtype=torch.float64)
    bone = to_modality(x, "ntu25", "bone_agcn")
    # 1-based (joint, joint it is taken from) of gen_bone_data.py, a few of them: the spine chain runs from
    # the spine base up to the spine shoulder (21), the hand tips hang from the thumbs
    for v1, v2 in [(1, 2), (2, 21), (13, 1), (22, 23), (23, 8), (24, 25), (25, 12), (4, 3)]:
        torch.testing.assert_close(
            bone[:, :, :, v1 - 1], x[:, :, :, v1 - 1] - x[:, :, :, v2 - 1], rtol=0, atol=0
        )
    assert (bone[:, :, :, 20] == 0).all()
    ours = to_modality(x, "ntu25", "bone")  # the layout's tree differs: root spine base, tips on the hands
    assert (ours[:, :, :, 0] == 0).all() and not torch.equal(ours, bone)
    with pytest.raises(ValueError, match="'bone_agcn'.*'ntu25'"):
        to_modality(torch.randn(1, 3, 4, 20, 1), "kinect20", "bone_agcn")
    with pytest.raises(ValueError, match="'bone_agcn'.*'ntu25'"):
        Classifier(torch.nn.Identity(), "kinect20", modality="bone_agcn")
    with pytest.raises(KeyError, match="bone_agcn"):
        to_modality(x, "ntu25", "bones")


# ---- ctrgcn ------------------------------------------------------------------------------------------


@requires_official
def test_ctrgcn_translation_reproduces_seq_and_is_idempotent():
    """``seq`` from ``denoised`` padded to 300 frames (float32 subtraction: exact), and ``seq``, already
    translated (its origin joint is zero), unchanged."""
    fx = _fixture("ctrgcn")
    seq = _ctrgcn_clips(fx["seq"])
    rows = torch.zeros_like(fx["seq"])
    for i, d in enumerate(fx["denoised"]):
        rows[i, : d.shape[0], : d.shape[1]] = d
    assert torch.equal(seq_translation(_ctrgcn_clips(rows)), seq)
    assert torch.equal(seq_translation(seq), seq)


@requires_official
@pytest.mark.parametrize("source", ["seq", "denoised"])
def test_ctrgcn_pipeline_reproduces_the_test_feeder(source):
    """``preprocess_ctrgcn.pt['input']``: the translation is exact, the crop an index; the blend
    ``x0 * l0 + x1 * l1`` may round its product and sum differently from the kernel's: at most half an ulp
    of each product and twice of the sum, 1.5 eps max|x|."""
    fx = _fixture("ctrgcn")
    if source == "seq":
        x = _ctrgcn_clips(fx["seq"])
    else:
        rows = torch.zeros_like(fx["seq"])
        for i, d in enumerate(fx["denoised"]):
            rows[i, : d.shape[0], : d.shape[1]] = d
        x = _ctrgcn_clips(rows)
    want = fx["input"]
    out = build_pipeline("ctrgcn", "ntu25", window=64, p_interval=[0.95])(x)
    assert out.shape == want.shape == (6, 3, 64, 25, 2)
    bound = 1.5 * EPS32 * want.abs().amax((1, 2, 3, 4))
    assert ((out - want).abs().amax((1, 2, 3, 4)) <= bound).all()


def _feeder(x: torch.Tensor, window: int, p: float) -> torch.Tensor:
    """One clip ``(C, T, V, M)`` the way feeders/tools.py's valid_crop_resize writes it (slice, then
    F.interpolate over (C V M, L))."""
    c, _, v, m = x.shape
    valid = int((x.sum(0).sum(-1).sum(-1) != 0).sum())
    bias = int((1 - p) * valid / 2)
    data = x[:, bias : valid - bias]
    flat = data.permute(0, 2, 3, 1).reshape(1, 1, c * v * m, data.shape[1])
    out = F.interpolate(flat, size=(c * v * m, window), mode="bilinear", align_corners=False)
    return out.reshape(c, v, m, window).permute(0, 3, 1, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("window", [64, 17])
def test_valid_crop_resize_is_f_interpolate_per_clip(dtype, window):
    """Batched with different valid lengths (longer and shorter than the window, equal to it), against the
    official per-clip slicing and F.interpolate. Values: the blend's rounding as above (1.5 eps max|x|);
    in float64 the source position is rounded twice, off by up to ulp(L) <= eps L, which moves the value by
    up to |x1 - x0| eps L <= 2 eps L max|x|. Gradients (float32, the positions the same): sums of the same
    at most 2 window terms lam * w in another order, within 4 window eps sum |lam w|."""
    t = 90
    lengths = torch.tensor([90, 64, 17, 40, 3, 1])
    x = torch.randn(len(lengths), 3, t, 25, 2, dtype=dtype, generator=torch.Generator().manual_seed(5))
    x = x * (torch.arange(t) < lengths.view(-1, 1)).view(-1, 1, t, 1, 1)
    eps = torch.finfo(dtype).eps
    scale = x.abs().amax((1, 2, 3, 4))
    for p in (0.95, 0.5, 1.0):
        got = valid_crop_resize(x, window, p)
        want = torch.stack([_feeder(clip, window, p) for clip in x])
        bound = (1.5 + (2 * lengths if dtype == torch.float64 else 0)) * eps * scale
        assert ((got - want).abs().amax((1, 2, 3, 4)) <= bound).all()
    if dtype == torch.float32:
        w = torch.randn(len(lengths), 3, window, 25, 2, generator=torch.Generator().manual_seed(6))
        u = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((valid_crop_resize(u, window) * w).sum(), u)
        (g_want,) = torch.autograd.grad(
            (torch.stack([_feeder(clip, window, 0.95) for clip in u]) * w).sum(), u
        )
        (g_abs,) = torch.autograd.grad((valid_crop_resize(u, window) * w.abs()).sum(), u)
        assert ((g - g_want).abs() <= 4 * window * eps * g_abs).all()
        assert torch.equal(g == 0, g_want == 0)


def test_ctrgcn_follows_seq_translation_where_the_fixtures_do_not_reach():
    """The origin is person 0's joint 1 in its first frame with a value, for both persons; a person's empty
    frames stay zero, a zero joint in a non-empty frame is translated; the valid count skips empty frames."""
    g = torch.Generator().manual_seed(4)
    x = torch.zeros(1, 3, 12, 25, 2, dtype=torch.float64)
    x[0, :, 2:10, :, 0] = torch.randn(3, 8, 25, dtype=torch.float64, generator=g)
    x[0, :, 4:8, :, 1] = torch.randn(3, 4, 25, dtype=torch.float64, generator=g)
    x[0, :, 5, 9, 0] = 0
    origin = x[0, :, 2, 1, 0].view(3, 1, 1, 1).clone()
    y = seq_translation(x)
    want = torch.zeros_like(x)
    want[0, :, 2:10, :, 0] = x[0, :, 2:10, :, 0] - origin[..., 0]
    want[0, :, 4:8, :, 1] = x[0, :, 4:8, :, 1] - origin[..., 0]
    torch.testing.assert_close(y, want, rtol=0, atol=0)
    assert (y[0, :, 5, 9, 0] == -origin.flatten()).all()
    # 8 valid frames counted, but the crop starts at frame 0 as the official one does: frames 0..7
    out = valid_crop_resize(y, window=8, p=1.0)
    torch.testing.assert_close(out, y[:, :, :8], rtol=0, atol=0)


def test_ctrgcn_gradient_is_finite_and_zero_where_the_test_input_does_not_read():
    """Padding, absent persons, empty frames and the cropped-off ends get no gradient; the origin joint
    collects the translation's."""
    x = _clips(t=120)
    x[1, :, 100:] = 0
    pipe = build_pipeline("ctrgcn", "ntu25")
    g = _grad(pipe, x)
    assert torch.isfinite(g).all()
    assert (g[x.sum((1, 3), keepdim=True).expand_as(x) == 0] == 0).all()
    # clip 1: bias 2 of 100 valid frames; only joint 1 of frame 0, the origin, is read outside the crop
    read = torch.zeros_like(g[1], dtype=torch.bool)
    read[:, 2:98, :, 0] = True
    read[:, 0, 1, 0] = True
    assert (g[1][~read] == 0).all() and (g[1][read] != 0).all()
    assert torch.isfinite(_grad(pipe, x.float())).all()


@requires_official
def test_ctrgcn_gradient_is_finite_on_real_clips():
    seq = _ctrgcn_clips(_fixture("ctrgcn")["seq"][:3])
    g = _grad(build_pipeline("ctrgcn", "ntu25"), seq)
    assert torch.isfinite(g).all() and (g[:, :, 120:] == 0).all()


# ---- errors and configs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["agcn", "ctrgcn"])
def test_pipelines_refuse_other_shapes_and_layouts(name):
    pipe = build_pipeline(name, "ntu25")
    for shape in [(2, 2, 10, 25, 2), (2, 3, 10, 20, 2), (3, 10, 25, 2), (2, 3, 0, 25, 2)]:
        with pytest.raises(ValueError, match=r"\(N, 3, T, 25, M\)"):
            pipe(torch.zeros(shape))
    with pytest.raises(ValueError, match="floating-point"):
        pipe(torch.zeros(1, 3, 4, 25, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="layout must be 'ntu25'"):
        build_pipeline(name, "kinect20")


def test_pipeline_options_are_checked():
    with pytest.raises(ValueError, match="zaxis"):
        build_pipeline("agcn", "ntu25", zaxis=(0, 25))
    with pytest.raises(ValueError, match="xaxis"):
        build_pipeline("agcn", "ntu25", xaxis=(4, 4))
    with pytest.raises(ValueError, match="window"):
        build_pipeline("ctrgcn", "ntu25", window=0)
    with pytest.raises(ValueError, match="training augmentation"):
        build_pipeline("ctrgcn", "ntu25", p_interval=[0.5, 1])
    with pytest.raises(ValueError, match=r"p_interval must be in \(0, 1\]"):
        build_pipeline("ctrgcn", "ntu25", p_interval=1.5)
    out = build_pipeline("ctrgcn", "ntu25", window=32)(torch.randn(1, 3, 50, 25, 2))
    assert out.shape == (1, 3, 32, 25, 2)


@pytest.mark.parametrize(
    ("experiment", "pipeline", "modality"),
    [
        ("ntu60_xsub_agcn_joint", "agcn", "joint"),
        ("ntu60_xsub_agcn_bone", "agcn", "bone_agcn"),
        ("ntu60_xview_agcn_joint", "agcn", "joint"),
        ("ntu60_xsub_msg3d", "agcn", "joint"),
        ("ntu60_xsub_ctrgcn", "ctrgcn", "joint"),
    ],
)
def test_published_experiments_feed_the_official_pipelines(experiment, pipeline, modality, tmp_path):
    """The official input is the zero-padded 300-frame array; the pipeline replaces the normalisation."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"paths.cache_dir={tmp_path}"])
    model, data = OmegaConf.to_container(cfg.model, resolve=True), cfg.data
    assert (model["pipeline"], model["normalize"], model["modality"]) == (pipeline, "none", modality)
    assert (data.window, data.temporal) == (300, "pad")
    clf = Classifier(
        torch.nn.Identity(), "ntu25", model["normalize"], model["modality"], model["pipeline"],
        model["pipeline_kwargs"],
    )  # fmt: skip
    assert clf.preprocess(torch.randn(1, 3, 300, 25, 2)).shape[2] == (64 if pipeline == "ctrgcn" else 300)
