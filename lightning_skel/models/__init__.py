"""Classifiers over ``(N, C, T, V, M)`` skeleton tensors, registered by name."""

# Importing a model module registers it.
from lightning_skel.models import agcn, ctrgcn, emotion, hcn, msg3d, sgn, stgcn  # noqa: F401
from lightning_skel.models.classifier import Classifier, WindowedClassifier
from lightning_skel.models.ensemble import ScoreFusion
from lightning_skel.models.registry import MODELS, build_model, list_models

__all__ = ["MODELS", "Classifier", "ScoreFusion", "WindowedClassifier", "build_model", "list_models"]
