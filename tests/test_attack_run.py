import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_skel.attack_run import AttackRun, attack_rows, run_attack
from lightning_skel.attacks import ATTACKS, Attack
from lightning_skel.attacks.spec import AttackSpec
from lightning_skel.checkpoints import CheckpointError, load_classifier
from lightning_skel.data.datamodule import SkeletonDataModule
from lightning_skel.data.io import save_npz
from lightning_skel.data.synthetic import generate
from lightning_skel.run import run_train
from lightning_skel.sweep import short_file_name
from tests.helpers import LEARNT, attack_cfg, run_script, train_cfg

PGD = ["attack=pgd", "attack.eps=0.05", "attack.steps=5", "limit=10", "batch_size=4"]


# a victim that has learnt something (above chance on the tiny generated data), so that runs attack clips
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("victim")
    run_train(train_cfg(tmp, [*LEARNT, f"paths.cache_dir={tmp / 'cache'}"]))
    return tmp / "run" / "checkpoints" / "last.ckpt"


def load(out):
    with np.load(out / "adversarial.npz") as f:
        return {k: f[k] for k in f.files}


def test_attack_run_writes_every_output(tmp_path, ckpt):
    out = tmp_path / "a"
    metrics = run_attack(attack_cfg(out, ckpt, PGD))
    adv = load(out)
    assert adv["x"].shape == adv["x_clean"].shape  # x: the adversarial clips, x_clean: the clean ones
    assert adv["x"].shape[0] == 10
    assert set(adv) >= {"x", "x_clean", "y", "target", "pred_clean", "pred_adv", "success", "attacked", "lengths",
                        "index", "layout", "class_names"}  # fmt: skip
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    assert len(rows) == 10
    assert {"rms_mm", "delta_bone", "grad_evals", "forward_evals"} <= set(rows[0])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["success_rate"] == pytest.approx(metrics["success_rate"])
    assert "robust_accuracy_linf_mm_le_20" not in saved  # no budgets asked for
    assert "config" in saved
    assert "versions" in saved
    report = (out / "report.md").read_text()
    assert "distance_histograms.png" in report
    assert (out / "figures" / "success_vs_iterations.png").is_file()
    # only clips the clean model got right were attacked; the others are unchanged
    untouched = adv["pred_clean"] != adv["y"]
    assert np.array_equal(adv["x"][untouched], adv["x_clean"][untouched])


def test_square_queries_reach_per_sample_csv_and_metrics(tmp_path, ckpt):
    """A gradient-free attack's cost is its forward passes: Square's queries plus the clean labelling pass
    reach per_sample.csv's forward_evals (blank where a clip was not attacked), and metrics.json holds their
    means over the successful and the attacked clips. A clip Square fails on spent every query."""
    n_queries = 12
    out = tmp_path / "square"
    run_attack(attack_cfg(out, ckpt, ["attack=square", "attack.eps=0.05", f"attack.n_queries={n_queries}",
                                      "limit=10", "batch_size=5"]))  # fmt: skip
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    attacked = [r for r in rows if r["attacked"] == "1"]
    assert attacked, "the victim got no clip right"
    assert all(r["forward_evals"] == r["grad_evals"] == "" for r in rows if r["attacked"] == "0")
    assert all(r["grad_evals"] == "0" for r in attacked)
    evals = np.array([int(r["forward_evals"]) for r in attacked])
    won = np.array([r["success"] == "1" for r in attacked])
    assert ((evals >= 2) & (evals <= n_queries + 1)).all()
    assert (evals[~won] == n_queries + 1).all()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["forward_evals_all"] == pytest.approx(evals.mean())
    assert saved["forward_evals"] == (pytest.approx(evals[won].mean()) if won.any() else None)
    assert saved["grad_evals_all"] == 0


def test_autoattack_component_that_fooled_each_clip_reaches_csv_and_metrics(tmp_path, ckpt):
    """The attack's own per-clip values (its extras) become per_sample.csv columns: AutoAttack's component
    by name, blank where no component fooled the clip or it was not attacked; metrics.json counts the
    successes of each component, and the counts add up to the successes."""
    out = tmp_path / "aa"
    parts = ["apgd-ce", "square"]
    run_attack(attack_cfg(out, ckpt, ["attack=autoattack", "attack.eps=0.05", "attack.version=custom",
                                      f"attack.attacks=[{','.join(parts)}]", "attack.n_iter=3",
                                      "attack.n_queries=5", "limit=10", "batch_size=5"]))  # fmt: skip
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    assert any(r["attacked"] == "1" for r in rows), "the victim got no clip right"
    for r in rows:
        won = r["attacked"] == "1" and r["success"] == "1"
        assert (r["attack_component"] in parts) if won else r["attack_component"] == "", r
    saved = json.loads((out / "metrics.json").read_text())
    counts = {p: sum(r["attack_component"] == p for r in rows) for p in parts}
    assert {p: saved.get(f"component/{p}", 0) for p in parts} == counts
    assert sum(counts.values()) == sum(r["success"] == "1" for r in rows)


