"""Transfer evaluation: each target labels the adversarial clips through its own input function; a target that
is the source itself gives the white-box success rate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lightning_skel.attack_run import run_attack
from lightning_skel.run import run_train
from lightning_skel.transfer import (
    evaluate_file,
    main,
    read_clips,
    target_names,
    transfer_metrics,
    transferred,
)
from tests.helpers import LEARNT, attack_cfg, train_cfg

PGD = ["attack=pgd", "attack.steps=3", "attack.eps=0.05", "limit=10", "batch_size=4"]


@pytest.fixture(scope="module")
def two_ckpts(tmp_path_factory):
    """Two tiny HCNs trained on the same generated data with different seeds."""
    out = []
    for seed in (0, 1):
        tmp = tmp_path_factory.mktemp(f"model{seed}")
        run_train(train_cfg(tmp, [*LEARNT, f"seed={seed}", f"paths.cache_dir={tmp / 'cache'}"]))
        out.append(tmp / "run" / "checkpoints" / "last.ckpt")
    return out


@pytest.fixture(scope="module")
def attacked_run(tmp_path_factory, two_ckpts):
    out = tmp_path_factory.mktemp("attack") / "pgd"
    run_attack(attack_cfg(out, two_ckpts[0], PGD))
    return out


def test_transferred_is_the_attack_goal():
    y, target = np.array([0, 0, 1, 1]), np.array([-1, -1, 2, 2])
    pred = np.array([0, 3, 2, 1])
    assert transferred(pred, y, target).tolist() == [False, True, True, False]
    m = transfer_metrics({"a": pred}, y, target, np.array([True, True, True, False]))
    assert m["transfer/a/success_rate"] == pytest.approx(2 / 3)  # over the attacked clips only
    assert m["transfer/a/num_attacked"] == 3


def test_target_names_from_run_folders_and_refused_duplicates():
    assert target_names(["r/utd_hcn/checkpoints/last.ckpt", "x=a.ckpt", "b.ckpt"]) == {
        "utd_hcn": "r/utd_hcn/checkpoints/last.ckpt", "x": "a.ckpt", "b": "b.ckpt"}  # fmt: skip
    with pytest.raises(ValueError, match="given twice"):
        target_names(["a/last.ckpt", "b/last.ckpt"])
    with pytest.raises(ValueError, match="NAME=CHECKPOINT"):
        target_names(["bad name=a.ckpt"])


def test_the_source_as_target_gives_the_white_box_success(attacked_run, two_ckpts, tmp_path):
    metrics = evaluate_file(attacked_run / "adversarial.npz", [f"src={two_ckpts[0]}", f"other={two_ckpts[1]}"],
                            tmp_path)  # fmt: skip
    white = json.loads((attacked_run / "metrics.json").read_text())
    assert metrics["transfer/src/success_rate"] == pytest.approx(white["success_rate"])
    assert metrics["transfer/src/num_attacked"] == white["num_attacked"]
    assert metrics["transfer/src/clean_accuracy"] == 1.0  # only clips the source got right are attacked
    rows = list(csv.DictReader((tmp_path / "transfer.csv").open()))
    adv = np.load(attacked_run / "adversarial.npz")
    assert [int(r["pred_adv_src"]) for r in rows] == adv["pred_adv"].tolist()
    saved = json.loads((tmp_path / "transfer.json").read_text())
    assert saved["transfer/other/success_rate"] == metrics["transfer/other/success_rate"]


def test_another_codebases_array_with_labels(attacked_run, two_ckpts, tmp_path):
    """A bare (N, C, T, V, M) array and labels: lengths from the last frame with a joint, all clips attacked."""
    adv = np.load(attacked_run / "adversarial.npz")
    bare = tmp_path / "bare.npz"
    np.savez(bare, x=adv["x"], y=adv["y"])
    clips = read_clips(bare)
    assert (clips["lengths"] <= adv["x"].shape[2]).all() and clips["attacked"].all()
    assert main([str(bare), f"t={two_ckpts[1]}", "--out", str(tmp_path / "o")]) == 0
    saved = json.loads((tmp_path / "o" / "transfer.json").read_text())
    pred = np.array([int(r["pred_adv_t"]) for r in csv.DictReader((tmp_path / "o" / "transfer.csv").open())])
    assert saved["transfer/t/success_rate"] == pytest.approx(float((pred != adv["y"]).mean()))


def test_bad_files_are_named(tmp_path, two_ckpts):
    with pytest.raises(ValueError, match="no such file"):
        read_clips(tmp_path / "missing.npz")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((2, 3, 4, 25, 1), np.float32))
    with pytest.raises(ValueError, match=r"nolabels.npz: no 'y'"):
        read_clips(tmp_path / "nolabels.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros((2, 3, 4, 20, 1), np.float32), y=np.zeros(2, np.int64),
             layout=np.array("kinect20"))  # fmt: skip
    with pytest.raises(ValueError, match="layout"):
        evaluate_file(tmp_path / "other.npz", [str(two_ckpts[0])], tmp_path)


def test_zoo_writes_the_whitebox_table_and_transfer_matrices(two_ckpts, tmp_path):
    from hydra import compose, initialize_config_dir

    from lightning_skel.zoo import run_zoo
    from tests.helpers import CONFIGS

    models = f"models={{a: {two_ckpts[0]}, b: {two_ckpts[1]}}}"
    overrides = [models, "attacks=[pgd,ifgsm]", "limit=8", "batch_size=4", "threads=1", f"out_dir={tmp_path}",
                 "attack_overrides={pgd: ['attack.steps=2'], ifgsm: ['attack.steps=2']}"]  # fmt: skip
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("zoo", overrides=overrides)
    summary = run_zoo(cfg)
    for attack in ("pgd", "ifgsm"):
        rows = list(csv.reader((tmp_path / f"transfer_{attack}.csv").open()))
        assert rows[0] == ["source \\ target", "a", "b"] and len(rows) == 3
        assert (tmp_path / f"transfer_{attack}.png").is_file()
        for i, source in enumerate(("a", "b")):  # the diagonal: white-box success
            white = summary["whitebox"][f"{source}/{attack}"]["success_rate"]
            assert float(rows[1 + i][1 + i]) == pytest.approx(white, abs=1e-4)
    table = (tmp_path / "whitebox.md").read_text()
    assert table.count("\n") == 2 + 4 and "rms_mm_median" in table
    # a rerun reads every run back: no attack runs again
    before = (tmp_path / "a" / "pgd" / "metrics.json").stat().st_mtime_ns
    run_zoo(cfg)
    assert (tmp_path / "a" / "pgd" / "metrics.json").stat().st_mtime_ns == before


def test_zoo_refuses_bad_input_before_any_attack(tmp_path, two_ckpts):
    from hydra import compose, initialize_config_dir

    from lightning_skel.zoo import run_zoo
    from tests.helpers import CONFIGS

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        bad_attack = compose(
            "zoo", overrides=[f"models={{a: {two_ckpts[0]}}}", "attacks=[nope]", f"out_dir={tmp_path}"]
        )
        missing = compose(
            "zoo", overrides=[f"models={{a: {tmp_path / 'x.ckpt'}}}", "attacks=[pgd]", f"out_dir={tmp_path}"]
        )
    with pytest.raises(ValueError, match=r"unknown attack config\(s\) \['nope'\]"):
        run_zoo(bad_attack)
    with pytest.raises(ValueError, match="models.a: no checkpoint"):
        run_zoo(missing)
    assert not any(tmp_path.iterdir())


def test_attack_py_transfer_adds_columns_and_metrics(tmp_path, two_ckpts):
    out = tmp_path / "run"
    metrics = run_attack(
        attack_cfg(out, two_ckpts[0], [*PGD, f"transfer=['src={two_ckpts[0]}',{two_ckpts[1]}]"])
    )
    other = two_ckpts[1].parent.parent.name  # a bare path is named after its run folder
    assert metrics["transfer/src/success_rate"] == pytest.approx(metrics["success_rate"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved[f"transfer/{other}/success_rate"] == metrics[f"transfer/{other}/success_rate"]
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    assert {"rms_mm", "pred_adv_src", f"transferred_{other}"} <= set(rows[0])
    assert all(r["pred_adv_src"] == r["pred_adv"] for r in rows)


def test_attack_py_refuses_a_missing_transfer_target_before_any_work(tmp_path, two_ckpts):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"transfer\.nope: no checkpoint"):
        run_attack(attack_cfg(out, two_ckpts[0], [*PGD, f"transfer={{nope: {tmp_path / 'x.ckpt'}}}"]))
    assert not out.exists()


def test_a_fused_pair_is_one_transfer_target(tmp_path, two_ckpts):
    """``transfer={NAME: [a, b]}`` labels the adversarial clips with the sum of a's and b's scores (the
    public fused classifier on the raw clips), not with either alone."""
    import torch

    import lightning_skel

    a, b = (str(p) for p in two_ckpts)
    out = tmp_path / "run"
    metrics = run_attack(attack_cfg(out, a, [*PGD, f"transfer={{pair: [{a}, {b}]}}"]))
    with np.load(out / "adversarial.npz") as f:
        x, lengths, y = torch.from_numpy(f["x"]), torch.from_numpy(f["lengths"]).long(), f["y"]
    fused = lightning_skel.load_classifier([a, b])
    with torch.no_grad():
        scores = fused(x, lengths)
        alone = lightning_skel.load_classifier(a)(x, lengths).argmax(1).numpy()
    pred = scores.argmax(1).numpy()
    assert (pred != alone).any()  # the clips tell the pair from the source alone
    # another batch shape may round the scores differently: compare where the top two are not near a tie
    top2 = scores.topk(2, dim=1).values
    clear = ((top2[:, 0] - top2[:, 1]) > 1e-4 * scores.abs().amax(1).clamp_min(1)).numpy()
    assert clear.sum() >= len(pred) - 1
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    got = np.array([int(r["pred_adv_pair"]) for r in rows])
    np.testing.assert_array_equal(got[clear], pred[clear])
    assert [int(r["transferred_pair"]) for r in rows] == (got != y).astype(int).tolist()
    assert "transfer/pair/success_rate" in metrics
