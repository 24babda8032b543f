"""Readers of external skeleton formats, each returning a skeleton-npz dict (see ``lightning_skel.data.io``).

Each reader module registers itself in :data:`READERS` under the FORMAT name that
``python -m lightning_skel.data.prepare FORMAT SRC OUT.npz`` accepts.
"""

from lightning_skel.registry import Registry

READERS: Registry = Registry("skeleton reader")

__all__ = ["READERS"]