def test_admm_distance_reaches_per_sample_csv(tmp_path, ckpt):
    """ADMM's best distance D of a fooled clip is a number; a clip it never fooled (D inf) is blank."""
    out = tmp_path / "admm"
    run_attack(attack_cfg(out, ckpt, ["attack=admm", "attack.max_iter=3", "attack.delta_steps=2",
                                      "attack.z_steps=2", "limit=6", "batch_size=6"]))  # fmt: skip
    rows = [r for r in csv.DictReader((out / "per_sample.csv").open()) if r["attacked"] == "1"]
    assert rows, "the victim got no clip right"
    for r in rows:
        assert (float(r["attack_distance"]) >= 0) if r["success"] == "1" else r["attack_distance"] == "", r


def test_killed_run_resumes_to_identical_outputs(tmp_path, ckpt, monkeypatch):
    full = tmp_path / "full"
    run_attack(attack_cfg(full, ckpt, PGD))
    part = tmp_path / "part"
    original = AttackRun._attack_batch
    calls = []

    def dies_on_third(self, b, *args):
        calls.append(b)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return original(self, b, *args)

    monkeypatch.setattr(AttackRun, "_attack_batch", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_attack(attack_cfg(part, ckpt, PGD))
    assert sorted(p.name for p in (part / "shards").glob("batch_*.npz")) == [
        "batch_000000.npz",
        "batch_000001.npz",
    ]
    assert not (part / "adversarial.npz").exists()
    monkeypatch.setattr(AttackRun, "_attack_batch", original)
    calls.clear()
    run_attack(attack_cfg(part, ckpt, PGD))
    a, b = load(full), load(part)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_out_dir_with_another_runs_shards_is_refused(tmp_path, ckpt):
    out = tmp_path / "a"
    run_attack(attack_cfg(out, ckpt, PGD))
    with pytest.raises(ValueError, match="holds shards of another attack run"):
        run_attack(attack_cfg(out, ckpt, [*PGD, "attack.eps=0.01"]))


def killed_after(monkeypatch, cfg, batches: int) -> None:
    """Run ``cfg`` and kill it (KeyboardInterrupt) once ``batches`` batches have their shards."""
    original = AttackRun._attack_batch
    calls = []

    def dies(self, b, *args):
        calls.append(b)
        if len(calls) > batches:
            raise KeyboardInterrupt("killed")
        return original(self, b, *args)

    with monkeypatch.context() as m:
        m.setattr(AttackRun, "_attack_batch", dies)
        with pytest.raises(KeyboardInterrupt):
            run_attack(cfg)


def test_checkpoint_retrained_into_the_same_path_is_another_run(tmp_path, ckpt):
    """Other weights saved under the same path, of the same byte size, between a kill and the rerun: the
    run is identified by the checkpoint's content, so the old shards are refused."""
    victim = tmp_path / "victim.ckpt"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save(raw, victim)
    size = victim.stat().st_size
    out = tmp_path / "a"
    run_attack(attack_cfg(out, victim, PGD))
    for v in raw["state_dict"].values():
        if v.is_floating_point():
            v.add_(0.01)  # in place: the file's layout, and so its size, stays
    torch.save(raw, victim)
    assert victim.stat().st_size == size  # path and size, what a guard on them alone compares, are unchanged
    with pytest.raises(ValueError, match=r"holds shards of another attack run .*differs in ckpt_sha256"):
        run_attack(attack_cfg(out, victim, PGD))


def test_deleted_manifest_lets_the_shards_own_records_decide(tmp_path, ckpt, monkeypatch):
    """With ``manifest.json`` gone, shards of other settings are refused, naming a shard; under the same
    settings the run resumes to the outputs of an uninterrupted run."""
    full = tmp_path / "full"
    run_attack(attack_cfg(full, ckpt, PGD))
    part = tmp_path / "part"
    killed_after(monkeypatch, attack_cfg(part, ckpt, PGD), 2)
    (part / "shards" / "manifest.json").unlink()
    with pytest.raises(ValueError, match=r"attack shard .*batch_000000\.npz belongs to another attack run"):
        run_attack(attack_cfg(part, ckpt, [*PGD, "attack.eps=0.01"]))
    run_attack(attack_cfg(part, ckpt, PGD))
    a, b = load(full), load(part)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_swapped_shards_are_refused(tmp_path, ckpt):
    out = tmp_path / "a"
    run_attack(attack_cfg(out, ckpt, PGD))
    first, second = out / "shards" / "batch_000000.npz", out / "shards" / "batch_000001.npz"
    tmp = first.with_name("swap")
    first.rename(tmp)
    second.rename(first)
    tmp.rename(second)
    with pytest.raises(
        ValueError, match=r"attack shard .*batch_000000\.npz holds samples .* where batch 0 of this run has"
    ):
        run_attack(attack_cfg(out, ckpt, PGD))


@pytest.mark.parametrize("damage", ["empty", "torn"])
def test_damaged_shard_is_named_before_any_work(tmp_path, ckpt, monkeypatch, damage):
    """A zero-length shard (a rename that reached the disk before the data) or a torn one: the rerun names
    it and says to delete it, before attacking anything."""
    out = tmp_path / "a"
    killed_after(monkeypatch, attack_cfg(out, ckpt, PGD), 2)
    shard = out / "shards" / "batch_000001.npz"
    shard.write_bytes(b"" if damage == "empty" else shard.read_bytes()[:100])
    attacked = []
    monkeypatch.setattr(AttackRun, "_attack_batch", lambda self, b, *args: attacked.append(b))
    with pytest.raises(
        ValueError, match=rf"attack shard {re.escape(str(shard))} is unreadable .*delete it to recompute"
    ):
        run_attack(attack_cfg(out, ckpt, PGD))
    assert attacked == []


def test_admm_compile_enters_the_run_spec_only_when_on(tmp_path, ckpt):
    """``attack.compile=false``, ADMM's default, is left out of the run's fingerprint, so that runs begun
    before the option existed resume; ``compile=true`` rounds differently and is another run."""
    out = tmp_path / "a"
    admm = ["attack=admm", "attack.max_iter=2", "limit=4", "batch_size=4"]
    run_attack(attack_cfg(out, ckpt, admm))
    spec = json.loads((out / "metrics.json").read_text())["spec"]
    assert spec["attack_kwargs"]["max_iter"] == 2
    assert "compile" not in spec["attack_kwargs"]
    with pytest.raises(ValueError, match="holds shards of another attack run"):
        run_attack(attack_cfg(out, ckpt, [*admm, "attack.compile=true"]))


def test_attack_sweep_jobs_write_their_own_folders_and_resume(tmp_path, ckpt):
    """``attack.py -m``: a sweep over attack settings (the ablation's form) gives each job its own folder,
    ``out_dir/<job number>_<overrides>``, instead of the second job finding the first one's shards; rerun,
    each job finds its folder and its finished shards again and rewrites the same outputs."""
    out = tmp_path / "sweep"
    args = ["-m", f"ckpt={ckpt}", f"out_dir={out}", *PGD, "limit=6", "batch_size=3", "attack.eps=0.01,0.05"]
    lines = run_script("attack.py", args, tmp_path)
    assert sum(line.startswith("{") for line in lines) == 2
    jobs = {p.name: p for p in out.iterdir() if p.name[0].isdigit()}
    named = f"ckpt={short_file_name(str(ckpt))}"  # the checkpoint: a short form and a hash of its path
    assert sorted(jobs) == [f"0_attack.eps=0.01,attack.steps=5,attack=pgd,batch_size=3,{named},limit=6",
                            f"1_attack.eps=0.05,attack.steps=5,attack=pgd,batch_size=3,{named},limit=6"]  # fmt: skip
    first = {name: load(job) for name, job in jobs.items()}
    eps = [
        json.loads((job / "metrics.json").read_text())["spec"]["attack_kwargs"]["eps"]
        for job in jobs.values()
    ]
    assert sorted(eps) == [0.01, 0.05]
    assert not (out / "shards").exists()
    # the sweep's summary: a row per job, its overrides, folder and metrics
    (summary,) = out.glob("multirun/*/summary.csv")
    rows = list(csv.DictReader(summary.open()))
    assert [r["job"] for r in rows] == ["0", "1"] and all(r["status"] == "completed" for r in rows)
    for row in rows:
        job = Path(row["out_dir"])
        assert job.parent == out and f"attack.eps={eps_of(job.name)}" in row["overrides"].split(",")
        saved = json.loads((job / "metrics.json").read_text())
        assert float(row["success_rate"]) == pytest.approx(saved["success_rate"], rel=1e-3)
        if saved["rms_mm"] is None:  # none fooled: null in metrics.json, blank in the summary
            assert row["rms_mm"] == ""
        else:
            assert float(row["rms_mm"]) == pytest.approx(saved["rms_mm"], rel=1e-3)
    assert "| job | status | overrides |" in (summary.parent / "summary.md").read_text()
    shards = {p: p.stat().st_mtime_ns for job in jobs.values() for p in job.glob("shards/*")}
    run_script("attack.py", args, tmp_path)  # resumes: every shard is there, none is attacked again
    assert sorted(p.name for p in out.iterdir() if p.name[0].isdigit()) == sorted(jobs)
    assert shards and {p: p.stat().st_mtime_ns for p in shards} == shards
    for name, job in jobs.items():
        again = load(job)
        assert all(np.array_equal(again[k], first[name][k]) for k in first[name])


def eps_of(job_name: str) -> str:
    return job_name.split(",")[0].split("=")[1]


def test_bad_checkpoints_and_layouts_fail_before_work(tmp_path, ckpt):
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"weights": torch.zeros(3)}, bogus)
    with pytest.raises(CheckpointError, match="not a lightning_skel classifier checkpoint"):
        run_attack(attack_cfg(tmp_path / "o1", bogus, PGD))
    text = tmp_path / "text.ckpt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        run_attack(attack_cfg(tmp_path / "o2", text, PGD))
    other = save_npz(tmp_path / "k20.npz", generate(2, seed=0, frames=16, layout="kinect20"))
    with pytest.raises(
        ValueError, match="data layout 'kinect20' does not match the checkpoint's layout 'ntu25'"
    ):
        run_attack(attack_cfg(tmp_path / "o3", ckpt, [*PGD, f"data.path={other}"]))
    with pytest.raises(CheckpointError, match="not an emotion recognizer"):
        run_attack(attack_cfg(tmp_path / "o4", ckpt, [*PGD, f"emotion_ckpt={ckpt}"]))
    with pytest.raises(ValueError, match="eps must be > 0"):
        run_attack(attack_cfg(tmp_path / "o5", ckpt, [*PGD, "attack.eps=0"]))
    with pytest.raises(ValueError, match="budgets: 'linf' is not a distance metric"):
        run_attack(attack_cfg(tmp_path / "o6", ckpt, [*PGD, "budgets={linf: [20]}"]))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        run_attack(attack_cfg(tmp_path / "o7", ckpt, [*PGD, "batch_size=0"]))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):  # AttackRun used from Python
        AttackRun(torch.nn.Linear(1, 1), "ntu25", AttackSpec("pgd"), tmp_path / "o8", {}, batch_size=0)
    for name in ("o1", "o2", "o3", "o4", "o5", "o6", "o7"):
        assert not (tmp_path / name / "shards").exists() or not list(
            (tmp_path / name / "shards").glob("batch_*")
        )


