"""2s-AGCN's input pipeline (Shi et al., CVPR 2019), which MS-G3D (Liu et al., CVPR 2020) reuses unchanged:
``data_gen/preprocess.py``'s ``pre_normalization`` with its defaults, as a differentiable, batched function.

The official code runs it once over the whole dataset and the test feeder then passes the arrays through, so
``pre_normalization`` is all that stands between a raw clip and the network. The emptiness tests are the
official ones: a person's frame is empty when its coordinates sum to zero (a person without a non-empty
frame is absent), and a joint is kept when its three coordinates do not sum to zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_skel.data.pipelines import PIPELINES, Pipeline
from lightning_skel.skeleton.layouts import Layout

# rotation.py treats a vector, a rotation axis or an angle below this as zero (the rotation is then the identity)
ROTATION_TOL = 1e-6


def check_ntu_clips(x: Tensor, owner: str) -> None:
    """Raise a ``ValueError`` naming ``owner`` unless ``x`` is a float ``(N, 3, T, 25, M)``, ``T, M >= 1``.

    The official NTU RGB+D pipelines read joints by their ntu25 index.

    Example:
        >>> check_ntu_clips(torch.zeros(2, 3, 30, 20, 1), "agcn pipeline")
        Traceback (most recent call last):
        ValueError: agcn pipeline: x must be (N, 3, T, 25, M) NTU RGB+D clips, got (2, 3, 30, 20, 1)
    """
    if x.ndim != 5 or x.shape[1] != 3 or x.shape[3] != 25 or x.shape[2] < 1 or x.shape[4] < 1:
        raise ValueError(f"{owner}: x must be (N, 3, T, 25, M) NTU RGB+D clips, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{owner}: x must be a floating-point tensor, got {x.dtype}")


def repeat_into_padding(x: Tensor) -> Tensor:
    """Step 1 of ``pre_normalization``, per person: when frame 0 is empty the non-empty frames move to the
    front in order; the frames after the last non-empty one are then filled by repeating the frames before
    it (output frame ``t`` is frame ``t mod L``, ``L`` that last frame + 1). Empty frames before it stay
    empty and repeat as such. Each person repeats with its own ``L``: a second person who leaves early
    repeats while the first goes on. A gather: the frames not read (the padding) get no gradient.

    Shape:
        ``(N, C, T, V, M) -> (N, C, T, V, M)``.

    Example:
        >>> x = torch.randn(1, 3, 30, 25, 1)
        >>> x[:, :, 20:] = 0  # 20 frames, then padding
        >>> torch.equal(repeat_into_padding(x)[:, :, 20:], x[:, :, :10])
        True
    """
    n, c, t, v, m = x.shape
    full = x.sum((1, 3)) != 0  # (N, T, M) the non-empty frames
    present = full.any(1)  # (N, M)
    compact = present & ~full[:, 0]
    # a stable sort on "empty" puts the non-empty frames first in order; the zero key keeps the others in place
    order = torch.argsort((compact[:, None] & ~full).to(torch.uint8), dim=1, stable=True)
    last = t - full.flip(1).to(torch.uint8).argmax(1)  # last non-empty frame + 1 (T for an absent person)
    period = torch.where(compact, full.sum(1), last).clamp_min(1)
    frames = torch.arange(t, device=x.device).view(1, t, 1)
    src = order.gather(1, frames % period[:, None])  # (N, T, M)
    return x.gather(2, src[:, None, :, None].expand(n, c, t, v, m))


def center_on_main_body(x: Tensor) -> Tensor:
    """Step 2 of ``pre_normalization``: subtract joint 1 (spine middle) of person 0, frame by frame.

    Every person is moved (nothing in a frame where that joint is zero). A joint whose coordinates sum to
    zero stays zero and gets no gradient, and so do absent persons.

    Shape:
        ``(N, 3, T, V, M) -> (N, 3, T, V, M)``.

    Example:
        >>> y = center_on_main_body(torch.randn(2, 3, 30, 25, 2))
        >>> float(y[:, :, :, 1, 0].abs().max())  # person 0's spine middle is the origin
        0.0
    """
    keep = x.sum(1, keepdim=True) != 0
    return torch.where(keep, x - x[:, :, :, 1:2, 0:1], torch.zeros((), dtype=x.dtype, device=x.device))


def align_rotation(v: Tensor, axis: int) -> Tensor:
    """The rotation ``(N, 3, 3)`` that ``rotation.py`` builds to turn ``v (N, 3)`` onto the coordinate axis
    ``axis``: ``rotation_matrix(cross(v, e), angle_between(v, e))``, the identity where ``v``, that cross
    product (``v`` along ``+-e``, including ``-e``) or the angle is below :data:`ROTATION_TOL`, with the
    angle measured in ``v``'s precision as the official code does.

    Written as ``R = c I + [w]x + w w^T / (1 + c)`` with ``u = v / |v|``, ``c = u . e``, ``w = u x e`` (the
    same matrix as the axis-angle form, without arccos, whose derivative is infinite at +-1); for ``c < 0``
    ``1 / (1 + c)`` is computed as ``(1 - c) / |w|^2``. The identity rows use a stand-in ``v = e`` so that
    both branches of the ``where`` are finite and so are the gradients.

    Example:
        >>> v = torch.tensor([[0.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
        >>> (align_rotation(v, axis=2) @ v.unsqueeze(-1)).squeeze(-1)  # each v turned onto +z
        tensor([[0., 0., 2.],
                [0., 0., 1.]])
    """
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    e = eye[axis]
    others = [i for i in range(3) if i != axis]
    with torch.no_grad():
        norm = torch.linalg.vector_norm(v, dim=-1)
        cos = (v[:, axis] / norm).clamp(-1, 1)
        degenerate = (
            (v.abs().sum(-1) < ROTATION_TOL)
            | (v[:, others].abs().sum(-1) < ROTATION_TOL)
            | ~(torch.arccos(cos) >= ROTATION_TOL)  # also NaN: a zero vector
        )
    v = torch.where(degenerate[:, None], e, v)
    u = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    c = u[:, axis]
    w = torch.linalg.cross(u, e.expand_as(u), dim=-1)
    positive = c >= 0
    ww = (w * w).sum(-1)
    coef = torch.where(positive, 1 / torch.where(positive, 1 + c, 1), (1 - c) / torch.where(positive, 1, ww))
    zero, (w0, w1, w2) = torch.zeros_like(c), w.unbind(-1)
    skew = torch.stack([zero, -w2, w1, w2, zero, -w0, -w1, w0, zero], -1).view(-1, 3, 3)  # [w]x
    rot = c[:, None, None] * eye + skew + coef[:, None, None] * w[:, :, None] * w[:, None, :]
    return torch.where(degenerate[:, None, None], eye, rot)


def _check_pair(name: str, pair: Sequence[int]) -> None:
    if len(pair) != 2 or not all(isinstance(j, int) and 0 <= j < 25 for j in pair) or pair[0] == pair[1]:
        raise ValueError(
            f"pre_normalization: {name} must be two different ntu25 joints in [0, 25), got {pair}"
        )


def pre_normalization(x: Tensor, zaxis: Sequence[int] = (0, 1), xaxis: Sequence[int] = (8, 4)) -> Tensor:
    """2s-AGCN's ``pre_normalization(data, zaxis=[0, 1], xaxis=[8, 4])`` on a batch of NTU clips.

    1. :func:`repeat_into_padding`;
    2. :func:`center_on_main_body`;
    3. rotate every joint by :func:`align_rotation` so that ``joint zaxis[1] - joint zaxis[0]`` of person 0
       in frame 0 points along +z, then by the one that turns ``joint xaxis[0] - joint xaxis[1]`` of that
       frame, after the first rotation, along +x. Zero joints stay zero.

    Args:
        x: ``(N, 3, T, 25, M)`` raw clips in metres, zero padded in time and for absent persons.
        zaxis, xaxis: the joint pairs (0-based ntu25 indices) of the two alignments, the official defaults.

    Returns:
        ``(N, 3, T, 25, M)`` in ``x``'s dtype.

    Example:
        >>> z = pre_normalization(torch.randn(2, 3, 30, 25, 2))
        >>> z.shape, float(z[:, :, :, 1, 0].abs().max())  # person 0's spine middle is the origin
        (torch.Size([2, 3, 30, 25, 2]), 0.0)
    """
    check_ntu_clips(x, "pre_normalization")
    _check_pair("zaxis", zaxis)
    _check_pair("xaxis", xaxis)
    y = center_on_main_body(repeat_into_padding(x))
    first = y[:, :, 0, :, 0]  # (N, 3, V) person 0, frame 0
    rot_z = align_rotation(first[:, :, zaxis[1]] - first[:, :, zaxis[0]], 2)
    turned = torch.einsum("nij,njv->niv", rot_z, first[:, :, list(xaxis)])
    rot_x = align_rotation(turned[:, :, 0] - turned[:, :, 1], 0)
    return torch.einsum("nij,njtvm->nitvm", rot_x @ rot_z, y)


@PIPELINES.register("agcn")
class AGCNPipeline(Pipeline):
    """2s-AGCN's and MS-G3D's input (lshiwjx/2s-AGCN, kenziyuliu/MS-G3D): :func:`pre_normalization`.

    The official test feeder passes the pre-normalised 300-frame arrays through unchanged, so train on
    ``temporal: pad``, ``window: 300``.

    Args:
        layout: must be ``ntu25``.
        zaxis: joints whose difference (person 0, frame 0) is turned along +z; default ``(0, 1)``.
        xaxis: joints whose difference is then turned along +x; default ``(8, 4)`` (the shoulders).

    Shape:
        ``(N, 3, T, 25, M) -> (N, 3, T, 25, M)``.

    Example:
        >>> pipe = AGCNPipeline("ntu25")
        >>> pipe(torch.randn(2, 3, 30, 25, 2)).shape  # what 2s-AGCN's network sees
        torch.Size([2, 3, 30, 25, 2])
    """

    def __init__(
        self, layout: str | Layout, zaxis: Sequence[int] = (0, 1), xaxis: Sequence[int] = (8, 4)
    ) -> None:
        super().__init__(layout)
        if self.layout.name != "ntu25":
            raise ValueError(
                f"the agcn pipeline is NTU RGB+D's: layout must be 'ntu25', got {self.layout.name!r}"
            )
        _check_pair("zaxis", zaxis)
        _check_pair("xaxis", xaxis)
        self.zaxis, self.xaxis = tuple(zaxis), tuple(xaxis)

    def forward(self, x: Tensor) -> Tensor:
        return pre_normalization(x, self.zaxis, self.xaxis)
