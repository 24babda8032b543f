"""Attacks on skeleton classifiers: the ADMM attack with the dynamic distance and its baselines.

``build_attack(name, model, layout, **kwargs)`` builds one from the registry; ``list_attacks()`` names them.
"""

from lightning_skel.attacks import admm, apgd, autoattack, cw, mifgsm, pgd, smart, square, zheng2020  # noqa: F401  (register the attacks)
from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult, build_attack, list_attacks
from lightning_skel.attacks.distances import DynamicDistance, Kinematics

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackResult",
    "DynamicDistance",
    "Kinematics",
    "build_attack",
    "list_attacks",
]
