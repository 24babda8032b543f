"""Readers of external skeleton formats, each returning a skeleton-npz dict (see ``lightning_skel.data.io``).

Each reader module registers itself in :data:`READERS` under the FORMAT name that
``python -m lightning_skel.data.prepare FORMAT SRC OUT.npz`` accepts; this package imports every one of them
(the one place they are registered from), so importing :data:`READERS` gives every format.
"""

from lightning_skel.registry import Registry

READERS: Registry = Registry("skeleton reader")

# importing the reader modules registers their formats
from lightning_skel.data.readers import agcn, ctrgcn, emotion_gait, kinetics, ntu, pyskl, utd_mhad  # noqa: E402, F401

__all__ = ["READERS"]
