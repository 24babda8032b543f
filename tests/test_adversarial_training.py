import copy

import pytest
import pytorch_lightning as pl
import torch

from lightning_skel.attacks.base import Attack, AttackResult
from lightning_skel.callbacks.adversarial_training import AdversarialTraining
from lightning_skel.data.datamodule import SkeletonDataModule
from lightning_skel.run import run_train
from lightning_skel.systems import ClassificationSystem
from tests.helpers import tiny_npz, train_cfg

MARK = 1000.0


class StubAttack(Attack):
    """Moves every valid coordinate by +1000 m: replaced clips are easy to count."""

    name = "stub"

    def attack(self, x, y, lengths, target):
        n = len(y)
        ones = torch.ones(n, dtype=torch.long)
        return AttackResult(x + MARK, torch.ones(n, dtype=torch.bool), y, ones, ones, ones)


class Recorder(ClassificationSystem):
    """Records, per training step, the epoch, the batch it trained on and how many clips were marked."""

    def training_step(self, batch, batch_idx):
        x = batch[0]
        marked = int((x.flatten(1).amax(1) > MARK / 2).sum())
        self.seen = [*getattr(self, "seen", []), (self.current_epoch, len(x), marked, copy.deepcopy(batch))]
        return super().training_step(batch, batch_idx)


def system(cls=ClassificationSystem):
    torch.manual_seed(0)
    return cls(
        model="hcn", num_classes=12, layout="ntu25", model_kwargs={"variant": "compact", "width": 8, "feature_dim": 16, "dropout": 0.0},
        optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
        scheduler={"name": "constant"},
    )  # fmt: skip


def datamodule(tmp_path, batch_size=10):
    path = tiny_npz(tmp_path / "d.npz", num_per_class=5, frames=16)
    return SkeletonDataModule(name="d", path=str(path), window=12, batch_size=batch_size, augment={})


