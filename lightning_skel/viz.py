"""Figures of skeleton clips: frame strips, clean-vs-adversarial comparisons and GIFs (matplotlib, Agg)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from lightning_skel.skeleton.layouts import Layout, get_layout

_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:orange")


def _project(xyz: np.ndarray) -> np.ndarray:
    """``(C, ..., V)`` -> 2D drawing coordinates ``(2, ..., V)``: x and y (y up) of 3D or 2D data."""
    return xyz[:2]


def _draw(ax, clip: np.ndarray, t: int, layout: Layout, color: str, label: str | None = None) -> None:
    """Draw frame ``t`` of ``clip (C, T, V, M)`` on ``ax``; absent persons are skipped."""
    child, parent = layout.bone_index
    for m in range(clip.shape[3]):
        pose = _project(clip[:, t, :, m])
        if not np.any(pose):
            continue
        segs = np.stack([pose[:, child].T, pose[:, parent].T], axis=1)  # (B, 2, 2)
        ax.add_collection(LineCollection(segs, colors=color, linewidths=1.6, label=label if m == 0 else None))
        ax.scatter(pose[0], pose[1], s=4, c=color)


def _limits(clips: Sequence[np.ndarray]) -> tuple[tuple[float, float], tuple[float, float]]:
    pts = np.concatenate([_project(c).reshape(2, -1) for c in clips], axis=1)
    pts = pts[:, np.any(pts != 0, axis=0)]
    if pts.size == 0:
        return (-1, 1), (-1, 1)
    lo, hi = pts.min(1), pts.max(1)
    pad = 0.08 * (hi - lo).max() + 1e-3
    cx, cy = (lo + hi) / 2
    half = (hi - lo).max() / 2 + pad
    return (cx - half, cx + half), (cy - half, cy + half)


def frame_strip(
    clips: Sequence[np.ndarray],
    layout: Layout | str,
    length: int | None = None,
    num_frames: int = 6,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Overlay versions of one clip (e.g. clean and adversarial) on evenly spaced frames, a panel each.

    Args:
        clips: the versions, each ``(C, T, V, M)``; x and y (y up) are drawn.
        layout: their skeleton layout.
        length: the clip's valid frames (default all ``T``).
        num_frames: the panels (default 6).
        labels: one legend entry per version (default none).
        title: the figure's title (default none).

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> clip = generate(num_per_class=1, seed=0, frames=16, layout="kinect20")["x"][0]
        >>> fig = frame_strip([clip, clip + 0.01], "kinect20", labels=["clean", "adversarial"])
        >>> len(fig.axes), save_figure(fig, "strip.png")
        (6, PosixPath('strip.png'))
    """
    layout = get_layout(layout)
    t_max = length or clips[0].shape[1]
    frames = np.linspace(0, t_max - 1, num_frames).round().astype(int)
    fig, axes = plt.subplots(1, num_frames, figsize=(2.1 * num_frames, 2.6), squeeze=False)
    xlim, ylim = _limits([c[:, :t_max] for c in clips])
    for ax, t in zip(axes[0], frames, strict=True):
        for i, clip in enumerate(clips):
            _draw(ax, clip, int(t), layout, _COLORS[i % len(_COLORS)], labels[i] if labels else None)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal")
        ax.set_title(f"t={t}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if labels:
        axes[0, 0].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def clip_grid(
    x: np.ndarray, layout: Layout | str, lengths: np.ndarray, titles: Sequence[str], num_frames: int = 5
) -> Figure:
    """One row per clip of ``x (N, C, T, V, M)``: ``num_frames`` of its ``lengths`` frames, titled.

    Args:
        x: ``(N, C, T, V, M)`` clips.
        layout: their skeleton layout.
        lengths: ``(N,)`` valid frames.
        titles: one title per clip.
        num_frames: the panels per row (default 5).

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> data = generate(num_per_class=1, seed=0, frames=16, layout="kinect20")
        >>> x, lengths, titles = data["x"][:2], data["lengths"][:2], data["class_names"][:2]
        >>> fig = clip_grid(x, "kinect20", lengths, titles, num_frames=3)
        >>> len(fig.axes), save_figure(fig, "grid.png")
        (6, PosixPath('grid.png'))
    """
    layout = get_layout(layout)
    n = x.shape[0]
    fig, axes = plt.subplots(n, num_frames, figsize=(1.8 * num_frames, 1.9 * n), squeeze=False)
    for i in range(n):
        xlim, ylim = _limits([x[i, :, : lengths[i]]])
        frames = np.linspace(0, lengths[i] - 1, num_frames).round().astype(int)
        for ax, t in zip(axes[i], frames, strict=True):
            _draw(ax, x[i], int(t), layout, _COLORS[0])
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(titles[i], fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` to ``path`` atomically (a temporary file, then a rename) and close it.

    The folder is made where missing; ``dpi`` is the resolution (default 110).

    Example:
        >>> fig, ax = plt.subplots()
        >>> save_figure(fig, "figures/empty.png")
        PosixPath('figures/empty.png')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def save_gif(
    clips: Sequence[np.ndarray],
    layout: Layout | str,
    path: str | os.PathLike,
    length: int | None = None,
    labels: Sequence[str] | None = None,
    fps: int = 15,
) -> Path:
    """Animate one or more versions of a clip overlaid, as a GIF written atomically.

    Args:
        clips: the versions, each ``(C, T, V, M)``.
        layout: their skeleton layout.
        path: the GIF to write.
        length: the frames to animate (default all ``T``).
        labels: one legend entry per version (default none).
        fps: frames per second (default 15).

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> clip = generate(num_per_class=1, seed=0, frames=16, layout="kinect20")["x"][0]
        >>> save_gif([clip], "kinect20", "wave.gif", length=4)
        PosixPath('wave.gif')
    """
    from matplotlib.animation import FuncAnimation, PillowWriter

    # it logs which writer it uses at every save; the report says where the GIF is
    logging.getLogger("matplotlib.animation").setLevel(logging.WARNING)

    layout = get_layout(layout)
    t_max = length or clips[0].shape[1]
    fig, ax = plt.subplots(figsize=(3.2, 3.2))
    xlim, ylim = _limits([c[:, :t_max] for c in clips])

    def draw(t: int):
        ax.clear()
        for i, clip in enumerate(clips):
            _draw(ax, clip, t, layout, _COLORS[i % len(_COLORS)], labels[i] if labels else None)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"frame {t}", fontsize=8)
        if labels:
            ax.legend(fontsize=7, loc="lower left")

    anim = FuncAnimation(fig, draw, frames=range(t_max))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.gif")
    anim.save(tmp, writer=PillowWriter(fps=fps))
    plt.close(fig)
    os.replace(tmp, path)
    return path
