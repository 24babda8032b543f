"""Batch transforms of ``(N, C, T, V, M)`` skeleton tensors, vectorised over the batch so they run on the
device after transfer: temporal crop and resample to a fixed window, and random rotation, scale and shear.
Padding frames and absent persons stay zero."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_skel.skeleton.features import valid_mask


def temporal_resample(
    x: Tensor,
    lengths: Tensor,
    window: int,
    crop: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Linearly resample the valid frames of each clip to ``window`` frames.

    Args:
        x: ``(N, C, T, V, M)`` clips.
        lengths: ``(N,)`` valid frames of each clip.
        window: the frames out.
        crop: ``(lo, hi)``: first take a random contiguous part of ``U(lo, hi)`` times the clip's length at
            a random start (training). ``None`` (default): the whole valid part (evaluation, deterministic).
        generator: the random draws' generator (default torch's).

    Returns:
        ``(N, C, window, V, M)``, and the new lengths ``(N,)``, all ``window``.

    Example:
        >>> x, n = temporal_resample(torch.randn(2, 3, 40, 20, 1), torch.tensor([40, 25]), window=16)
        >>> x.shape, n
        (torch.Size([2, 3, 16, 20, 1]), tensor([16, 16]))
    """
    n = x.shape[0]
    dev = x.device
    length = lengths.to(dev, torch.float32)
    if crop is not None:
        lo, hi = crop
        frac = lo + (hi - lo) * torch.rand(n, generator=generator, device="cpu").to(dev)
        span = (length * frac).clamp_min(1.0)
        start = (length - span) * torch.rand(n, generator=generator, device="cpu").to(dev)
    else:
        span, start = length, torch.zeros_like(length)
    steps = torch.linspace(0.0, 1.0, window, device=dev)
    pos = start[:, None] + steps[None, :] * (span[:, None] - 1).clamp_min(0.0)  # (N, W) in frames
    pos = torch.minimum(pos, (length - 1)[:, None])
    i0 = pos.floor().long()
    i1 = torch.minimum(i0 + 1, (lengths.to(dev) - 1)[:, None])
    w = (pos - i0).to(x.dtype).view(n, 1, window, 1, 1)

    def gather(idx: Tensor) -> Tensor:
        return x.gather(2, idx.view(n, 1, window, 1, 1).expand(-1, x.shape[1], -1, x.shape[3], x.shape[4]))

    out = gather(i0) * (1 - w) + gather(i1) * w
    if crop is None and x.shape[2] >= window:
        # a clip of ``window`` valid frames is its own resampling; the interpolation above rounds the
        # positions, and an adversarial clip written at the window (attack.py) must read back unchanged
        same = (lengths.to(dev) == window).view(n, 1, 1, 1, 1)
        out = torch.where(same, x[:, :, :window], out)
    return out, torch.full_like(lengths, window)


TEMPORAL = ("resample", "pad")  # how clips are brought to a fixed window of frames


def fit_window(
    x: Tensor,
    lengths: Tensor,
    window: int,
    temporal: str = "resample",
    crop: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Bring clips to ``window`` frames, as the data module does.

    Args:
        x: ``(N, C, T, V, M)`` clips.
        lengths: ``(N,)`` valid frames of each clip.
        window: the frames out.
        temporal: ``"resample"`` (default): each clip's valid frames resampled (:func:`temporal_resample`,
            ``crop`` and ``generator`` as there). ``"pad"``: the first ``window`` frames, shorter clips
            zero-padded.

    Returns:
        ``(N, C, window, V, M)``, and the new lengths ``(N,)``.

    Example:
        >>> x, n = fit_window(torch.randn(2, 3, 40, 20, 1), torch.tensor([40, 10]), 16, temporal="pad")
        >>> x.shape, n
        (torch.Size([2, 3, 16, 20, 1]), tensor([16, 10]))
    """
    if temporal not in TEMPORAL:
        raise ValueError(f"temporal must be one of {TEMPORAL}, got {temporal!r}")
    if temporal == "resample":
        return temporal_resample(x, lengths, window, crop=crop, generator=generator)
    t = x.shape[2]
    x = x[:, :, :window] if t >= window else torch.nn.functional.pad(x, (0, 0, 0, 0, 0, window - t))
    return x, lengths.clamp_max(window)


def random_affine(
    x: Tensor,
    rotate_deg: float = 0.0,
    scale: float = 0.0,
    shear: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply one random linear map per clip; padding and absent persons stay zero.

    Args:
        x: ``(N, C, T, V, M)`` clips, ``C`` 3 or 2 (2D data takes the in-plane part).
        rotate_deg: rotation about each axis in ``±rotate_deg`` degrees (default 0).
        scale: isotropic scale in ``1 ± scale`` (default 0).
        shear: shear entries in ``±shear`` (default 0).
        generator: the random draws' generator (default torch's).

    Example:
        >>> x = torch.randn(2, 3, 16, 20, 1)
        >>> random_affine(x, rotate_deg=10, scale=0.1).shape
        torch.Size([2, 3, 16, 20, 1])
    """
    n, c = x.shape[:2]

    def u(*shape: int) -> Tensor:
        return (2 * torch.rand(*shape, generator=generator) - 1).to(x.device, x.dtype)

    a = u(n, 3) * math.radians(rotate_deg)
    cos, sin = a.cos(), a.sin()
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def rot(i: int, axes: tuple[int, int]) -> Tensor:
        m = torch.stack([one, zero, zero, zero, one, zero, zero, zero, one], -1).view(n, 3, 3).clone()
        p, q = axes
        m[:, p, p], m[:, p, q], m[:, q, p], m[:, q, q] = cos[:, i], -sin[:, i], sin[:, i], cos[:, i]
        return m

    r = rot(0, (1, 2)) @ rot(1, (0, 2)) @ rot(2, (0, 1)) if c == 3 else rot(2, (0, 1))
    sh = torch.eye(3, device=x.device, dtype=x.dtype).expand(n, 3, 3) + u(n, 3, 3) * shear * (
        1 - torch.eye(3, device=x.device, dtype=x.dtype)
    )
    m = (r @ sh) * (1 + u(n, 1, 1) * scale)
    m = m[:, :c, :c]
    out = torch.einsum("nij,njtvm->nitvm", m, x)
    return out * valid_mask(x).to(x.dtype)


def random_mirror(
    x: Tensor, mirror_index: Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each clip, with probability ``p``, by its left-right mirror image.

    The first coordinate is negated and every ``left_*`` joint swapped with its ``right_*`` twin. Only for
    labels that do not depend on the side ("swipe left" does; a perceived emotion does not).

    Args:
        x: ``(N, C, T, V, M)`` clips.
        mirror_index: ``(V,)`` joint permutation (``Layout.mirror_index``).
        p: the probability (default 0.5).
        generator: the random draws' generator (default torch's).

    Example:
        >>> from lightning_skel.skeleton import get_layout
        >>> x = torch.randn(2, 3, 16, 20, 1)
        >>> mirrored = random_mirror(x, torch.as_tensor(get_layout("kinect20").mirror_index), p=1.0)
        >>> torch.equal(mirrored[:, 0, :, 4], -x[:, 0, :, 8])  # left_shoulder is right_shoulder mirrored
        True
    """
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device).view(-1, 1, 1, 1, 1)
    mirrored = x[:, :, :, mirror_index.to(x.device)]
    sign = torch.ones(x.shape[1], device=x.device, dtype=x.dtype)
    sign[0] = -1.0
    mirrored = mirrored * sign.view(1, -1, 1, 1, 1)
    return torch.where(flip, mirrored, x)
