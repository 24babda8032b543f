import csv
import json
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import torch

from lightning_skel.run import build_datamodule, run_train
from lightning_skel.systems import ClassificationSystem
from tests.helpers import CONFIGS, run_script, tiny_train_overrides, train_cfg


def test_run_train_fast_dev_run_writes_checkpoint_and_metrics(tmp_path):
    cfg = train_cfg(tmp_path, ["+trainer.fast_dev_run=true"])
    metrics = run_train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert "test/acc_top5" in metrics
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test/acc"] == pytest.approx(metrics["test/acc"])
    assert (tmp_path / "run" / "logs").is_dir()


def test_checkpoint_describes_itself_and_resume_continues(tmp_path):
    cfg = train_cfg(tmp_path, ["trainer.max_epochs=1"])
    run_train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    system = ClassificationSystem.load_from_checkpoint(last, map_location="cpu")
    assert system.hparams.model == "hcn"
    assert system.hparams.layout == "ntu25"
    assert len(system.class_names) == 12
    x = torch.zeros(2, 3, 16, 25, 2)
    x[..., 0] = torch.randn(2, 3, 16, 25)
    assert system.eval()(x).shape == (2, 12)
    # resume: one more epoch from last.ckpt
    metrics = run_train(train_cfg(tmp_path, ["trainer.max_epochs=2", "ckpt_path=last"]))
    assert metrics["epochs"] == 2
    # the resumed run trained only the second epoch
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "version_1" / "metrics.csv").open()))
    assert {r["epoch"] for r in rows if r.get("train/loss")} == {"1"}


def test_multirun_jobs_write_their_own_folders(tmp_path):
    """``train.py -m``: each job of a sweep trains into its own folder under out_dir, named by its number and
    overrides (cut with a hash when long), instead of the jobs overwriting one checkpoint."""
    lines = run_script(
        "train.py", ["-m", *tiny_train_overrides(tmp_path), "trainer.max_epochs=1", "seed=0,1"], tmp_path
    )
    printed = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(printed) == 2
    jobs = sorted(p for p in (tmp_path / "run").iterdir() if p.name[0].isdigit())
    assert [p.name[:2] for p in jobs] == ["0_", "1_"]
    # the tiny overrides make a name over 120 characters: cut, and the two kept apart by their hashes
    assert [len(p.name) for p in jobs] == [120, 120] and jobs[0].name[2:] != jobs[1].name[2:]
    assert jobs[0].name.startswith("0_data.batch_size=8,data.synthetic.frames=24,")
    for job, metrics in zip(jobs, printed, strict=True):
        assert (job / "checkpoints" / "last.ckpt").is_file()
        saved = json.loads((job / "metrics.json").read_text())
        assert saved["test/acc"] == pytest.approx(metrics["test/acc"])
    assert not (tmp_path / "run" / "checkpoints").exists()
    (summary,) = (tmp_path / "run").glob("multirun/*/summary.csv")
    rows = list(csv.DictReader(summary.open()))
    assert [next(o for o in r["overrides"].split(",") if o.startswith("seed=")) for r in rows] == [
        "seed=0",
        "seed=1",
    ]
    assert [float(r["test/acc"]) for r in rows] == pytest.approx([m["test/acc"] for m in printed], rel=1e-3)
    assert [r["out_dir"] for r in rows] == [str(p) for p in jobs]


def test_multirun_of_ddp_jobs_needs_an_outside_launcher(tmp_path):
    """A sweep of DDP jobs started plainly would have Lightning rerun the whole sweep in each process it
    starts: refused with a clear error before any training (torchrun or SLURM, which start every process,
    are let through)."""
    args = ["-m", *tiny_train_overrides(tmp_path), "trainer.strategy=ddp", "trainer.devices=2", "seed=0,1"]
    err = "\n".join(run_script("train.py", args, tmp_path, fails=True))
    assert "a Hydra sweep (-m) of DDP jobs must be started by torchrun or SLURM" in err
    assert not list((tmp_path / "run").glob("*/checkpoints"))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        run_train(train_cfg(tmp_path, [f"ckpt_path={tmp_path / 'nope.ckpt'}"]))