def trainer(callbacks, epochs=2, **kw):
    return pl.Trainer(
        accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=callbacks, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("ratio", [0.3, 0.5, 1.0])
def test_exact_fraction_replaced_from_start_epoch_on(tmp_path, ratio):
    model = system(Recorder)
    stub = StubAttack(model.classifier, "ntu25")
    trainer([AdversarialTraining(stub, ratio=ratio, start_epoch=1, layout="ntu25")]).fit(
        model, datamodule(tmp_path)
    )
    assert {e for e, _, _, _ in model.seen} == {0, 1}
    for epoch, n, marked, _ in model.seen:
        assert marked == (round(ratio * n) if epoch >= 1 else 0)


def test_pool_mode_draws_every_replaced_clip_from_the_pool(tmp_path):
    model = system(Recorder)
    stub = StubAttack(model.classifier, "ntu25")
    callback = AdversarialTraining(stub, ratio=0.5, mode="pool", pool_size=7, layout="ntu25")
    trainer([callback], epochs=2).fit(model, datamodule(tmp_path))
    assert len(callback.pool["y"]) == 7 and bool((callback.pool["x"] > MARK / 2).any())
    for epoch, n, marked, (x, y, _, _) in model.seen:
        assert marked == round(0.5 * n)
        if epoch == 0:
            continue  # the pool is regenerated every epoch: the callback holds the last epoch's
        # every marked clip is a clip of the pool, with its label
        for clip, label in zip(x, y, strict=True):
            if clip.amax() > MARK / 2:
                hits = (callback.pool["x"] == clip).flatten(1).all(1)
                assert hits.any() and bool((callback.pool["y"][hits] == label).all())


def test_pool_is_attacked_a_training_batch_at_a_time(tmp_path):
    """A pool larger than a batch is attacked in chunks of the training batch size, and every clip of the
    pool comes back attacked."""
    sizes = []

    class Sizes(StubAttack):
        def attack(self, x, y, lengths, target):
            sizes.append(len(y))
            return super().attack(x, y, lengths, target)

    model = system()
    callback = AdversarialTraining(
        Sizes(model.classifier, "ntu25"), ratio=0.5, mode="pool", pool_size=25, layout="ntu25"
    )
    trainer([callback], epochs=1).fit(model, datamodule(tmp_path, batch_size=10))
    assert sizes == [10, 10, 5]  # pool mode makes no per-batch attack calls
    assert len(callback.pool["y"]) == 25 and bool((callback.pool["x"].flatten(1).amax(1) > MARK / 2).all())


def test_one_step_equals_a_plain_step_on_the_modified_batch(tmp_path):
    model = system(Recorder)
    before = copy.deepcopy(model)
    stub = StubAttack(model.classifier, "ntu25")
    trainer([AdversarialTraining(stub, ratio=0.5, layout="ntu25")], epochs=1, max_steps=1).fit(
        model, datamodule(tmp_path)
    )
    ((_, _, marked, batch),) = model.seen
    assert marked == 5
    plain = before.train()
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    loss = plain.loss(plain(batch[0]), batch[1])
    opt.zero_grad()
    loss.backward()
    opt.step()
    for (name, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_real_attack_inside_training_keeps_the_model_training(tmp_path):
    """With a real attack in the loop, every parameter still learns from the loss and train mode comes back."""
    model = system()
    before = {k: v.clone() for k, v in model.named_parameters()}
    cb = AdversarialTraining({"name": "pgd", "eps": 0.02, "steps": 2}, ratio=0.5, layout="ntu25")
    trainer([cb], epochs=1, max_steps=2).fit(model, datamodule(tmp_path))
    assert model.training
    unchanged = [k for k, v in model.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged


class Kill(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("killed")


def test_killed_and_resumed_run_gives_the_same_weights(tmp_path, monkeypatch):
    """Augmentation, dropout, the adversarial clips and their choice all continue exactly after a resume."""
    import lightning_skel.run as run_module

    common = [
        # another attack in place of ADMM, as the README says: one override of the attack group
        "callbacks=adv_training", "attack@callbacks.adv_training.attack=pgd", "callbacks.adv_training.attack.steps=2",
        "trainer.deterministic=true", "callbacks.figures=null", "trainer.max_epochs=2",
    ]  # fmt: skip
    full = run_train(train_cfg(tmp_path / "full", common))
    build = run_module.build_callbacks
    monkeypatch.setattr(run_module, "build_callbacks", lambda *a, **k: [*build(*a, **k), Kill()])
    with pytest.raises(RuntimeError, match="killed"):
        run_train(train_cfg(tmp_path / "part", common))
    monkeypatch.setattr(run_module, "build_callbacks", build)
    part = run_train(train_cfg(tmp_path / "part", [*common, "ckpt_path=last"]))
    a = torch.load(full["last_checkpoint"], map_location="cpu", weights_only=True)
    b = torch.load(part["last_checkpoint"], map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] > 0
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], msg=key, rtol=0, atol=0)


def test_argument_errors():
    model = system()
    with pytest.raises(ValueError, match=r"AdversarialTraining: .*ratio must be in \(0, 1\], got 1.5"):
        AdversarialTraining("pgd", ratio=1.5)
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\], got 0"):
        AdversarialTraining("pgd", ratio=0)
    with pytest.raises(ValueError, match="start_epoch must be >= 0, got -1"):
        AdversarialTraining("pgd", start_epoch=-1)
    with pytest.raises(ValueError, match="pool_refresh_every must be >= 1, got 0"):
        AdversarialTraining("pgd", pool_refresh_every=0)
    with pytest.raises(ValueError, match="pool_size must be >= 1, got 0"):
        AdversarialTraining("pgd", pool_size=0)
    with pytest.raises(KeyError, match="unknown attack 'fgsm'"):
        AdversarialTraining("fgsm")
    with pytest.raises(ValueError, match="AdversarialTraining: attack: attack 'pgd' takes no max_iter"):
        AdversarialTraining({"name": "pgd", "max_iter": 10})
    with pytest.raises(
        ValueError, match=r"attack.targeted must be false \(training clips have no target labels\)"
    ):
        AdversarialTraining({"name": "pgd", "targeted": True})
    with pytest.raises(ValueError, match=r"attack.targeted must be false"):
        AdversarialTraining(StubAttack(model.classifier, "ntu25", targeted=True))
    with pytest.raises(ValueError, match="layout 'kinect20' differs from the data's 'ntu25'"):
        AdversarialTraining(StubAttack(model.classifier, "kinect20"), layout="ntu25")
    with pytest.raises(ValueError, match="mode must be one of"):
        AdversarialTraining("pgd", mode="stream")


def robust_system(**robust):
    torch.manual_seed(0)
    return ClassificationSystem(
        model="hcn", num_classes=12, layout="ntu25", model_kwargs={"variant": "compact", "width": 8, "feature_dim": 16, "dropout": 0.0},
        robust_training=robust,
    )  # fmt: skip


def batch_of(tmp_path, n=8):
    dm = datamodule(tmp_path, batch_size=n)
    dm.setup()
    x, y, lengths, index = next(iter(dm.train_dataloader()))
    x, lengths = dm.window_batch(x, lengths, train=False)
    return x, y, lengths, index


def test_pgd_inner_maximisation_stays_in_the_ball_and_raises_the_loss(tmp_path):
    model = robust_system(name="pgd_at", eps=0.05, steps=5)
    x, y, lengths, _ = batch_of(tmp_path)
    x_adv = model._inner_max(x, y, lengths)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6
    assert all(p.grad is None for p in model.parameters())  # gradients w.r.t. the input only
    assert model.classifier.training  # mode restored
    model.eval()
    ce = torch.nn.functional.cross_entropy
    assert ce(model(x_adv), y) > ce(model(x), y)
    absent = x == 0
    assert (x_adv[absent] == 0).all()


def test_trades_with_beta_zero_is_the_clean_loss(tmp_path):
    batch = batch_of(tmp_path)
    trades = robust_system(name="trades", beta=0.0)
    plain = robust_system()
    trades.log = plain.log = lambda *a, **k: None
    trades.log_dict = plain.log_dict = lambda *a, **k: None
    torch.testing.assert_close(trades.training_step(batch, 0), plain.training_step(batch, 0))
    pgd_at = robust_system(name="pgd_at", eps=0.05)
    pgd_at.log = pgd_at.log_dict = lambda *a, **k: None
    assert pgd_at.training_step(batch, 0) > plain.training_step(batch, 0)


def test_trades_gradients_finite_for_a_saturated_classifier(tmp_path):
    """A confident model's softmax underflows to exact zeros; the TRADES loss and its gradients stay finite
    (with probabilities as the KL target, the gradient through the clean side was NaN there)."""
    batch = batch_of(tmp_path)
    trades = robust_system(name="trades", beta=6.0, eps=0.02, steps=2)
    trades.log = trades.log_dict = lambda *a, **k: None
    with torch.no_grad():
        trades.classifier.net.fc.weight.mul_(1e4)  # logits hundreds apart: softmax has exact zeros
        assert (trades(batch[0]).softmax(1) == 0).any()
    loss = trades.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in trades.parameters() if p.grad is not None)