def test_a_string_where_a_number_belongs_names_the_key(tmp_path):
    """Checked before the checkpoint is even read: each dotted key named (a TypeError named none)."""
    cfg = attack_cfg(tmp_path / "o", tmp_path / "none.ckpt", [*PGD, "attack.eps=abc", "batch_size=four"])
    with pytest.raises(ValueError, match="attack config: invalid setting") as e:
        run_attack(cfg)
    assert "attack.eps must be a number, got 'abc'" in str(e.value)
    assert "batch_size must be an integer, got 'four'" in str(e.value)
    assert not (tmp_path / "o").exists()


def test_empty_split_fails_before_work(tmp_path, ckpt):
    """An attacked split without clips is an error naming the data and the split (it was an IndexError in
    temporal_resample)."""
    cfg = attack_cfg(tmp_path / "o", ckpt, [*PGD, "data.split=val", "+data.val_fraction=0.0"])
    with pytest.raises(ValueError, match=r"data 'synthetic': the 'val' set is empty .*val_fraction=0.0"):
        run_attack(cfg)
    assert not (tmp_path / "o" / "shards").exists()


@pytest.mark.parametrize(
    "model_kwargs", [{"width": 9, "feature_dim": 32}, {"width": 16, "nonsense": 1}, {"width": "abc"}, "abc"]
)
def test_tampered_model_kwargs_name_the_checkpoint(tmp_path, ckpt, model_kwargs):
    """Hyper-parameters that do not rebuild the checkpoint's classifier (a size that does not match its
    weights, an unknown or mistyped argument) are refused naming the file (the tracebacks named none)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    state["hyper_parameters"]["model_kwargs"] = model_kwargs
    bad = tmp_path / "tampered.ckpt"
    torch.save(state, bad)
    with pytest.raises(
        CheckpointError, match=f"ckpt {bad}: its hyper-parameters do not rebuild its classifier"
    ):
        run_attack(attack_cfg(tmp_path / "o", bad, PGD))


class ShiftWrong(Attack):
    """Moves every valid coordinate by 10 mm (its L-infinity size) and claims a wrong label."""

    name = "test_shift_wrong"

    def __init__(self, model, layout, targeted=False, **ignored):
        super().__init__(model, layout, targeted)

    def attack(self, x, y, lengths, target):
        res = self.result(x + 0.01 * self.mask(x, lengths), y, target, grad_evals=torch.ones_like(y))
        res.pred_adv = (y + 1) % 12
        return res


def test_budgets_give_robust_accuracy_within_each_size(tmp_path, ckpt):
    """A 10 mm attack that fools every clip it attacks: within 5 mm L-infinity the robust accuracy is the
    clean accuracy, within 20 mm it is 0 (the arithmetic is tested by hand in test_distances_metrics)."""
    ATTACKS.register(ShiftWrong.name)(ShiftWrong)
    try:
        out = tmp_path / "b"
        overrides = [*PGD, "limit=null", "attack.name=test_shift_wrong", "budgets={linf_mm: [5, 20]}"]
        metrics = run_attack(attack_cfg(out, ckpt, overrides))
    finally:
        ATTACKS._items.pop(ShiftWrong.name)
    assert metrics["clean_accuracy"] > 0 and metrics["robust_accuracy"] == 0.0
    assert metrics["robust_accuracy_linf_mm_le_5"] == pytest.approx(metrics["clean_accuracy"])
    assert metrics["robust_accuracy_linf_mm_le_20"] == 0.0
    assert json.loads((out / "metrics.json").read_text())["robust_accuracy_linf_mm_le_5"] == pytest.approx(
        metrics["clean_accuracy"]
    )


def test_attack_rows_first_or_spread():
    assert attack_rows(10, None).tolist() == list(range(10))
    assert attack_rows(10, 3, "first").tolist() == [0, 1, 2]
    assert attack_rows(10, 4).tolist() == attack_rows(10, 4, "spread").tolist() == [0, 3, 6, 9]
    assert attack_rows(10, 1, "spread").tolist() == [0]
    assert attack_rows(10, 25, "spread").tolist() == list(range(10))
    spread = attack_rows(430, 64, "spread")
    assert len(set(spread.tolist())) == 64 and spread[0] == 0 and spread[-1] == 429
    with pytest.raises(ValueError, match="subset must be"):
        attack_rows(10, 3, "random")
    for bad in (0, 2.7, True):
        with pytest.raises(ValueError, match="limit must be an integer >= 1 or null"):
            attack_rows(10, bad)


def test_spread_subset_attacks_clips_across_the_split(tmp_path, ckpt):
    """``index`` is each clip's position in the source file: the spread run starts at the split's first clip,
    as the first-N run does, and reaches past the first run's last one. Spread is the default: the split is
    stored ordered by class, and the first N clips (``attack.py limit=32`` on UTD-MHAD) cover few classes."""
    run_attack(attack_cfg(tmp_path / "s", ckpt, [*PGD, "subset=spread"]))
    run_attack(attack_cfg(tmp_path / "f", ckpt, [*PGD, "subset=first"]))
    run_attack(attack_cfg(tmp_path / "d", ckpt, PGD))
    spread, first = load(tmp_path / "s")["index"], load(tmp_path / "f")["index"]
    assert len(spread) == len(set(spread.tolist())) == 10
    assert spread[0] == first[0] and spread.max() > first.max()
    np.testing.assert_array_equal(load(tmp_path / "d")["index"], spread)
    assert len(set(load(tmp_path / "d")["y"].tolist())) > len(set(load(tmp_path / "f")["y"].tolist()))
    with pytest.raises(ValueError, match="subset must be"):
        run_attack(attack_cfg(tmp_path / "bad", ckpt, [*PGD, "subset=random"]))


def test_targeted_run_reaches_targets(tmp_path, ckpt):
    out = tmp_path / "t"
    run_attack(
        attack_cfg(
            out, ckpt, ["attack=pgd", "attack.targeted=true", "attack.eps=0.1", "attack.steps=20", "limit=8"]
        )
    )
    adv = load(out)
    assert (adv["target"] != adv["y"]).all()
    assert (adv["target"] >= 0).all()
    ok = adv["success"]
    assert (adv["pred_adv"][ok] == adv["target"][ok]).all()


@pytest.mark.numerics
def test_ddp_two_processes_equal_single_process(tmp_path, ckpt):
    single, multi = tmp_path / "single", tmp_path / "multi"
    run_attack(attack_cfg(single, ckpt, PGD))
    run_attack(attack_cfg(multi, ckpt, [*PGD, "trainer.strategy=ddp_spawn", "trainer.devices=2"]))
    a, b = load(single), load(multi)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def bone_ckpt(tmp_path_factory):
    """A second classifier on the victim's data: the bone modality, another seed (a two-stream pair)."""
    tmp = tmp_path_factory.mktemp("bone")
    run_train(train_cfg(tmp, [*LEARNT, "model.modality=bone", "seed=1", f"paths.cache_dir={tmp / 'cache'}"]))
    return tmp / "run" / "checkpoints" / "last.ckpt"