def test_a_string_where_a_number_belongs_names_the_key(tmp_path):
    """Strings typed where numbers belong are refused before any work, naming each dotted key (they ended
    in a TypeError from deep inside the optimiser or the data loader that named none)."""
    cfg = train_cfg(tmp_path, ["optim.optimizer.lr=abc", "data.batch_size=four", "model.kwargs.dropout=[1]"])
    with pytest.raises(ValueError, match="train config: invalid setting") as e:
        run_train(cfg)
    for part in ("optim.optimizer.lr must be a number, got 'abc'", "data.batch_size must be an integer, got "
                 "'four'", "model.kwargs.dropout must be a number, got [1]"):  # fmt: skip
        assert part in str(e.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="trainer.max_epochs must be an integer or null, got 2.5"):
        run_train(train_cfg(tmp_path, ["trainer.max_epochs=2.5"]))


def test_shipped_configs_pass_the_number_check_and_every_rule_is_used():
    """The numbers check refuses only what is not a number: configs covering every model, optimiser,
    callback set and attack of configs/ pass it, and each of its rules checks a key of one of them (a
    misspelt rule would check nothing)."""
    from hydra import compose, initialize_config_dir

    from lightning_skel.attack_run import ATTACK_NUMBERS
    from lightning_skel.attacks.spec import ATTACK_KWARG_NUMBERS
    from lightning_skel.run import TRAIN_NUMBERS, check_config_numbers

    train = [[], ["callbacks=adv_training"], ["callbacks=noise"], ["experiment=utd_agcn_joint"], ["experiment=utd_sgn"],
             ["experiment=ntu60_xsub_stgcn"], ["experiment=demo_emotion"]]  # fmt: skip
    attacks = sorted(p.stem for p in (Path(CONFIGS) / "attack").glob("*.yaml"))
    checked = set()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        for overrides in train:
            checked |= set(check_config_numbers(compose("train", overrides), TRAIN_NUMBERS, str(overrides)))
        for attack in attacks:
            cfg = compose("attack", ["ckpt=x.ckpt", f"attack={attack}", "limit=4", "fusion_weights=[1, 0.5]"])
            checked |= set(check_config_numbers(cfg, ATTACK_NUMBERS, attack))

    def used(pattern: str) -> bool:
        p = pattern.split(".")
        return any(len(k.split(".")) == len(p) and all(map(fnmatchcase, k.split("."), p)) for k in checked)

    derived = {f"{p}{k}" for k in ATTACK_KWARG_NUMBERS
               for p in ("callbacks.adv_training.attack.", "callbacks.robust_validation.attacks.*.")}  # fmt: skip
    assert [p for p in {**TRAIN_NUMBERS, **ATTACK_NUMBERS} if p not in derived and not used(p)] == []
    assert any(k.startswith("callbacks.adv_training.attack.") for k in checked)
    assert any(k.startswith("callbacks.robust_validation.attacks.admm.") for k in checked)


def test_empty_test_split_is_refused_before_training(tmp_path):
    """A test set left empty (too few clips per class for test_fraction) is an error naming the data and
    the split before training (the run trained, then exited 0 with no test metrics)."""
    with pytest.raises(ValueError, match=r"data 'synthetic': the 'test' set is empty.*test_fraction=0.01"):
        run_train(train_cfg(tmp_path, ["data.test_fraction=0.01"]))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ckpt_path_on_a_plain_state_dict_is_a_clear_error(tmp_path):
    """ckpt_path resumes a run: a file without the run's state (a bare state_dict) is refused naming it
    (Lightning raised KeyError: 'pytorch-lightning_version')."""
    from lightning_skel.checkpoints import CheckpointError

    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), weights)
    with pytest.raises(CheckpointError, match=f"ckpt_path {weights}: not a lightning_skel classifier"):
        run_train(train_cfg(tmp_path, [f"ckpt_path={weights}"]))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_short_run_learns_generated_actions(tmp_path):
    """A small HCN on held-out generated clips: well above the 1/12 chance level after a short run."""
    cfg = train_cfg(
        tmp_path,
        [
            "data.synthetic.num_per_class=24",
            "data.synthetic.frames=32",
            "data.window=24",
            "data.batch_size=16",
            "data.val_fraction=0.1",
            "model.kwargs.width=32",
            "model.kwargs.feature_dim=128",
            "optim.optimizer.lr=0.003",
            "trainer.max_epochs=12",
        ],
    )
    metrics = run_train(cfg)
    chance = 1 / 12
    assert metrics["test/acc"] > chance + 0.4


