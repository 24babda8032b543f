"""Lightning callbacks: figures of a run (and, later, adversarial training)."""

from lightning_skel.callbacks.figures import ClassificationFigures

__all__ = ["ClassificationFigures"]