def test_robust_training_argument_errors():
    with pytest.raises(KeyError, match="unknown robust_training 'free_at'"):
        robust_system(name="free_at")
    with pytest.raises(ValueError, match="eps > 0"):
        robust_system(name="pgd_at", eps=0.0)


def test_ddp_two_processes_with_adversarial_training_and_robust_validation(tmp_path):
    """``train.py callbacks=adv_training trainer.strategy=ddp trainer.devices=2`` on CPU (gloo): ADMM clips
    replace half of every rank's batches, and robust validation sums its counts over both ranks."""
    import csv

    from tests.helpers import run_train_script

    metrics = run_train_script(
        tmp_path,
        [
            "callbacks=adv_training",
            "callbacks.adv_training.attack.max_iter=2",
            "callbacks.robust_validation.every_n_epochs=1",
            "callbacks.robust_validation.num_samples=6",
            "callbacks.robust_validation.attacks.admm.max_iter=2",
            "callbacks.robust_validation.attacks.autoattack.n_iter=2",
            "callbacks.robust_validation.attacks.autoattack.n_queries=2",
            "callbacks.figures=null",
            "trainer.max_epochs=1",
            "trainer.strategy=ddp",
            "trainer.devices=2",
        ],
    )
    assert "test/acc" in metrics
    (version,) = (tmp_path / "run" / "logs").iterdir()
    rows = list(csv.DictReader((version / "metrics.csv").open()))
    (train,) = [r for r in rows if r.get("train/adv_fraction")]
    assert float(train["train/adv_fraction"]) == pytest.approx(0.5)
    assert 0.0 <= float(train["train/adv_success"]) <= 1.0
    (val,) = [r for r in rows if r.get("val/robust_clips")]
    assert float(val["val/robust_clips"]) == 6  # 3 clips on each rank, summed
    assert float(val["val/robust_acc_admm"]) <= float(val["val/clean_acc_subset"])
    assert float(val["val/robust_acc_autoattack"]) <= float(val["val/clean_acc_subset"])