def _scores(path, x):
    from lightning_skel.checkpoints import load_classifier

    with torch.no_grad():
        return load_classifier(path)[0](torch.as_tensor(x))


def test_fused_checkpoints_are_attacked_as_one_model(tmp_path, ckpt, bone_ckpt):
    """``ckpt=[a,b]`` attacks the sum of the two classifiers' scores: the clean and adversarial labels are
    the fusion's, the clips it gets right are fooled, the spec names both files, and ``fusion_weights``
    weigh the streams (``[1, 0]`` is the first classifier alone)."""
    out = tmp_path / "fused"
    run_attack(attack_cfg(out, f"[{ckpt},{bone_ckpt}]", [*PGD, "attack.eps=0.2", "attack.steps=20"]))
    adv = load(out)
    a, b = _scores(ckpt, adv["x_clean"]), _scores(bone_ckpt, adv["x_clean"])
    np.testing.assert_array_equal(adv["pred_clean"], (a + b).argmax(1).numpy())
    assert not np.array_equal((a + b).argmax(1).numpy(), a.argmax(1).numpy()), "the streams should disagree"
    fooled = _scores(ckpt, adv["x"]) + _scores(bone_ckpt, adv["x"])
    np.testing.assert_array_equal(adv["pred_adv"], fooled.argmax(1).numpy())
    right = adv["pred_clean"] == adv["y"]
    assert right.sum() >= 2 and adv["success"][right].all(), (
        "PGD should fool the fusion on the clips it gets right"
    )
    spec = json.loads((out / "metrics.json").read_text())["spec"]
    assert spec["ckpt"] == [str(ckpt.resolve()), str(bone_ckpt.resolve())]
    assert spec["fusion_weights"] == [1.0, 1.0]
    # other weights are another run: refused in the same out_dir, and [1, 0] is the first stream alone
    with pytest.raises(ValueError, match="holds shards of another attack run"):
        run_attack(attack_cfg(out, f"[{ckpt},{bone_ckpt}]", [*PGD, "fusion_weights=[1,0]"]))
    alone = tmp_path / "alone"
    run_attack(attack_cfg(alone, f"[{ckpt},{bone_ckpt}]", [*PGD, "fusion_weights=[1,0]"]))
    np.testing.assert_array_equal(load(alone)["pred_clean"], a.argmax(1).numpy())


