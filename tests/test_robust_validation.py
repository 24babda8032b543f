"""Robust validation: accuracy under attack on a fixed validation subset, on a schedule, selectable for
checkpoints."""

import csv
from pathlib import Path

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


@pytest.fixture
def stub_attacks():
    for cls in (Identity, AlwaysWrong):
        ATTACKS.register(cls.name)(cls)
    yield
    for cls in (Identity, AlwaysWrong):
        ATTACKS._items.pop(cls.name)


def rows(run: Path) -> list[dict]:
    (version,) = sorted((run / "logs").iterdir())
    return list(csv.DictReader((version / "metrics.csv").open()))


def robust_overrides(attacks: str, every: int = 1, num: int = 6) -> list[str]:
    return [
        f"+callbacks.robust_validation={{every_n_epochs: {every}, num_samples: {num}, attacks: {attacks}}}",
        "callbacks.figures=null",
    ]


def test_bad_arguments_are_refused_at_construction():
    with pytest.raises(KeyError, match="nope"):
        RobustValidation({"nope": {}})
    with pytest.raises(ValueError, match="every_n_epochs"):
        RobustValidation({"pgd": {}}, every_n_epochs=0)
    with pytest.raises(ValueError, match="empty"):
        RobustValidation({})


def test_checkpoint_on_robust_accuracy_needs_robust_validation(tmp_path):
    cfg = train_cfg(tmp_path, ["callbacks.checkpoint.monitor=val/robust_acc_admm"])
    with pytest.raises(ValueError, match="robust_validation"):
        build_callbacks(cfg, tmp_path)


def test_identity_keeps_clean_accuracy_and_wrong_labels_give_zero(tmp_path, stub_attacks):
    cfg = train_cfg(
        tmp_path, ["trainer.max_epochs=2", *robust_overrides("{test_identity: {}, test_always_wrong: {}}")]
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
            *robust_overrides("{admm: {max_iter: 3}, pgd: {eps: 0.05, steps: 3}}", every=2),
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
