"""Certified robustness of skeleton classifiers by randomized smoothing (docs/METHOD.md section 8)."""

from lightning_skel.certify.smoothing import (
    ABSTAIN,
    Certificate,
    SmoothedClassifier,
    certified_accuracy,
    clopper_pearson_lower,
    min_samples,
)

__all__ = [
    "ABSTAIN",
    "Certificate",
    "SmoothedClassifier",
    "certified_accuracy",
    "clopper_pearson_lower",
    "min_samples",
]