def test_fusion_of_checkpoints_on_other_data_fails_before_work(tmp_path, ckpt, bone_ckpt):
    raw = torch.load(bone_ckpt, map_location="cpu", weights_only=True)
    raw["hyper_parameters"]["window"] = 32
    other = tmp_path / "other_window.ckpt"
    torch.save(raw, other)
    with pytest.raises(CheckpointError, match=r"cannot fuse .*other_window.ckpt .*window 32 != 16"):
        run_attack(attack_cfg(tmp_path / "o1", f"[{ckpt},{other}]", PGD))
    with pytest.raises(ValueError, match="fusion_weights: 1 weights for 2 checkpoints"):
        run_attack(attack_cfg(tmp_path / "o2", f"[{ckpt},{bone_ckpt}]", [*PGD, "fusion_weights=[1]"]))
    with pytest.raises(ValueError, match="fusion_weights weigh the streams of several checkpoints"):
        run_attack(attack_cfg(tmp_path / "o3", ckpt, [*PGD, "fusion_weights=[1]"]))
    for name in ("o1", "o2", "o3"):
        assert not (tmp_path / name / "shards").exists()


def test_sweep_over_attacks_summarises_in_one_folder(tmp_path, ckpt):
    """With ``out_dir`` naming the attack, a sweep over ``attack=`` writes each job under its attack's folder,
    and its summary, with both jobs, into the one sweep folder (the sweep's, not each job's reading of it)."""
    out = f"{tmp_path}/by_attack/" + "${attack.name}"
    # (the sweep composes with the default attack first, so only keys every attack has can be overridden)
    args = ["-m", f"ckpt={ckpt}", f"out_dir={out}", "attack=pgd,ifgsm", "limit=3", "batch_size=3"]
    run_script("attack.py", args, tmp_path)
    (summary,) = tmp_path.glob("by_attack/*/multirun/*/summary.csv")
    rows = list(csv.DictReader(summary.open()))
    assert [Path(r["out_dir"]).parent.name for r in rows] == ["pgd", "ifgsm"]
    assert all((Path(r["out_dir"]) / "metrics.json").is_file() for r in rows)


