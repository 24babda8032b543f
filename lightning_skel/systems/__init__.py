"""LightningModules: the systems that train and evaluate."""

from lightning_skel.systems.classification import ClassificationSystem

__all__ = ["ClassificationSystem"]
