"""What an attack run writes feeds back and parses: adversarial.npz is a skeleton npz, metrics.json strict
JSON, per_sample.csv blank where nothing was measured, one median, and sweep rows that name their files."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lightning_skel.attack_run import run_attack
from lightning_skel.attacks.metrics import attack_metrics, median
from lightning_skel.checkpoints import load_classifier
from lightning_skel.data.datamodule import SkeletonDataModule
from lightning_skel.data.io import load_npz, save_npz
from lightning_skel.report import histogram_figure, write_per_sample_csv
from lightning_skel.run import run_train
from lightning_skel.sweep import job_overrides, short_file_name
from tests.helpers import CONFIGS, LEARNT, attack_cfg, run_script, train_cfg
from tests.test_attack_run import PGD


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("victim")
    run_train(train_cfg(tmp, [*LEARNT, f"paths.cache_dir={tmp / 'cache'}"]))
    return tmp / "run" / "checkpoints" / "last.ckpt"


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def victim_data(ckpt: Path) -> dict:
    dm = SkeletonDataModule(**load_classifier(ckpt)[1]["data_config"])
    dm.setup()
    return dm.data


def test_adversarial_npz_loads_trains_and_is_attacked_again(tmp_path, ckpt):
    """adversarial.npz is a skeleton npz: ``x`` the adversarial clips (``x_clean`` the clean ones), the
    source's layout, class names and per-clip facts; a training run reads it, and attacked again, the
    checkpoint's clean predictions on it are the first run's adversarial ones."""
    out = tmp_path / "a"
    run_attack(
        attack_cfg(out, ckpt, [*PGD, "data.split=train", "limit=48", "subset=spread", "batch_size=16"])
    )
    adv = load_npz(out / "adversarial.npz")
    source = victim_data(ckpt)
    assert adv["layout"] == source["layout"] and adv["class_names"] == source["class_names"]
    assert adv["x"].shape == adv["x_clean"].shape and adv["x"].shape[:3] == (48, 3, 16)
    rows = adv["index"]
    for key in ("y", "subject", "view", "emotion"):
        np.testing.assert_array_equal(adv[key], source[key][rows], err_msg=key)
    assert adv["emotion_names"] == source["emotion_names"]
    won, kept = adv["success"] & adv["attacked"], ~adv["attacked"]
    assert won.sum() >= 4 and kept.sum() >= 1
    assert (np.abs(adv["x"] - adv["x_clean"]).reshape(48, -1).max(1)[won] > 0).all()
    np.testing.assert_array_equal(adv["x"][kept], adv["x_clean"][kept])

    again = tmp_path / "again"
    run_attack(attack_cfg(again, ckpt, [*PGD, f"data.path={out / 'adversarial.npz'}", "data.split=all",
                                        "limit=null"]))  # fmt: skip
    second = load_npz(again / "adversarial.npz")
    assert second["index"].tolist() == list(range(48))  # split all: every clip of the file
    np.testing.assert_array_equal(second["x_clean"], adv["x"][second["index"]])  # read back unchanged
    np.testing.assert_array_equal(second["pred_clean"], adv["pred_adv"][second["index"]])

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[
            f"out_dir={tmp_path / 'train'}", f"paths.cache_dir={tmp_path / 'cache'}", "data=npz",
            f"data.path={out / 'adversarial.npz'}", "data.window=16", "data.batch_size=8",
            "data.val_fraction=0.25", "data.test_fraction=0.25", "model.kwargs.variant=compact", "model.kwargs.width=8",
            "model.kwargs.feature_dim=16", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"])  # fmt: skip
    metrics = run_train(cfg)
    assert metrics["epochs"] == 2 and 0 <= metrics["test/acc"] <= 1
    assert Path(metrics["last_checkpoint"]).is_file()


def test_a_clip_at_the_window_is_its_own_resampling():
    """Evaluation's resampling leaves a clip of ``window`` valid frames bit for bit as it is (interpolating
    would round it by up to ~1e-5 m, enough to move a minimum-distance adversarial clip back across the
    decision boundary); shorter clips are resampled as before."""
    from lightning_skel.data.transforms import temporal_resample

    x = torch.randn(3, 3, 64, 25, 2)
    lengths = torch.tensor([64, 40, 64])
    out, _ = temporal_resample(x, lengths, 64)
    assert torch.equal(out[[0, 2]], x[[0, 2]])
    assert not torch.equal(out[1], x[1])
    resampled, _ = temporal_resample(x[1:2, :, :40], lengths[1:2], 64)
    assert torch.equal(out[1], resampled[0])


def test_metrics_json_of_an_empty_attack_is_strict_json(tmp_path, ckpt):
    """Clips relabelled so that the classifier gets every one wrong: nothing is attacked, the undefined
    metrics are null in metrics.json (no NaN, which strict parsers refuse), and per_sample.csv is blank
    wherever nothing was measured."""
    first = tmp_path / "first"
    run_attack(attack_cfg(first, ckpt, [*PGD, "limit=12", "batch_size=6"]))
    with np.load(first / "adversarial.npz") as f:
        rows, pred_clean = f["index"], f["pred_clean"]
    source = victim_data(ckpt)
    k = len(source["class_names"])
    wrong = {"x": source["x"][rows], "y": (pred_clean + 1) % k, "lengths": source["lengths"][rows],
             "layout": source["layout"], "class_names": source["class_names"]}  # fmt: skip
    path = save_npz(tmp_path / "all_wrong.npz", wrong)
    out = tmp_path / "empty"
    metrics = run_attack(attack_cfg(out, ckpt, [*PGD, f"data.path={path}", "data.split=train", "limit=null"]))
    assert metrics["num_samples"] > 0 and metrics["num_attacked"] == 0
    saved = strict_json((out / "metrics.json").read_text())
    assert saved["num_attacked"] == 0 and saved["clean_accuracy"] == 0.0
    assert saved["success_rate"] is None and saved["rms_mm"] is None and saved["rms_mm_median"] is None
    table = list(csv.DictReader((out / "per_sample.csv").open()))
    assert table and all(r["attacked"] == "0" for r in table)
    blank = ("rms_mm", "linf_mm", "success", "grad_evals", "forward_evals", "target")
    assert all(r[k] == "" for r in table for k in blank)


def test_one_median_the_true_one():
    """The median of an even count is the mean of the two middle values (torch's ``Tensor.median`` gives
    the lower one), in metrics.json's ``*_median`` and in the report's histograms alike."""
    assert median(torch.tensor([3.0, 1.0, 10.0, 2.0])) == 2.5
    assert median(np.array([4.0, 1.0, 2.0])) == 2.0
    assert math.isnan(median(np.zeros(0)))
    y = torch.zeros(5, dtype=torch.long)
    pred_adv = torch.tensor([1, 1, 1, 1, 0])  # the last clip withstands: left out of the distances
    rms = torch.tensor([3.0, 1.0, 10.0, 2.0, 100.0])
    m = attack_metrics(None, None, None, "ntu25", y, y, pred_adv, per_sample={"rms_mm": rms})
    assert m["rms_mm_median"] == 2.5 and m["rms_mm"] == 4.0
    merged = {"success": (pred_adv != y).numpy(), "attacked": np.ones(5, bool)}
    merged.update({f"m_{k}": rms.numpy() for k in ("rms_mm", "delta_bone", "delta_angle_deg", "delta_speed")})
    legend = histogram_figure(merged).axes[0].get_legend().get_texts()[0].get_text()
    assert legend == "median 2.5"


def test_histograms_of_float32_values_a_few_ulps_apart():
    """A run whose clips all moved by the same size (SMART's fixed step per frame, two steps each) stores
    float32 sizes a few ulps apart; numpy (2.x) cannot place 21 float32 bin edges in that range, so the
    histograms bin them in float64. Every clip lands in a bin, whatever numpy does with float32 edges."""
    base = np.float32(40.249226)
    rms = np.nextafter(base, np.float32(np.inf)) * np.ones(63, np.float32)
    rms[::2] = base
    merged = {"success": np.ones(63, bool), "attacked": np.ones(63, bool)}
    merged.update({f"m_{k}": rms for k in ("rms_mm", "delta_bone", "delta_angle_deg", "delta_speed")})
    ax = histogram_figure(merged).axes[0]
    assert sum(patch.get_height() for patch in ax.patches) == 63


def test_histograms_of_a_run_that_did_not_record_a_metric():
    """A metric missing from the merged shards leaves its panel empty and says so; the others are drawn."""
    won = np.ones(4, bool)
    merged = {"success": won, "attacked": won, "m_rms_mm": np.array([1.0, 2.0, 3.0, 4.0])}
    rms_ax, bone_ax, *_ = histogram_figure(merged).axes
    assert sum(patch.get_height() for patch in rms_ax.patches) == 4
    assert bone_ax.get_title() == "not recorded" and not bone_ax.patches


def test_per_sample_csv_names_classes_and_leaves_the_unmeasured_blank(tmp_path):
    merged = {
        "index": np.array([7, 3, 5]), "y": np.array([0, 1, 2]), "target": np.array([-1, -1, -1]),
        "pred_clean": np.array([0, 1, 0]), "pred_adv": np.array([2, 1, 0]),
        "attacked": np.array([True, True, False]), "success": np.array([True, False, False]),
        "grad_evals": np.array([12, 40, 0]), "forward_evals": np.array([2, 3, 1]),
        "m_rms_mm": np.array([4.25, 9.5, 0.0], np.float32),
        "m_emotion_distance": np.array([np.nan, 0.5, 0.0], np.float32),
    }  # fmt: skip
    names = np.array(["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"])
    source = {"class_names": ["walk", "run", "jump"], "sample_name": names}
    write_per_sample_csv(tmp_path / "p.csv", merged, source)
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [(r["index"], r["sample_name"], r["y_name"], r["pred_adv_name"]) for r in rows] == [
        ("7", "s7", "walk", "jump"), ("3", "s3", "run", "run"), ("5", "s5", "jump", "walk")]  # fmt: skip
    assert [(r["success"], r["grad_evals"], r["forward_evals"], r["rms_mm"], r["emotion_distance"]) for r in rows] == [
        ("1", "12", "2", "4.25", ""), ("0", "40", "3", "9.5", "0.5"), ("", "", "", "", "")]  # fmt: skip
    assert all(r["target"] == r["target_name"] == "" for r in rows)
    merged["target"] = np.array([1, 2, 0])
    write_per_sample_csv(tmp_path / "t.csv", merged, {"class_names": ["walk", "run", "jump"]})
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [(r["target"], r["target_name"], r["sample_name"]) for r in rows] == [
        ("1", "run", ""), ("2", "jump", ""), ("0", "walk", "")]  # fmt: skip


def hydra_node(task: list[str], exclude: list[str]):
    return OmegaConf.create({"overrides": {"task": task}, "job": {"config": {"override_dirname": {
        "kv_sep": "=", "item_sep": ",", "exclude_keys": exclude}}}})  # fmt: skip


def test_sweep_names_name_every_file_by_a_short_form_and_a_hash(tmp_path):
    """Two checkpoints of the same file name in other folders: the job names tell them apart, readably;
    the keys the config excludes that name no input (out_dir, caches) stay out; without files, a name is
    Hydra's ``override_dirname``."""
    exclude = ["out_dir", "ckpt", "emotion_ckpt", "data.path", "paths.cache_dir"]
    a, b = tmp_path / "a/run/checkpoints/last.ckpt", tmp_path / "b/run/checkpoints/last.ckpt"
    name_a = job_overrides(
        hydra_node([f"ckpt={a}", "attack.eps=0.1", f"out_dir={tmp_path}", "limit=4"], exclude)
    )
    name_b = job_overrides(
        hydra_node([f"ckpt={b}", "attack.eps=0.1", f"out_dir={tmp_path}", "limit=4"], exclude)
    )
    assert name_a != name_b
    assert name_a == f"attack.eps=0.1,ckpt={short_file_name(str(a))},limit=4"
    assert short_file_name(str(a)).startswith("run.last-") and "/" not in name_a
    fused = short_file_name([str(a), str(b)])
    assert fused.startswith("run.last+run.last-") and fused != short_file_name([str(b), str(a)])
    assert job_overrides(hydra_node([f"ckpt=[{a},{b}]"], exclude)) == f"ckpt={fused}"
    plain = ["attack.weights.bone=0", "attack=pgd", f"paths.cache_dir={tmp_path}"]
    assert job_overrides(hydra_node(plain, exclude)) == "attack.weights.bone=0,attack=pgd"


def test_sweep_over_checkpoints_tells_the_jobs_apart(tmp_path, ckpt):
    """``attack.py -m ckpt=A,B``, two files both ``run/checkpoints/last.ckpt``: a folder each, summary rows
    whose overrides name each checkpoint, and the clean accuracy of each."""
    copies = []
    for part in ("a", "b"):
        copy = tmp_path / part / "run" / "checkpoints" / "last.ckpt"
        copy.parent.mkdir(parents=True)
        shutil.copy(ckpt, copy)
        copies.append(copy)
    out = tmp_path / "sweep"
    args = ["-m", f"ckpt={copies[0]},{copies[1]}", f"out_dir={out}", *PGD, "limit=4"]
    run_script("attack.py", args, tmp_path)
    jobs = sorted(p.name for p in out.iterdir() if p.name[0].isdigit())
    assert jobs == [f"{n}_attack.eps=0.05,attack.steps=5,attack=pgd,batch_size=4,ckpt={short_file_name(str(c))},"
                    "limit=4" for n, c in enumerate(copies)]  # fmt: skip
    (summary,) = out.glob("multirun/*/summary.csv")
    rows = list(csv.DictReader(summary.open()))
    assert len({r["overrides"] for r in rows}) == 2
    for row, copy in zip(rows, copies, strict=True):
        assert f"ckpt={short_file_name(str(copy))}" in row["overrides"]
        saved = json.loads((Path(row["out_dir"]) / "metrics.json").read_text())
        assert float(row["clean_accuracy"]) == pytest.approx(saved["clean_accuracy"], rel=1e-3)
