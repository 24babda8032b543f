import math

import pytest
import torch

from lightning_skel.skeleton import features as F
from lightning_skel.skeleton import get_layout


def random_rotation(n: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    det = torch.linalg.det(q)
    q[:, :, 0] *= det.sign().unsqueeze(1)
    return q


def clip_batch(layout="ntu25", n=3, t=6, m=2, dtype=torch.float64):
    lay = get_layout(layout)
    gen = torch.Generator().manual_seed(1)
    rest = torch.as_tensor(lay.rest_array, dtype=dtype).T  # (3, V)
    x = rest[None, :, None, :, None] + 0.05 * torch.randn(
        n, 3, t, lay.num_joints, m, generator=gen, dtype=dtype
    )
    return x


def test_bone_vectors_hand_computed():
    lay = get_layout("gait16")
    x = torch.zeros(1, 3, 1, 16, 1)
    x[0, :, 0, 1, 0] = torch.tensor([0.0, 2.0, 0.0])  # spine 2 m above root
    v = F.bone_vectors(x, lay)
    assert v.shape == (1, 3, 1, 15, 1)
    b = lay.bones.index((1, 0))
    assert torch.allclose(v[0, :, 0, b, 0], torch.tensor([0.0, 2.0, 0.0]))
    assert F.bone_lengths(x, lay)[0, 0, b, 0] == pytest.approx(2.0, abs=1e-6)


def test_bone_angle_hand_computed():
    lay = get_layout("gait16")
    x = torch.zeros(1, 3, 1, 16, 1)
    # left shoulder at origin-ish, elbow 1 m right of it, hand 1 m above the elbow: right angle at the elbow
    sh, el, ha = (lay.index(n) for n in ("left_shoulder", "left_elbow", "left_hand"))
    x[0, :, 0, sh, 0] = torch.tensor([0.0, 0.0, 0.0])
    x[0, :, 0, el, 0] = torch.tensor([1.0, 0.0, 0.0])
    x[0, :, 0, ha, 0] = torch.tensor([1.0, 1.0, 0.0])
    k = lay.triplets.index((sh, el, ha))
    assert F.bone_angles(x, lay)[0, 0, k, 0] == pytest.approx(math.pi / 2, abs=1e-5)
    x[0, :, 0, ha, 0] = torch.tensor([2.0, 0.0, 0.0])  # straight arm
    assert F.bone_angles(x, lay)[0, 0, k, 0] == pytest.approx(math.pi, abs=1e-5)


@pytest.mark.parametrize("layout", ["ntu25", "kinect20", "gait16", "openpose18", "coco17"])
@pytest.mark.parametrize("channels", [3, 2])
def test_bones_and_angles_equal_direct_indexing(layout, channels):
    """The difference-matrix products give exactly the indexed differences, and the component-wise cross
    product the library's."""
    lay = get_layout(layout)
    x = clip_batch(layout)[:, :channels]
    child, parent = (torch.as_tensor(a) for a in lay.bone_index)
    assert torch.equal(F.bone_vectors(x, lay), x[:, :, :, child] - x[:, :, :, parent])
    p, j, c = (torch.as_tensor(a) for a in lay.triplet_index)
    u, v = x[:, :, :, p] - x[:, :, :, j], x[:, :, :, c] - x[:, :, :, j]
    if channels == 3:
        cross2 = torch.linalg.cross(u, v, dim=1).pow(2).sum(1)
    else:
        cross2 = (u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]).pow(2)
    expected = torch.atan2((cross2 + 1e-12).sqrt(), (u * v).sum(1))  # features' safe norm adds 1e-12
    assert torch.allclose(F.bone_angles(x, lay), expected, atol=1e-12)


@pytest.mark.parametrize("layout", ["ntu25", "kinect20", "gait16"])
def test_lengths_and_angles_invariant_to_rigid_motion(layout):
    x = clip_batch(layout)
    gen = torch.Generator().manual_seed(2)
    r = random_rotation(x.shape[0], gen)
    shift = torch.randn(x.shape[0], 3, 1, 1, 1, generator=gen, dtype=x.dtype)
    y = torch.einsum("nij,njtvm->nitvm", r, x) + shift
    assert torch.allclose(F.bone_lengths(x, layout), F.bone_lengths(y, layout), atol=1e-5)
    assert torch.allclose(F.bone_angles(x, layout), F.bone_angles(y, layout), atol=1e-5)


def test_static_clip_has_zero_velocity_and_acceleration():
    x = clip_batch(t=1).repeat(1, 1, 5, 1, 1)
    assert F.velocity(x).shape[2] == 4 and F.acceleration(x).shape[2] == 3
    assert F.velocity(x).abs().max() == 0
    assert F.acceleration(x).abs().max() == 0


