"""Lightning callbacks of a training run: adversarial training, robust validation, Gaussian-noise
augmentation, the run's figures.

Configs build them by ``_target_`` (configs/callbacks/*.yaml, ``hydra.utils.instantiate``).
"""

from lightning_skel.callbacks.adversarial_training import AdversarialTraining
from lightning_skel.callbacks.figures import ClassificationFigures
from lightning_skel.callbacks.noise_augmentation import GaussianNoiseAugmentation
from lightning_skel.callbacks.robust_validation import RobustValidation

__all__ = ["AdversarialTraining", "ClassificationFigures", "GaussianNoiseAugmentation", "RobustValidation"]
