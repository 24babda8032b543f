"""One format for an attack and its settings, the ``attack`` config group's (configs/attack/*.yaml).

A spec is a mapping ``{"name": <registered attack>, "targeted": <bool, default false>, **settings}``, as
Hydra composes an entry of the ``attack`` group, or a registered name alone (its class's defaults). attack.py
reads its ``attack`` key in this format, the adversarial-training callback its ``attack`` argument and
robust validation each entry of its ``attacks``; configs compose each of them from the group
(``/attack@adv_training.attack: admm`` in a defaults list), so that one override switches the attack.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lightning_skel.attacks.base import ATTACKS, Attack, build_attack
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params

# Where a config holds an attack's numbers, as patterns of lightning_skel.utils.check_number_types, relative
# to the spec: a string there (attack.max_iter=abc on the command line) is refused before any work, naming
# the key, instead of failing inside the attack.
ATTACK_KWARG_NUMBERS = {
    **dict.fromkeys(("max_iter", "delta_steps", "z_steps", "binary_search_steps", "steps", "emotion_every",
                     "inner_steps", "n_iter", "n_restarts", "n_queries", "eot_iter"), "int"),
    **dict.fromkeys(("patience", "n_target_classes"), "int?"),
    **dict.fromkeys(("c", "c_growth", "c_max", "kappa", "rho", "lr", "balance", "min_improvement", "eps", "clip",
                     "cw", "blw", "rw", "beta", "momentum", "decay", "p_init", "weights.*", "tau.*"), "float"),
    **dict.fromkeys(("lr_z", "alpha"), "float?"),
}  # fmt: skip

# the constructor's arguments that are no setting: the model and layout the run gives, and targeted, a key
# of the spec's own
_GIVEN = ("self", "model", "layout", "targeted")


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack, whether it is targeted, and its settings, checked against its constructor.

    Args:
        name: a registered attack (``lightning_skel.attacks.list_attacks()``); an unknown name is a
            ``KeyError`` listing the known ones.
        targeted: aim at a target label (default false); the run gives the targets.
        kwargs: the attack's other settings (units as its class documents them: metres, steps); each must be
            an argument of its constructor. Default none: the class's defaults.

    Build one from a config with :meth:`parse`; :meth:`build` makes the attack against a model.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> spec = AttackSpec.parse({"name": "pgd", "targeted": False, "eps": 0.02, "steps": 3})
    >>> spec.name, spec.targeted, spec.kwargs
    ('pgd', False, {'eps': 0.02, 'steps': 3})
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(2, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> res = spec.build(model, "ntu25")(x, y)  # x (N, C, T, V, M) in metres, y (N,)
    >>> tuple(res.x_adv.shape), int(res.grad_evals.max())
    ((2, 3, 8, 25, 1), 3)
    """

    name: str
    targeted: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any], key: str = "attack", owner: str = "attack") -> AttackSpec:
        """The spec of a config entry: a mapping with ``name`` (and optionally ``targeted``) plus settings,
        or a registered name. ``key`` (the entry's place in the config, e.g. ``attack``) and ``owner`` (who
        reads it, e.g. ``attack.py``) name it in errors: an entry that is neither, has no ``name``, names no
        registered attack, has a ``targeted`` that is not true or false, or a setting its class does not
        take, is refused."""
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping):
            raise TypeError(
                f"{owner}: {key} must be an attack's name or a mapping with its name and settings (an entry of "
                f"configs/attack), got {type(spec).__name__}"
            )
        settings = dict(spec)
        name = settings.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(
                f"{owner}: {key} names no attack ({key}.name missing); give an entry of configs/attack, one of "
                f"{ATTACKS.names()}"
            )
        cls_ = ATTACKS.get(name)  # an unknown name is a KeyError listing the known ones
        targeted = settings.pop("targeted", False)
        check_params(
            owner, {f"{key}.targeted": (targeted, isinstance(targeted, bool), "true or false")}, "setting(s)"
        )
        params = inspect.signature(cls_.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            takes = sorted(set(params) - set(_GIVEN))
            unknown = sorted(set(settings) - set(takes))
            if unknown:
                raise ValueError(
                    f"{owner}: {key}: attack {name!r} takes no {', '.join(unknown)}; its settings are "
                    f"{', '.join(takes)}"
                )
        return cls(name, targeted, settings)

    def build(self, model: nn.Module, layout: str | Layout, **extra: Any) -> Attack:
        """The attack against ``model`` on ``layout`` with these settings, ``extra`` (given by the run, e.g. a
        per-batch ``seed``, ``emotion_model``) taking precedence."""
        return build_attack(self.name, model, layout, targeted=self.targeted, **{**self.kwargs, **extra})