def test_system_argument_errors():
    with pytest.raises(KeyError, match="unknown model 'resnet'; known: .*hcn"):
        ClassificationSystem(model="resnet", num_classes=3, layout="ntu25")
    with pytest.raises(KeyError, match="unknown optimizer"):
        ClassificationSystem(model="hcn", num_classes=3, layout="ntu25", optimizer={"name": "lbfgs"})
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationSystem(model="hcn", num_classes=3, layout="ntu25", label_smoothing=1.0)
    with pytest.raises(ValueError, match="2 class_names for num_classes=3"):
        ClassificationSystem(model="hcn", num_classes=3, layout="ntu25", class_names=["a", "b"])


def test_datamodule_from_config(tmp_path):
    dm = build_datamodule(train_cfg(tmp_path))
    dm.prepare_data()
    dm.setup()
    assert dm.window == 16
    assert sum(len(d) for d in dm.datasets.values()) == 48


def test_wandb_offline_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = train_cfg(tmp_path, ["logger=wandb", "trainer.max_epochs=1", "+trainer.limit_train_batches=2"])
    run_train(cfg)
    run = tmp_path / "run"
    assert list((run / "wandb").glob("offline-run-*")), "W&B wrote no offline run"
    for name in ("clips.png", "confusion_matrix.png", "per_class_accuracy.csv"):
        assert (run / "figures" / name).stat().st_size > 0
    rows = list(csv.DictReader((run / "figures" / "per_class_accuracy.csv").open()))
    assert len(rows) == 12
    assert sum(int(r["support"]) for r in rows) == 12  # 4 clips per class, test fraction 0.2 -> 1 each


@pytest.mark.numerics
def test_ddp_two_processes_metrics_equal_single_process(tmp_path):
    """``python train.py trainer.strategy=ddp trainer.devices=2`` on CPU (gloo), as a user runs it: training
    works, and its synchronised test metrics equal a single-process evaluation of the same checkpoint."""
    import pytorch_lightning as pl

    from tests.helpers import run_train_script

    ddp = run_train_script(tmp_path, ["trainer.max_epochs=1", "trainer.strategy=ddp", "trainer.devices=2"])
    cfg = train_cfg(tmp_path)
    dm = build_datamodule(cfg)
    dm.setup()
    assert len(dm.datasets["test"]) % 2 == 0  # no sampler padding: each clip counted once
    system = ClassificationSystem.load_from_checkpoint(ddp["best_checkpoint"], map_location="cpu")
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (res,) = single.test(system, datamodule=dm, verbose=False)
    assert res["test/acc"] == pytest.approx(ddp["test/acc"], abs=1e-6)
    assert res["test/loss"] == pytest.approx(ddp["test/loss"], rel=1e-5)


