"""The model registry: configs name a model, :func:`build_model` builds it for a layout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from lightning_skel.registry import Registry
from lightning_skel.skeleton.layouts import Layout, get_layout
from lightning_skel.utils import check_params

MODELS: Registry = Registry("model")


def build_model(name: str, num_classes: int, layout: str | Layout, **kwargs) -> nn.Module:
    """Build the registered model ``name`` (timm's ``create_model``).

    Args:
        name: a name of :data:`MODELS` (:func:`list_models`); an unknown one is a ``KeyError`` listing them.
        num_classes: the classes ``K`` of the head ``fc``, at least 2.
        layout: the skeleton layout, a name or a :class:`~lightning_skel.skeleton.Layout`.
        **kwargs: the model's own arguments (``in_channels``, ``num_persons``, widths, ...).

    Shape:
        Every model maps ``x (N, C, T, V, M)`` to logits ``(N, K)``; ``forward_features(x)`` gives the
        ``(N, D)`` features before ``fc``.

    Example:
        >>> import torch
        >>> net = build_model("stgcn", 5, "kinect20", num_persons=1, channels=8, num_blocks=3)
        >>> net(torch.randn(2, 3, 16, 20, 1)).shape
        torch.Size([2, 5])
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return MODELS.get(name)(num_classes=num_classes, layout=get_layout(layout), **kwargs)


def list_models() -> list[str]:
    """The registered model names, sorted.

    Example:
        >>> list_models()
        ['agcn', 'ctrgcn', 'emotion', 'hcn', 'msg3d', 'sgn', 'stgcn']
    """
    return MODELS.names()


def check_model_args(
    owner: str,
    in_channels: int,
    num_persons: int,
    dropout: float,
    temporal_kernel: int | None = None,
    rules: Mapping[str, tuple[Any, bool, str]] | None = None,
    **sizes: int,
) -> None:
    """Check a model's arguments when it is built: one ``ValueError`` names every bad one.

    The shared rules: ``in_channels``, ``num_persons`` and every size in ``sizes`` at least 1, ``dropout``
    in [0, 1), and a temporal kernel odd, so that "same" padding keeps the frames.

    Args:
        owner: the model's name, the start of the message.
        in_channels, num_persons, dropout: the model's arguments of those names.
        temporal_kernel: the model's temporal kernel; ``None`` for a model without one.
        rules: the model's own rules, ``{name: (value, ok, rule)}`` as
            :func:`~lightning_skel.utils.check_params` takes them.
        **sizes: widths and counts that must be at least 1.

    Example:
        >>> check_model_args("mine", 3, 0, 0.5, temporal_kernel=4)
        Traceback (most recent call last):
        ValueError: mine: invalid argument(s): num_persons must be >= 1, got 0; temporal_kernel must be ...
    """
    shared = {
        k: (v, v >= 1, ">= 1")
        for k, v in {"in_channels": in_channels, "num_persons": num_persons, **sizes}.items()
    }
    shared["dropout"] = (dropout, 0 <= dropout < 1, "in [0, 1)")
    if temporal_kernel is not None:
        shared["temporal_kernel"] = (
            temporal_kernel,
            temporal_kernel >= 1 and temporal_kernel % 2 == 1,
            "odd and >= 1",
        )
    check_params(owner, {**shared, **(rules or {})})
