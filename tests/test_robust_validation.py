"""Robust validation: accuracy under attack on a fixed validation subset, on a schedule, selectable for
checkpoints."""

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lightning_skel.attacks import ATTACKS, Attack
from lightning_skel.callbacks.robust_validation import RobustValidation
from lightning_skel.run import build_callbacks, run_train
from tests.helpers import train_cfg


class Identity(Attack):
    """Changes nothing: robust accuracy must equal the clean accuracy of the subset."""

    name = "test_identity"

    def attack(self, x, y, lengths, target):
        n = torch.ones(len(y), dtype=torch.long, device=x.device)
        return self.result(x.clone(), y, target, grad_evals=n)


class AlwaysWrong(Attack):
    """Claims a wrong label for every clip: robust accuracy must be 0."""

    name = "test_always_wrong"

    def attack(self, x, y, lengths, target):
        res = self.result(x.clone(), y, target, grad_evals=torch.ones_like(y))
        res.pred_adv = (y + 1) % 12
        return res


class ShiftWrong(Attack):
    """Moves every coordinate by 10 mm and claims a wrong label: its L-infinity size is 10 mm."""

    name = "test_shift_wrong"

    def attack(self, x, y, lengths, target):
        res = self.result(x + 0.01, y, target, grad_evals=torch.ones_like(y))
        res.pred_adv = (y + 1) % 12
        return res


STUBS = (Identity, AlwaysWrong, ShiftWrong)


@pytest.fixture
def stub_attacks():
    for cls in STUBS:
        ATTACKS.register(cls.name)(cls)
    yield
    for cls in STUBS:
        ATTACKS._items.pop(cls.name)


def rows(run: Path) -> list[dict]:
    (version,) = sorted((run / "logs").iterdir())
    return list(csv.DictReader((version / "metrics.csv").open()))


def robust_overrides(attacks: str, every: int = 1, num: int = 6, budgets: str = "null") -> list[str]:
    """Robust validation on top of the default callbacks, with ``attacks`` (a mapping of attack specs)."""
    spec = (
        f"_target_: lightning_skel.callbacks.RobustValidation, every_n_epochs: {every}, num_samples: {num}, "
        f"attacks: {attacks}, budgets: {budgets}"
    )
    return [f"callbacks.robust_validation={{{spec}}}", "callbacks.figures=null"]


def test_bad_arguments_are_refused_at_construction():
    with pytest.raises(KeyError, match="unknown attack 'nope'"):
        RobustValidation({"nope": {"name": "nope"}})
    with pytest.raises(
        ValueError, match=r"RobustValidation: attacks.pgd names no attack \(attacks.pgd.name missing\)"
    ):
        RobustValidation({"pgd": {"eps": 0.02}})
    with pytest.raises(ValueError, match="RobustValidation: attacks.pgd: attack 'pgd' takes no max_iter"):
        RobustValidation({"pgd": {"name": "pgd", "max_iter": 3}})
    with pytest.raises(
        ValueError, match=r"attacks.pgd.targeted must be false \(validation clips have no target"
    ):
        RobustValidation({"pgd": {"name": "pgd", "targeted": True}})
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1, got 0"):
        RobustValidation(["pgd"], every_n_epochs=0)
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        RobustValidation(["pgd"], num_samples=0)
    with pytest.raises(ValueError, match="empty"):
        RobustValidation({})
    with pytest.raises(ValueError, match="empty"):
        RobustValidation({"pgd": None})  # a null entry is left out
    with pytest.raises(ValueError, match="'pgd' twice in the list"):
        RobustValidation(["pgd", {"name": "pgd", "eps": 0.01}])
    with pytest.raises(TypeError, match="attacks must be a mapping or a list of attack specs, got 3"):
        RobustValidation(3)
    with pytest.raises(ValueError, match="'smart' is not one of the attacks"):
        RobustValidation(["pgd"], budgets={"smart": {"linf_mm": 20}})
    with pytest.raises(ValueError, match="'linf' is not a distance metric"):
        RobustValidation(["admm"], budgets={"admm": {"linf": 20}})
    with pytest.raises(ValueError, match="> 0"):
        RobustValidation(["admm"], budgets={"admm": {"linf_mm": 0}})
    with pytest.raises(ValueError, match="one distance metric"):
        RobustValidation(["admm"], budgets={"admm": {"linf_mm": 20, "rms_mm": 10}})
    with pytest.raises(ValueError, match="one distance metric"):
        RobustValidation(["admm"], budgets={"admm": 20})


def test_attacks_by_name_or_by_the_key_their_metrics_take():
    """A list names each attack's metric by its attack; a mapping by its key (two settings of one attack);
    null entries, of attacks or budgets, are off; no attacks: ADMM and AutoAttack at their classes' defaults."""
    listed = RobustValidation(["pgd", {"name": "admm", "max_iter": 3}])
    assert {k: (s.name, s.kwargs) for k, s in listed.specs.items()} == {
        "pgd": ("pgd", {}),
        "admm": ("admm", {"max_iter": 3}),
    }
    keyed = RobustValidation(
        {"pgd_1cm": {"name": "pgd", "eps": 0.01}, "pgd_2cm": {"name": "pgd", "eps": 0.02}, "smart": None},
        budgets={"pgd_1cm": {"linf_mm": 10}, "pgd_2cm": None},
    )
    assert {k: s.kwargs["eps"] for k, s in keyed.specs.items()} == {"pgd_1cm": 0.01, "pgd_2cm": 0.02}
    assert keyed.budgets == {"pgd_1cm": ("linf_mm", 10.0)}
    assert {k: (s.name, s.kwargs) for k, s in RobustValidation().specs.items()} == {
        "admm": ("admm", {}),
        "autoattack": ("autoattack", {}),
    }