def test_velocity_acceleration_hand_computed():
    x = torch.zeros(1, 3, 4, 1, 1)
    x[0, 0, :, 0, 0] = torch.tensor([0.0, 1.0, 4.0, 9.0])
    assert F.velocity(x)[0, 0, :, 0, 0].tolist() == [1.0, 3.0, 5.0]
    assert F.acceleration(x)[0, 0, :, 0, 0].tolist() == [2.0, 2.0]


def test_valid_mask_excludes_padding_and_absent_persons():
    x = clip_batch(n=2, t=6, m=2)
    x[0, :, 4:] = 0  # padding of clip 0
    x[1, :, :, :, 1] = 0  # person 2 absent in clip 1
    x[1, :, 2, :, 0] = 0  # person 1 untracked in one frame
    lengths = torch.tensor([4, 6])
    m = F.valid_mask(x, lengths)
    assert m.shape == (2, 1, 6, 1, 2) and m.dtype == torch.bool
    assert m[0, 0, :4].all() and not m[0, 0, 4:].any()
    assert not m[1, 0, :, 0, 1].any()
    assert m[1, 0, :, 0, 0].tolist() == [True, True, False, True, True, True]
    # lengths alone also masks frames that hold data past the length
    x2 = clip_batch(n=1, t=6, m=1)
    assert F.valid_mask(x2, torch.tensor([3]))[0, 0, :, 0, 0].tolist() == [True] * 3 + [False] * 3
    vm = F.temporal_mask(F.valid_mask(x2, torch.tensor([3])), 1)
    assert vm[0, 0, :, 0, 0].tolist() == [True, True, False, False, False]


def test_to_gait16_identity_and_mean():
    x = clip_batch("gait16")
    assert F.to_gait16(x, "gait16") is x
    op = torch.randn(1, 2, 3, 18, 1)
    g = F.to_gait16(op, "openpose18")
    lay = get_layout("openpose18")
    root = 0.5 * (op[..., lay.index("left_hip"), :] + op[..., lay.index("right_hip"), :])
    assert torch.allclose(g[..., 0, :], root, atol=1e-6)


def test_normalize_faces_canonical_direction_and_unit_height():
    x = clip_batch("ntu25", n=4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    r = random_rotation(4, gen)
    y = torch.einsum("nij,njtvm->nitvm", r, x) + torch.randn(4, 3, 1, 1, 1, generator=gen, dtype=x.dtype)
    a = F.normalize(x, "ntu25", scale=True)
    b = F.normalize(y, "ntu25", scale=True)
    assert torch.allclose(a, b, atol=1e-6)  # same clip seen from any camera normalises the same
    g = F.to_gait16(b, "ntu25")
    assert torch.allclose(g[:, :, 0, 0, 0], torch.zeros(4, 3, dtype=x.dtype), atol=1e-6)  # root at origin
    up = g[:, :, 0, 2, 0] - g[:, :, 0, 0, 0]
    assert torch.allclose(up[:, [0, 2]], torch.zeros(4, 2, dtype=x.dtype), atol=1e-6) and (up[:, 1] > 0).all()
    assert (g[:, 0, 0, 10, 0] > g[:, 0, 0, 13, 0]).all()  # left hip on +x
    assert torch.allclose(F.skeletal_height(b, "ntu25"), torch.ones(4, dtype=x.dtype), atol=1e-6)


def test_normalize_keeps_padding_zero_and_is_differentiable():
    x = clip_batch(n=2, t=5).float().requires_grad_(True)
    lengths = torch.tensor([3, 5])
    out = F.normalize(x, "ntu25", lengths, scale=True)
    assert out[0, :, 3:].abs().max() == 0
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_angle_gradient_finite_for_collinear_bones():
    x = torch.zeros(1, 3, 1, 16, 1)
    x[0, 1, 0, :, 0] = torch.arange(16.0)  # every joint on one line
    x.requires_grad_(True)
    F.bone_angles(x, "gait16").sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cross3_is_the_cross_product():
    gen = torch.Generator().manual_seed(2)
    u, v = torch.randn(2, 4, 3, 7, generator=gen, dtype=torch.float64)
    w = torch.stack(F.cross3(u.unbind(1), v.unbind(1)), 1)
    torch.testing.assert_close(w, torch.linalg.cross(u, v, dim=1), rtol=0, atol=1e-15)
    assert torch.equal(torch.stack(F.cross_components(u, v), 1), w)


def test_velocity_adjoint_hand_computed():
    """``g_{t-1} - g_t`` with g zero outside its frames: the first frame -g_0, the last g_{T-2}."""
    g = torch.tensor([1.0, 4.0, 9.0]).view(1, 1, 3, 1, 1)
    assert F.velocity_adjoint(g).flatten().tolist() == [-1.0, -3.0, -5.0, 9.0]
