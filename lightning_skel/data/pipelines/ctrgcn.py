"""CTR-GCN's input pipeline (Chen et al., ICCV 2021): ``data/ntu/seq_transformation.py``'s
``seq_translation`` (applied once when the dataset is built) followed by the test feeder's
``valid_crop_resize`` (``feeders/tools.py`` with ``p_interval=[0.95]``, ``window_size=64``), as differentiable,
batched functions on zero-padded ``(N, 3, T, 25, M)`` clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_skel.data.pipelines import PIPELINES, Pipeline
from lightning_skel.data.pipelines.agcn import check_ntu_clips
from lightning_skel.skeleton.layouts import Layout


def seq_translation(x: Tensor) -> Tensor:
    """``seq_translation``: subtract joint 1 (spine middle) of person 0 at its first frame with a non-zero
    coordinate from every joint of every person and frame; a person's frame whose coordinates sum to zero
    (absent, missing or padding) stays zero and gets no gradient. Persons are not re-centred separately, and
    a zero joint in a non-empty frame is translated like the others. A clip without person 0 is unchanged
    (the official code needs one). The official code keeps the missing frames of a one-body clip translated,
    but its denoising leaves a one-body clip none; the padding after a clip is added after the translation,
    as zeros, which is what this gives.

    Shape:
        ``(N, 3, T, V, M) -> (N, 3, T, V, M)``.

    Example:
        >>> y = seq_translation(torch.randn(2, 3, 30, 25, 2))
        >>> float(y[:, :, 0, 1, 0].abs().max())  # person 0's spine middle in its first frame is the origin
        0.0
    """
    n, c = x.shape[:2]
    seen = (x[..., 0] != 0).any(3).any(1)  # (N, T): person 0 has a non-zero coordinate
    first = seen.to(torch.uint8).argmax(1)  # 0 when none: frame 0 of an empty person 0 is zero
    origin = x[:, :, :, 1, 0].gather(2, first.view(n, 1, 1).expand(n, c, 1))  # (N, 3, 1)
    keep = x.sum((1, 3), keepdim=True) != 0  # (N, 1, T, 1, M)
    return torch.where(keep, x - origin[..., None, None], torch.zeros((), dtype=x.dtype, device=x.device))


_TABLES: dict[tuple, Tensor] = {}


def _table(key: tuple, build) -> Tensor:
    """A small constant tensor built once per key (a plain dict, which torch.compile traces as a lookup)."""
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = build()
    return table


def _crop_bias(p: float, t: int, device: torch.device) -> Tensor:
    """``int((1 - p) * valid / 2)`` for every ``valid`` in ``0..t``, computed in float64 as the feeder's numpy
    does (in float32 ``(1 - p) * valid / 2`` can round below an integer that float64 reaches)."""

    def build() -> Tensor:
        valid = torch.arange(t + 1, dtype=torch.float64)
        return ((1 - p) * valid / 2).floor().long().to(device)

    return _table(("bias", p, t, device), build)


def _source_positions(t: int, window: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(t, window)``: row ``L - 1`` holds F.interpolate's source positions of the ``window`` output frames
    for ``L`` input frames (``align_corners=False``): ``max(scale * (j + 0.5) - 0.5, 0)`` with ``scale = L /
    window`` rounded to ``dtype``. In float32 the position is computed exactly and rounded once, as the CPU
    kernel's fused multiply-add does (the official feeder runs on the CPU); in float64 it is rounded twice."""

    def build() -> Tensor:
        j = torch.arange(window, dtype=torch.float64) + 0.5
        scale = (torch.arange(1, t + 1, dtype=dtype) / window).to(torch.float64)
        return (scale[:, None] * j - 0.5).clamp_min(0).to(dtype).to(device)

    return _table(("positions", t, window, dtype, device), build)