class LabelInInput(torch.nn.Module):
    """Predicts the class written in the first coordinate of each clip (rounded)."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0, 0].round().long(), 12).float()


def validate(callback: RobustValidation, x, y, lengths) -> dict[str, float]:
    """One validation epoch of ``callback`` on one batch, outside a Trainer: the metrics it logs."""
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=0, world_size=1,
                              strategy=SimpleNamespace(reduce=lambda t, reduce_op: t))  # fmt: skip
    logged = {}
    module = SimpleNamespace(classifier=LabelInInput(), hparams=SimpleNamespace(layout="ntu25"),
                             device=x.device, log_dict=lambda m, **kw: logged.update(m))  # fmt: skip
    callback.setup(trainer, module, "fit")
    callback.on_validation_epoch_start(trainer, module)
    callback.on_validation_batch_end(trainer, module, None, (x, y, lengths), 0)
    callback.on_validation_epoch_end(trainer, module)
    return logged


def test_budget_counts_only_fooling_clips_within_it(stub_attacks):
    """A fooling attack that moves every coordinate by 10 mm on 6 clips, 4 of them classified right: it
    breaks all 4 unbudgeted or within 20 mm L-infinity (or 20 mm rms: its rms is 17.3 mm), none within 5 mm
    L-infinity or 9 mm rms."""
    x = torch.full((6, 3, 8, 25, 1), 0.5)  # every joint present (an all-zero person is absent)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    x[:, 0, 0, 0, 0] = torch.tensor([0.0, 1, 2, 3, 7, 7])  # the last two clips are misclassified
    lengths = torch.full((6,), 8)
    robust = {}
    for budget in (None, {"linf_mm": 5}, {"linf_mm": 20}, {"rms_mm": 20}, {"rms_mm": 9}):
        cb = RobustValidation(
            ["test_shift_wrong"], num_samples=6, budgets=budget and {"test_shift_wrong": budget}
        )
        logged = validate(cb, x, y, lengths)
        assert logged["val/clean_acc_subset"] == pytest.approx(4 / 6)
        robust[str(budget)] = logged["val/robust_acc_test_shift_wrong"]
    assert robust == {"None": 0.0, "{'linf_mm': 5}": pytest.approx(4 / 6), "{'linf_mm': 20}": 0.0,
                      "{'rms_mm': 20}": 0.0, "{'rms_mm': 9}": pytest.approx(4 / 6)}  # fmt: skip


def test_checkpoint_on_robust_accuracy_needs_robust_validation(tmp_path):
    cfg = train_cfg(tmp_path, ["callbacks.checkpoint.monitor=val/robust_acc_admm"])
    with pytest.raises(ValueError, match="robust_validation"):
        build_callbacks(cfg, tmp_path)


def test_identity_keeps_clean_accuracy_and_wrong_labels_give_zero(tmp_path, stub_attacks):
    cfg = train_cfg(
        tmp_path,
        [
            "trainer.max_epochs=2",
            *robust_overrides(
                "{test_identity: {name: test_identity}, test_always_wrong: {name: test_always_wrong}}"
            ),
        ],
    )
    run_train(cfg)
    val = [r for r in rows(tmp_path / "run") if r.get("val/robust_acc_test_identity")]
    assert len(val) == 2  # every epoch, not the sanity check
    for r in val:
        assert float(r["val/robust_acc_test_identity"]) == float(r["val/clean_acc_subset"])
        assert float(r["val/robust_acc_test_always_wrong"]) == 0.0


def test_real_attacks_on_a_schedule_and_checkpoint_selection(tmp_path):
    cfg = train_cfg(
        tmp_path,
        [
            "trainer.max_epochs=4",
            *robust_overrides(
                "{admm: {name: admm, max_iter: 3}, pgd: {name: pgd, eps: 0.05, steps: 3}}", every=2
            ),
            "callbacks.checkpoint.monitor=val/robust_acc_pgd",
        ],
    )
    run_train(cfg)
    val = [r for r in rows(tmp_path / "run") if r.get("val/acc")]
    robust = {int(r["epoch"]): r for r in val if r.get("val/robust_acc_admm")}
    assert sorted(robust) == [1, 3]  # (epoch + 1) % 2 == 0
    for r in robust.values():
        clean = float(r["val/clean_acc_subset"])
        assert 0.0 <= float(r["val/robust_acc_admm"]) <= clean  # an attack never repairs a clip
        assert 0.0 <= float(r["val/robust_acc_pgd"]) <= clean
    # the checkpoint selected on robust accuracy comes from an epoch where it was measured
    (best,) = (tmp_path / "run" / "checkpoints").glob("best-*.ckpt")
    assert int(best.stem.split("-")[1]) in robust