def test_sweep_summary_tables_the_rows_its_jobs_left(tmp_path):
    """The summary lists the jobs by number whatever order they ended in, a failed job with empty metrics,
    numbers to 4 significant digits; with no rows it writes nothing."""
    from lightning_skel.sweep import ROW_FILE, SweepSummary
    from lightning_skel.utils import write_json

    summary = SweepSummary(["success_rate", "rms_mm"])
    summary.write(tmp_path)
    assert not (tmp_path / "summary.csv").exists()
    write_json(tmp_path / "1" / ROW_FILE, {"job": 1, "status": "failed", "overrides": "attack.eps=-1",
                                           "out_dir": "o/1", "success_rate": None, "rms_mm": None})  # fmt: skip
    write_json(tmp_path / "0" / ROW_FILE, {"job": 0, "status": "completed", "overrides": "attack.eps=0.01",
                                           "out_dir": "o/0", "success_rate": 0.875, "rms_mm": 12.345678})  # fmt: skip
    summary.write(tmp_path)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["job"], r["status"], r["success_rate"], r["rms_mm"]) for r in rows] == [
        ("0", "completed", "0.875", "12.35"), ("1", "failed", "", "")]  # fmt: skip
    md = (tmp_path / "summary.md").read_text().splitlines()
    assert md[0] == "# Sweep of 2 jobs"
    assert md[4] == "| 0 | completed | attack.eps=0.01 | o/0 | 0.875 | 12.35 |"
    assert md[-1] == "![every job's metrics](summary.png)" and (tmp_path / "summary.png").stat().st_size > 0
    from lightning_skel.sweep import summary_figure

    fig = summary_figure(
        [{"job": 0, "a": 1.0, "b": None}, {"job": 1, "a": float("nan"), "b": None}], ["a", "b"]
    )
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["a"]  # b: no job has a value
    assert summary_figure([{"job": 0, "a": None}], ["a"]) is None