def test_init_from_starts_from_the_checkpoint_weights_and_refuses_another_model(tmp_path):
    from lightning_skel.checkpoints import CheckpointError
    from lightning_skel.run import build_system, init_weights

    run_train(train_cfg(tmp_path, ["trainer.max_epochs=1"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    source = ClassificationSystem.load_from_checkpoint(ckpt, map_location="cpu")
    cfg = train_cfg(tmp_path, ["seed=123"])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    fresh = build_system(cfg, dm)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.classifier.state_dict().values(),
                                                     source.classifier.state_dict().values(), strict=True))  # fmt: skip
    init_weights(fresh, str(ckpt))
    for (name, a), b in zip(
        fresh.classifier.state_dict().items(), source.classifier.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    other = ClassificationSystem(
        model="hcn", num_classes=12, layout="kinect20", model_kwargs={"variant": "compact", "width": 8, "feature_dim": 16},
        optimizer={"name": "adam", "lr": 1e-3}, scheduler={"name": "constant"},
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="init_from .*layout is 'ntu25'"):
        init_weights(other, str(ckpt))
    # and through train.py's config: a fine-tuning run starts from those weights (lr 0 keeps them)
    metrics = run_train(
        train_cfg(
            tmp_path,
            [
                "trainer.max_epochs=1",
                f"init_from={ckpt}",
                f"out_dir={tmp_path / 'ft'}",
                "optim.optimizer.lr=0.0",
            ],
        )
    )
    tuned = ClassificationSystem.load_from_checkpoint(metrics["last_checkpoint"], map_location="cpu")
    for (name, a), b in zip(tuned.classifier.named_parameters(), source.classifier.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_accuracy_equals_lightning_test_and_fuses_only_the_same_data(tmp_path):
    from lightning_skel.checkpoints import CheckpointError
    from lightning_skel.run import checkpoint_accuracy

    metrics = run_train(train_cfg(tmp_path, ["trainer.max_epochs=2"]))
    best = metrics["best_checkpoint"]
    assert checkpoint_accuracy(best) == pytest.approx(metrics["test/acc"], abs=1e-6)
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["data_name"] = "another_dataset"
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    with pytest.raises(CheckpointError, match="cannot fuse .*data_name 'another_dataset'"):
        checkpoint_accuracy(best, str(other))


def _epochs(run) -> list[dict]:
    """The validation rows of a run's CSV log, one per epoch."""
    (version,) = sorted((run / "logs").iterdir())
    return [r for r in csv.DictReader((version / "metrics.csv").open()) if r.get("val/acc")]


def test_tied_validation_accuracy_is_broken_by_validation_loss_and_named(tmp_path):
    """A small validation split cannot tell epochs apart by accuracy (UTD-MHAD's 54 clips saturate at 1.0
    early; here 24 clips sit at one accuracy while the loss falls): the default selection keeps, among the
    epochs of the best val/acc, the one of the lowest val/loss instead of the first one, and the final
    metrics name the checkpoint they are of, its epoch and its validation metrics."""
    metrics = run_train(train_cfg(tmp_path, ["trainer.max_epochs=8", "optim.optimizer.lr=0.01",
                                             "data.synthetic.num_per_class=6"]))  # fmt: skip
    epochs = _epochs(tmp_path / "run")
    acc = [float(r["val/acc"]) for r in epochs]
    loss = [float(r["val/loss"]) for r in epochs]
    first = acc.index(max(acc))
    ties = [e for e in range(len(acc)) if acc[e] == max(acc)]
    assert min(loss[e] for e in ties) < loss[first], "the run should tie val/acc with a falling val/loss"
    chosen = min(ties, key=lambda e: loss[e])
    assert chosen != first
    assert metrics["tested_checkpoint"] == metrics["best_checkpoint"]
    assert metrics["tested_checkpoint"].endswith(f"best-{chosen:03d}.ckpt")
    assert metrics["tested_epoch"] == chosen
    assert metrics["best_val/acc"] == pytest.approx(acc[chosen])
    assert metrics["best_val/loss"] == pytest.approx(loss[chosen])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["tested_checkpoint"] == metrics["tested_checkpoint"]
    # the test metrics are those of that checkpoint
    from lightning_skel.run import checkpoint_accuracy

    assert checkpoint_accuracy(metrics["tested_checkpoint"]) == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_without_validation_the_last_weights_are_tested_and_named(tmp_path):
    metrics = run_train(train_cfg(tmp_path, ["trainer.max_epochs=1", "data.val_fraction=0.0"]))
    assert metrics["best_checkpoint"] is None
    assert metrics["tested_checkpoint"] == metrics["last_checkpoint"]
    assert metrics["tested_epoch"] == 0


def test_init_from_loads_weights_only_not_the_random_state(tmp_path):
    """``init_from`` takes the classifier weights alone: the random state the checkpoint saved (for resuming)
    is not restored over this run's ``seed``, so fine-tunes with other seeds differ."""
    from lightning_skel.run import build_system, init_weights

    run_train(train_cfg(tmp_path, ["trainer.max_epochs=1"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = train_cfg(tmp_path)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    system = build_system(cfg, dm)
    after = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        init_weights(system, str(ckpt))
        after.append(torch.get_rng_state())
    assert not torch.equal(*after), "init_from replaced the seeded random state by the checkpoint's"
    tuned = []
    for seed in (1, 2):  # data.seed fixed: only the global generator (dropout, shuffling) differs
        out = tmp_path / f"ft{seed}"
        m = run_train(train_cfg(tmp_path, ["trainer.max_epochs=1", f"init_from={ckpt}", f"out_dir={out}",
                                           f"seed={seed}", "data.seed=0"]))  # fmt: skip
        tuned.append(ClassificationSystem.load_from_checkpoint(m["last_checkpoint"], map_location="cpu"))
    a, b = (dict(t.classifier.named_parameters()) for t in tuned)
    assert any(not torch.equal(a[k], b[k]) for k in a), "seed=1 and seed=2 fine-tuned identically"


def test_init_from_of_other_model_settings_is_a_clear_error(tmp_path):
    """A checkpoint of the same model with other sizes (the README's fine-tune after another training)
    fails naming init_from and both settings, not with load_state_dict's size-mismatch traceback."""
    from lightning_skel.checkpoints import CheckpointError

    run_train(train_cfg(tmp_path, ["trainer.max_epochs=1"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = train_cfg(tmp_path, [f"init_from={ckpt}", "model.kwargs.width=16", f"out_dir={tmp_path / 'ft'}"])
    with pytest.raises(CheckpointError) as err:
        run_train(cfg)
    msg = str(err.value)
    assert f"init_from {ckpt}" in msg
    assert "'width': 8" in msg and "'width': 16" in msg and "hcn" in msg
    assert not (tmp_path / "ft" / "checkpoints").exists()


def test_diverged_run_stops_with_a_clear_error_and_saves_no_checkpoint(tmp_path):
    """lr 1e30 makes the loss NaN: train.py stops with a message naming the divergence and a non-zero exit
    code, and no checkpoint of the diverged weights is saved (as best or as last)."""
    err = "\n".join(run_script("train.py", [*tiny_train_overrides(tmp_path), "trainer.max_epochs=2",
                                            "optim.optimizer.lr=1e30"], tmp_path, fails=True))  # fmt: skip
    assert "training diverged: train/loss is" in err and "optim.optimizer.lr" in err
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_max_epochs_zero_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"trainer.max_epochs must be an integer >= 1, got 0"):
        run_train(train_cfg(tmp_path, ["trainer.max_epochs=0"]))
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_checkpoint_accuracy_on_an_empty_split_names_it(tmp_path):
    """One synthetic clip per class leaves the test split empty: a clear error, not a ZeroDivisionError."""
    from lightning_skel.run import checkpoint_accuracy

    synthetic = {"num_per_class": 1, "frames": 16, "seed": 0, "layout": "kinect20"}
    data = {"name": "synthetic", "synthetic": synthetic, "window": 16}
    sgn = ClassificationSystem("sgn", 12, "kinect20", window=16, data_config=data)
    ckpt = tmp_path / "sgn.ckpt"
    torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, ckpt)
    with pytest.raises(ValueError, match=r"the test split of .*sgn\.ckpt's data has no clips"):
        checkpoint_accuracy(str(ckpt))
