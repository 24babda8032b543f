"""AutoAttack (Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020) on skeletons (docs/METHOD.md section 4).

The attacks of a version run one after the other, each on the clips that all the previous ones left robust,
and each clip keeps the first perturbation that fooled it: the worst case over the attacks. ``standard``
runs APGD-CE, APGD-T (the targeted DLR loss towards the 9 next most likely classes) and Square with 5000
queries (the authors' standard version without FAB-T, which this package does not have); ``rand``, for
randomised models, APGD-CE and APGD-DLR with the gradient averaged over 20 passes; ``custom`` the list
given. ``x (N, C, T, V, M)`` in metres.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_skel.attacks.apgd import NORMS, APGDAttack, _is_int
from lightning_skel.attacks.base import ATTACKS, Attack, AttackResult
from lightning_skel.attacks.square import SquareAttack
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params

log = logging.getLogger(__name__)

COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "square")
VERSIONS = {"standard": ("apgd-ce", "apgd-t", "square"), "rand": ("apgd-ce", "apgd-dlr"), "custom": None}


@ATTACKS.register("autoattack")
class AutoAttack(Attack):
    """AutoAttack (Croce and Hein, ICML 2020): APGD-CE, APGD-T and Square in sequence on the clips still
    robust, in one L-infinity or L2 ball of radius ``eps`` metres over the valid entries; a clip counts as
    fooled when any of them fools it (docs/METHOD.md section 4).

    Targeted (an extension: the authors' AutoAttack is untargeted), every component seeks the given
    target: APGD-CE on the target's cross-entropy, APGD-T and APGD-DLR on the targeted DLR loss towards it,
    Square on the target's cross-entropy.

    Arguments:
        model (nn.Module): the classifier of raw coordinates ``(N, C, T, V, M)``.
        layout (str or Layout): the skeleton layout of the clips.
        targeted (bool): seek the given target labels (default false).
        norm (str): ``"linf"`` or ``"l2"`` (default ``"linf"``).
        eps (float): the ball's radius in metres (default 0.02).
        version (str): ``"standard"`` (APGD-CE, APGD-T, Square), ``"rand"`` (APGD-CE, APGD-DLR, 20 gradient
            passes averaged per step) or ``"custom"`` (``attacks``) (default ``"standard"``).
        attacks (list of str or None): with ``version="custom"``, the attacks to run in order, from
            ``apgd-ce``, ``apgd-dlr``, ``apgd-t`` and ``square`` (default None).
        n_iter (int): iterations of each APGD run (default 100).
        n_target_classes (int): APGD-T's target classes, at most the number of classes - 1 (default 9).
        n_queries (int): Square's queries per clip (default 5000).
        seed (int or None): every component's seed (default 0; None: torch's global generator).

    Shape:
        ``x (N, C, T, V, M)`` in metres, ``y (N,)``, ``lengths (N,)``, ``target (N,)`` if targeted; the
        result's counts are summed over the components that ran on the clip, and ``extras["component"]``
        is the index (in the version's list) of the one that fooled it, -1 for none.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> with torch.no_grad():
    ...     y = model(x).argmax(1)  # labels the model gets right
    >>> attack = AutoAttack(model, "ntu25", eps=0.02, n_iter=3, n_target_classes=2, n_queries=10)
    >>> res = attack(x, y)
    >>> tuple(res.extras["component"].shape), bool((res.x_adv - x).abs().max() <= 0.02 + 1e-6)
    ((4,), True)
    """

    name = "autoattack"

    def __init__(
        self,
        model: nn.Module,
        layout: str | Layout,
        targeted: bool = False,
        norm: str = "linf",
        eps: float = 0.02,
        version: str = "standard",
        attacks: Sequence[str] | None = None,
        n_iter: int = 100,
        n_target_classes: int = 9,
        n_queries: int = 5000,
        seed: int | None = 0,
    ) -> None:
        super().__init__(model, layout, targeted)
        custom = version == "custom"
        listed = attacks is not None and not isinstance(attacks, str) and len(attacks) > 0
        check_params(self.name, {
            "norm": (norm, norm in NORMS, f"one of {NORMS}"),
            "eps": (eps, eps > 0, "> 0 (metres)"),
            "version": (version, version in VERSIONS, f"one of {tuple(VERSIONS)}"),
            "attacks": (attacks, (attacks is None and not custom) or (custom and listed
                                  and all(a in COMPONENTS for a in attacks)),
                        f"null, or with version 'custom' a non-empty list from {COMPONENTS}"),
            "n_iter": (n_iter, _is_int(n_iter) and n_iter >= 1, "an integer >= 1"),
            "n_target_classes": (n_target_classes, _is_int(n_target_classes) and n_target_classes >= 1,
                                 "an integer >= 1"),
            "n_queries": (n_queries, _is_int(n_queries) and n_queries >= 1, "an integer >= 1"),
        }, "hyper-parameter(s)")  # fmt: skip
        self.norm, self.eps, self.version, self.seed = norm, float(eps), version, seed
        self.attacks = tuple(attacks) if custom else VERSIONS[version]
        eot = 20 if version == "rand" else 1
        ball = {"targeted": targeted, "norm": norm, "eps": eps, "seed": seed}
        apgd = {**ball, "n_iter": n_iter, "n_restarts": 1, "eot_iter": eot}

        def build(name: str) -> Attack:
            if name == "square":
                return SquareAttack(
                    model, layout, **ball, n_queries=n_queries, p_init=0.8, rescale_schedule=False
                )
            if name == "apgd-ce":
                return APGDAttack(model, layout, **apgd, loss="ce")
            if name == "apgd-t" and not targeted:
                return APGDAttack(model, layout, **apgd, loss="dlr", n_target_classes=n_target_classes)
            return APGDAttack(model, layout, **apgd, loss="dlr")  # apgd-dlr; apgd-t towards the given target

        self.components = [build(name) for name in self.attacks]

    @property
    def extra_labels(self) -> dict[str, tuple[str, ...]]:
        return {"component": self.attacks}

    def attack(self, x: Tensor, y: Tensor, lengths: Tensor, target: Tensor | None) -> AttackResult:
        n, dev = x.shape[0], x.device
        robust = torch.ones(n, dtype=torch.bool, device=dev)
        x_adv = x.clone()
        pred = torch.full_like(y, -1)
        grad_evals = torch.zeros(n, dtype=torch.long, device=dev)
        forward_evals = torch.zeros_like(grad_evals)
        iterations = torch.zeros_like(grad_evals)
        component = torch.full_like(grad_evals, -1)
        for k, (name, sub) in enumerate(zip(self.attacks, self.components, strict=True)):
            rows = robust.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            # the component's own call (its checks, its masking), on clips this call already labelled
            res = sub(
                self.model_input(x[rows], rows), y[rows], lengths[rows],
                None if target is None else target[rows], attack_all=True,
            )  # fmt: skip
            x_adv[rows] = self.coordinates(res.x_adv)
            pred[rows] = res.pred_adv
            grad_evals[rows] += res.grad_evals
            forward_evals[rows] += res.forward_evals
            iterations[rows] += res.iterations
            ok = res.success
            component[rows[ok]] = k
            robust[rows[ok]] = False
            self.clips_done(int(ok.sum()))
            log.debug("%s: %s fooled %d of %d clips", self.name, name, int(ok.sum()), rows.numel())
        return self.result(
            x_adv, y, target, grad_evals, forward_evals, iterations, pred=pred, component=component
        )