def test_attack_spec_is_the_attack_groups_entry():
    """A spec is an entry of configs/attack (name, targeted, settings) or a name: read into its parts, and
    each way to get one wrong refused naming the key and its reader."""
    spec = AttackSpec.parse({"name": "pgd", "targeted": True, "eps": 0.01, "steps": 3}, "attack", "attack.py")
    assert spec == AttackSpec("pgd", True, {"eps": 0.01, "steps": 3})
    assert AttackSpec.parse("cw") == AttackSpec("cw", False, {})
    attack = spec.build(torch.nn.Linear(1, 1), "ntu25", steps=4)  # what the run gives wins
    assert (attack.name, attack.targeted, attack.eps, attack.steps) == ("pgd", True, 0.01, 4)
    with pytest.raises(TypeError, match="attack.py: attack must be an attack's name or a mapping"):
        AttackSpec.parse(3, "attack", "attack.py")
    with pytest.raises(ValueError, match=r"cb: attack names no attack \(attack.name missing\); .*'admm'"):
        AttackSpec.parse({"eps": 0.01}, "attack", "cb")
    with pytest.raises(KeyError, match="unknown attack 'fgsm'; known: admm"):
        AttackSpec.parse({"name": "fgsm"})
    with pytest.raises(
        ValueError, match="cb: invalid setting.*attacks.pgd.targeted must be true or false, got 1"
    ):
        AttackSpec.parse({"name": "pgd", "targeted": 1}, "attacks.pgd", "cb")
    with pytest.raises(
        ValueError, match="cb: adv.attack: attack 'pgd' takes no lr, max_iter; its settings are "
    ):
        AttackSpec.parse({"name": "pgd", "max_iter": 10, "lr": 0.003}, "adv.attack", "cb")


def test_a_setting_the_attack_does_not_take_is_refused_before_any_work(tmp_path, ckpt):
    with pytest.raises(ValueError, match="attack.py: attack: attack 'pgd' takes no max_iter"):
        run_attack(attack_cfg(tmp_path / "o", ckpt, [*PGD, "+attack.max_iter=3"]))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ['"false"', "maybe", "0"])
def test_targeted_must_be_a_boolean(tmp_path, ckpt, value):
    """``attack.targeted="false"`` (a string) or ``=maybe`` ran a targeted attack (``bool()`` of a non-empty
    string): refused naming the key, before any work."""
    with pytest.raises(ValueError, match=r"attack.targeted must be true or false, got '?(false|maybe|0)'?"):
        run_attack(attack_cfg(tmp_path / "o", ckpt, [*PGD, f"attack.targeted={value}"]))
    assert not (tmp_path / "o" / "shards").exists()


def test_attack_booleans_are_refused_unless_booleans():
    """The attacks' own switches, from Python or a config, take true or false only."""
    from lightning_skel.attacks import build_attack

    model = torch.nn.Linear(1, 1)
    for name, key in (("pgd", "targeted"), ("pgd", "random_start"), ("pgd", "early_stop"), ("ifgsm", "early_stop"),
                      ("cw", "early_stop"), ("admm", "early_stop"), ("smart", "targeted")):  # fmt: skip
        with pytest.raises(
            ValueError, match=f"{name}: invalid .*{key} must be true(,| or) false.*, got 'false'"
        ):
            build_attack(name, model, "ntu25", **{key: "false"})


def test_emotion_recognizer_as_ckpt_is_refused(tmp_path):
    """An emotion recognizer given as ``ckpt`` was attacked as if it were the action classifier."""
    from hydra import compose, initialize_config_dir

    from tests.helpers import CONFIGS

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=synthetic_emotion", "model=emotion", "data.synthetic.num_per_class=4", "data.synthetic.frames=24",
            "data.window=16", "data.batch_size=8", "model.kwargs.channels=8", "model.kwargs.temporal_kernel=9",
            "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"out_dir={tmp_path / 'emo'}",
            f"paths.cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    emo = run_train(cfg)["last_checkpoint"]
    with pytest.raises(CheckpointError, match=rf"ckpt {emo}: an emotion recognizer .*emotion_ckpt="):
        run_attack(attack_cfg(tmp_path / "o", emo, PGD))
    assert not (tmp_path / "o" / "shards").exists()


def test_data_path_without_a_split_column_says_its_test_set_is_carved(tmp_path, ckpt, caplog):
    """The default split of a file without a split column is a carved part of it, which the run says (with
    the way to take every clip); a file whose split column holds test rows only is attacked as it is."""
    dm = SkeletonDataModule(**load_classifier(ckpt)[1]["data_config"])
    dm.setup()
    data = dm.data
    plain = save_npz(tmp_path / "plain.npz", {k: v for k, v in data.items() if k != "split"})
    with caplog.at_level("WARNING"):
        run_attack(attack_cfg(tmp_path / "a", ckpt, [*PGD, f"data.path={plain}"]))
    assert re.search(r"has no 'test' rows: its test set is carved out \(test_fraction=0.2 .*data.split=all",
                     caplog.text)  # fmt: skip
    caplog.clear()
    n = len(data["y"])
    only_test = save_npz(tmp_path / "test.npz", {**data, "split": np.full(n, "test")})
    with caplog.at_level("WARNING"):
        metrics = run_attack(attack_cfg(tmp_path / "b", ckpt, [*PGD, f"data.path={only_test}", "limit=null"]))
    assert metrics["num_samples"] == n and "carved" not in caplog.text