def valid_crop_resize(x: Tensor, window: int = 64, p: float = 0.95) -> Tensor:
    """The test feeder's ``valid_crop_resize(data, valid, [p], window)`` on a batch.

    ``valid`` counts each clip's frames whose coordinates sum to non-zero; the crop keeps frames
    ``[bias, valid - bias)``, ``bias = int((1 - p) * valid / 2)``, which are resampled to ``window`` frames
    as ``F.interpolate(mode="bilinear", align_corners=False)`` does along time: the source position of
    output frame ``j`` is ``(j + 0.5) * L / window - 0.5`` (clamped at 0, :func:`_source_positions`), a
    linear blend of the two frames around it with the kernel's weights. A gather and a blend, so frames
    outside the crop get no gradient. A clip without a non-zero frame gives zeros (the official code fails
    on it). float32 as the official code; float64 keeps its precision.

    Args:
        x: ``(N, C, T, V, M)`` clips, zero padded.
        window: the frames out (default 64).
        p: the fraction of the valid frames kept (default 0.95).

    Shape:
        ``(N, C, T, V, M) -> (N, C, window, V, M)``.

    Example:
        >>> x = torch.randn(2, 3, 30, 25, 2)
        >>> x[:, :, 20:] = 0  # 20 valid frames
        >>> valid_crop_resize(x, window=16).shape
        torch.Size([2, 3, 16, 25, 2])
    """
    n, c, t, v, m = x.shape
    opmath = torch.float64 if x.dtype == torch.float64 else torch.float32  # the kernel's arithmetic
    valid = (x.sum((1, 3, 4)) != 0).sum(1)  # (N,)
    bias = _crop_bias(p, t, x.device)[valid]
    length = (valid - 2 * bias).clamp_min(1)
    pos = _source_positions(t, window, opmath, x.device)[length - 1]  # (N, W)
    last = length[:, None] - 1
    i0 = torch.minimum(pos.long(), last)
    lam1 = (pos - i0.to(opmath)).clamp(0, 1)
    lam0 = (1 - lam1).to(x.dtype).view(n, 1, window, 1, 1)
    lam1 = lam1.to(x.dtype).view(n, 1, window, 1, 1)
    i1 = i0 + (i0 < last).long()

    def frames(i: Tensor) -> Tensor:
        idx = (bias[:, None] + i).view(n, 1, window, 1, 1).expand(n, c, window, v, m)
        return x.gather(2, idx)

    # x[i0] * lam0 + x[i1] * lam1; addcmul fuses the second product and the sum as the CPU kernel does
    return torch.addcmul(frames(i1) * lam1, frames(i0), lam0)


@PIPELINES.register("ctrgcn")
class CTRGCNPipeline(Pipeline):
    """CTR-GCN's test input (Uason-Chen/CTR-GCN): :func:`seq_translation`, then :func:`valid_crop_resize`.

    Train on ``temporal: pad``, ``window: 300``: the official arrays are zero padded to 300 frames.

    Args:
        layout: must be ``ntu25``.
        window: frames of the network input; default 64 (the official ``window_size``).
        p_interval: the fraction of the valid frames kept by the centre crop, in ``(0, 1]``; default 0.95 (the
            official test ``p_interval=[0.95]``; a one-element list is accepted as written there).

    Shape:
        ``(N, 3, T, 25, M) -> (N, 3, window, 25, M)``.

    Example:
        >>> pipe = CTRGCNPipeline("ntu25")
        >>> pipe(torch.randn(2, 3, 30, 25, 2)).shape  # what CTR-GCN's network sees in its test
        torch.Size([2, 3, 64, 25, 2])
    """

    def __init__(
        self, layout: str | Layout, window: int = 64, p_interval: float | Sequence[float] = 0.95
    ) -> None:
        super().__init__(layout)
        if self.layout.name != "ntu25":
            raise ValueError(
                f"the ctrgcn pipeline is NTU RGB+D's: layout must be 'ntu25', got {self.layout.name!r}"
            )
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"ctrgcn pipeline: window must be a positive int, got {window!r}")
        if isinstance(p_interval, Sequence) and not isinstance(p_interval, str):
            if len(p_interval) != 1:
                raise ValueError(
                    "ctrgcn pipeline: p_interval is the test's one centre-crop fraction (e.g. 0.95 or [0.95]); "
                    f"the two-value random crop is training augmentation, got {list(p_interval)}"
                )
            (p_interval,) = p_interval
        if (
            isinstance(p_interval, bool)
            or not isinstance(p_interval, (int, float))
            or not 0 < p_interval <= 1
        ):
            raise ValueError(f"ctrgcn pipeline: p_interval must be in (0, 1], got {p_interval!r}")
        self.window, self.p_interval = window, float(p_interval)

    def forward(self, x: Tensor) -> Tensor:
        check_ntu_clips(x, "ctrgcn pipeline")
        return valid_crop_resize(seq_translation(x), self.window, self.p_interval)