@pytest.mark.numerics
def test_ddp_pool_is_attacked_once_across_ranks_and_equals_one_process(tmp_path):
    """Pool mode under ``trainer.strategy=ddp trainer.devices=2``: each rank attacks its share of the pool
    (4 and 3 of 7 clips) and gathers the other's, so the pool every rank holds equals the one a single
    process makes, and the ranks together attack each clip once. The attack takes one clip at a time
    (``max_rows=1``) in both runs: a network's rounding depends on its batch's shape (the BLAS's kernels),
    and Adam's first step, ``lr * sign(g)``, turns a rounding-level gradient into a full step, so pools
    attacked 7 and 4 + 3 clips wide differ by up to 2 lr at a few entries. Both runs also take one thread
    per process (Lightning gives each of two DDP ranks on two cores one), since a reduction split over
    threads sums in another order. So the pools must be the same bits, and a clip attacked twice, by the
    wrong rank or gathered out of order is caught."""
    import csv

    from tests.helpers import run_train_script

    overrides = [
        "callbacks=adv_training",
        "callbacks.adv_training.mode=pool",
        "callbacks.adv_training.pool_size=7",
        "callbacks.adv_training.attack.max_iter=2",
        "callbacks.adv_training.attack.max_rows=1",
        "callbacks.figures=null",
        "trainer.max_epochs=1",
    ]
    runs = {}
    for name, extra in (("one", []), ("two", ["trainer.strategy=ddp", "trainer.devices=2"])):
        (tmp_path / name).mkdir()
        metrics = run_train_script(tmp_path / name, [*overrides, *extra], env={"OMP_NUM_THREADS": "1"})
        ckpt = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
        (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("AdversarialTraining")]
        (version,) = (tmp_path / name / "run" / "logs").iterdir()
        (row,) = [
            r for r in csv.DictReader((version / "metrics.csv").open()) if r.get("train/adv_pool_attacked")
        ]
        runs[name] = state["pool"], float(row["train/adv_pool_attacked"])
    (pool_one, attacked_one), (pool_two, attacked_two) = runs["one"], runs["two"]
    assert attacked_one == attacked_two == 7
    assert torch.equal(pool_one["y"], pool_two["y"]) and torch.equal(pool_one["lengths"], pool_two["lengths"])
    assert torch.equal(pool_two["x"], pool_one["x"])
