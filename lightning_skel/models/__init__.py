"""Classifiers over ``(N, C, T, V, M)`` skeleton tensors, registered by name."""

from lightning_skel.models import hcn  # noqa: F401  (registers the model)
from lightning_skel.models.classifier import Classifier
from lightning_skel.models.registry import MODELS, build_model, list_models

__all__ = ["MODELS", "Classifier", "build_model", "list_models"]