def test_data_path_with_other_class_names_is_refused(tmp_path, ckpt):
    """``data.path`` with as many classes as the checkpoint but other names would read the classifier's
    labels as other actions: refused naming the file and the first class that differs."""
    data = generate(4, seed=3, frames=24)
    names = list(data["class_names"])
    data["class_names"] = [*names[:3], "swim", *names[4:]]
    other = save_npz(tmp_path / "renamed.npz", data)
    with pytest.raises(
        ValueError, match=rf"data.path {other}: class 3 is 'swim' there and '{names[3]}' in the"
    ):
        run_attack(attack_cfg(tmp_path / "o", ckpt, [*PGD, f"data.path={other}"]))
    assert not (tmp_path / "o" / "shards").exists()


@pytest.mark.parametrize("limit", ["2.7", "0", "abc", "true"])
def test_limit_must_be_a_whole_number(tmp_path, ckpt, limit):
    """``limit=2.7`` attacked 2 clips: refused, like other non-integers, before any work."""
    with pytest.raises(ValueError, match=r"limit must be an integer( >= 1)? or null, got"):
        run_attack(attack_cfg(tmp_path / "o", ckpt, ["attack=pgd", f"limit={limit}"]))
    assert not (tmp_path / "o").exists()


def test_a_run_that_attacks_nothing_says_why(tmp_path, ckpt, caplog):
    """When the classifier gets every clip wrong nothing is attacked: the log and report.md say so and why,
    instead of a table of NaN."""
    source = generate(8, seed=0, frames=24)
    keep = source["y"] != 0
    wrong = {k: v[keep] if isinstance(v, np.ndarray) and v.shape[:1] == keep.shape else v
             for k, v in source.items()}  # fmt: skip
    raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    (bias,) = [k for k in raw["state_dict"] if k.endswith(".bias")][-1:]
    raw["state_dict"][bias][:] = -1e4
    raw["state_dict"][bias][0] = 1e4  # always class 0, which the data below never is
    biased = tmp_path / "class0.ckpt"
    torch.save(raw, biased)
    data = tmp_path / "no_class0.npz"
    save_npz(data, wrong)
    with caplog.at_level("WARNING"):
        metrics = run_attack(attack_cfg(tmp_path / "o", biased, [*PGD, f"data.path={data}"]))
    assert metrics["num_attacked"] == 0 and metrics["clean_accuracy"] == 0.0
    assert "nothing was attacked" in caplog.text and "none of the 10 clips" in caplog.text
    report = (tmp_path / "o" / "report.md").read_text()
    assert "Nothing was attacked" in report and "none of the 10 clips" in report
    assert "nan" not in report.lower()


def test_a_gait16_emotion_recognizer_reads_clips_of_another_layout(tmp_path):
    """``emotion_ckpt`` trained on gait16, attacked clips of ntu25: the recognizer is rebuilt for ntu25 (it
    maps its input onto gait16 itself) and gives the phi and logits of the gait16 recognizer on the clips
    mapped onto gait16; another classifier, or a recognizer of a third layout, is refused."""
    from lightning_skel.checkpoints import load_emotion
    from lightning_skel.skeleton.features import to_gait16
    from lightning_skel.systems import ClassificationSystem

    def saved(name, **kw):
        torch.manual_seed(0)
        system = ClassificationSystem(num_classes=4, num_persons=1, **kw).eval()
        torch.save(
            {"hyper_parameters": dict(system.hparams), "state_dict": system.state_dict()}, tmp_path / name
        )
        return system, tmp_path / name

    small = {"channels": 8, "temporal_kernel": 9, "affective_dim": 8, "feature_dim": 16}
    gait, path = saved("gait.ckpt", model="emotion", layout="gait16", normalize="none", model_kwargs=small)
    emotion = load_emotion(path, "ntu25")
    assert not any(p.requires_grad for p in emotion.parameters()) and not emotion.training
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        # the same operations in the same order, once the clip is on gait16: equal up to rounding
        torch.testing.assert_close(
            emotion.forward_features(x), gait.classifier.forward_features(to_gait16(x, "ntu25"))
        )
        torch.testing.assert_close(emotion(x), gait.classifier(to_gait16(x, "ntu25")))
    _, hcn = saved(
        "hcn.ckpt",
        model="hcn",
        layout="ntu25",
        model_kwargs={"variant": "compact", "width": 8, "feature_dim": 16},
    )
    with pytest.raises(
        CheckpointError, match=rf"emotion_ckpt {hcn}: a 'hcn' classifier, not an emotion recognizer"
    ):
        load_emotion(hcn, "ntu25")
    _, ntu = saved("ntu.ckpt", model="emotion", layout="ntu25", normalize="none", model_kwargs=small)
    with pytest.raises(
        CheckpointError, match=rf"emotion_ckpt {ntu}: trained on layout 'ntu25', which cannot take 'kinect20'"
    ):
        load_emotion(ntu, "kinect20")
