"""2D data with the keypoint score as an input channel (``data.score_channel``, docs/METHOD.md section 1):
the model reads it, and no attack, distance or metric changes or reads it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from lightning_skel import load_classifier
from lightning_skel.attack_run import run_attack
from lightning_skel.attacks import Attack, DynamicDistance, build_attack, list_attacks
from lightning_skel.attacks.metrics import per_sample_metrics
from lightning_skel.checkpoints import read_checkpoint
from lightning_skel.data.datamodule import SkeletonDataModule, SkeletonDataset
from lightning_skel.data.io import load_npz, save_npz
from lightning_skel.data.synthetic import generate
from lightning_skel.data.transforms import fit_window
from lightning_skel.models import Classifier, ScoreFusion, build_model
from lightning_skel.run import run_train
from lightning_skel.skeleton.features import join_score, valid_mask
from lightning_skel.systems import ClassificationSystem
from tests.helpers import CONFIGS, attack_cfg

CLASSES = ("wave", "squat", "jump")
TINY = {"width": 8, "feature_dim": 16, "variant": "compact"}


def two_d_with_score(
    layout: str, num_per_class: int = 8, frames: int = 16, seed: int = 0, score: bool = True
):
    """Generated motion seen in the image plane (the camera's x and y) as a skeleton-npz dict, with a
    keypoint score in (0.05, 1) wherever a person is present (0 on padding and absent persons)."""
    d = generate(num_per_class, seed=seed, frames=frames, layout=layout, classes=CLASSES)
    x = np.ascontiguousarray(d["x"][:, :2])
    data = {k: d[k] for k in ("y", "lengths", "layout", "class_names")}
    data["x"] = x
    if score:
        present = (x != 0).any(1)  # (N, T, V, M)
        rng = np.random.default_rng(seed + 1)
        data["score"] = np.where(present, rng.uniform(0.05, 1.0, present.shape), 0.0).astype(np.float32)
    return data


def random_clips(
    n: int = 6, t: int = 8, layout: str = "coco17", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (n, 3, t, V, 2)``: random image coordinates then score, with padding frames and absent second
    persons at zero in every channel; and ``lengths (n,)``."""
    g = torch.Generator().manual_seed(seed)
    v = 17 if layout == "coco17" else 18
    coords = 2 * torch.rand(n, 2, t, v, 2, generator=g) - 1
    score = 0.1 + 0.9 * torch.rand(n, 1, t, v, 2, generator=g)
    lengths = torch.full((n,), t)
    lengths[::2] = t - 3
    x = torch.cat([coords, score], 1) * (torch.arange(t).view(1, 1, t, 1, 1) < lengths.view(n, 1, 1, 1, 1))
    x[1::3, :, :, :, 1] = 0  # a single-person clip in every three
    return x, lengths


class ScoreSpy(nn.Module):
    """A linear classifier of coordinates and score that checks every row it is given: its score channel
    must be the score of the clean clip whose coordinates are nearest to the row's (the clip the row was
    perturbed from), so that a score appended to the wrong clip is counted in ``wrong``."""

    score_channel = True

    def __init__(self, clean: torch.Tensor, num_classes: int = 3) -> None:
        super().__init__()
        self.clean = clean
        self.fc = nn.Linear(clean[0].numel(), num_classes)
        self.rows = self.wrong = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coords, score = x[:, :-1], x[:, -1]
        gap = (coords[:, None] - self.clean[None, :, :-1]).abs().flatten(2).mean(2)  # (n, N)
        own = self.clean[gap.argmin(1), -1]
        self.rows += x.shape[0]
        self.wrong += int((score != own).flatten(1).any(1).sum())
        return self.fc(x.flatten(1))


ATTACK_KWARGS = {
    "admm": {"max_iter": 3, "max_rows": 2, "lr": 0.01},
    "pgd": {"steps": 4, "eps": 0.05, "early_stop": True},
    "ifgsm": {"steps": 3, "eps": 0.05},
    "cw": {"steps": 3, "lr": 0.01},
    "smart": {"steps": 3},
    "apgd": {"n_iter": 5, "eps": 0.05},
    "square": {"n_queries": 20, "eps": 0.05},
    "mifgsm": {"steps": 3, "eps": 0.05},
    # the model has 3 classes: too few for APGD-T's targeted DLR loss
    "autoattack": {
        "version": "custom",
        "attacks": ["apgd-ce", "apgd-dlr", "square"],
        "n_iter": 5,
        "n_queries": 20,
    },
}


@pytest.mark.parametrize("name", list_attacks())
def test_every_attack_keeps_the_score_bit_identical_and_moves_coordinates(name):
    x, lengths = random_clips()
    model = ScoreSpy(x).eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    y[3] = (y[3] + 1) % 3  # a clip the model gets wrong is not attacked: the others go through a sub-call
    attack = build_attack(name, model, "coco17", **ATTACK_KWARGS.get(name, {}))
    assert attack.score_channel
    res = attack(x, y, lengths)
    assert res.x_adv.shape == x.shape
    assert torch.equal(res.x_adv[:, -1], x[:, -1])  # bit-identical
    moved = (res.x_adv[:, :-1] != x[:, :-1]).flatten(1).any(1)
    assert res.attacked.tolist() == [True, True, True, False, True, True]
    assert moved.tolist() == res.attacked.tolist()
    # padding frames and absent persons keep their zeros in every channel
    mask = valid_mask(x[:, :-1], lengths)
    assert torch.equal(torch.where(mask, 0.0, res.x_adv), torch.where(mask, 0.0, x))
    # every forward pass got the score of its own clips (ADMM streams 2 rows at a time)
    assert model.rows > len(y) and model.wrong == 0
    with torch.no_grad():
        assert torch.equal(res.pred_adv, model(res.x_adv).argmax(1))


def test_distances_and_metrics_see_the_coordinates_only():
    """ADMM's distance of its result and the metrics are those of the coordinates; read as a third
    coordinate, the score would change them (the bones would run through it)."""
    x, lengths = random_clips(seed=1)
    model = ScoreSpy(x).eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    tau = {"bone": 0.0, "angle": 0.0, "speed": 0.0}
    attack = build_attack("admm", model, "coco17", max_iter=4, lr=0.05, c=10.0, tau=tau)
    res = attack(x, y, lengths)
    won = res.success
    assert won.any()
    coords, coords_adv = attack.coordinates(x), attack.coordinates(res.x_adv)
    assert coords.shape[1] == 2
    dist = DynamicDistance("coco17", tau=tau)

    def distance(a, b):
        mask = valid_mask(a, lengths)
        return dist(dist.reference(a, mask), dist.kinematics(b, mask))[0]

    torch.testing.assert_close(distance(coords, coords_adv)[won], res.extras["distance"][won])
    assert not torch.allclose(distance(x, res.x_adv)[won], res.extras["distance"][won])
    mine = per_sample_metrics(coords, coords_adv, lengths, "coco17")
    as_3d = per_sample_metrics(x, res.x_adv, lengths, "coco17")
    assert not torch.allclose(mine["delta_bone"][won], as_3d["delta_bone"][won])
    assert torch.all(mine["linf_mm"][won] > 0)


def test_the_classifier_reads_the_score_and_preprocesses_coordinates_only():
    x, _ = random_clips(layout="openpose18", seed=2)
    net = build_model("hcn", 3, "openpose18", in_channels=3, num_persons=2, **TINY)
    clf = Classifier(net, "openpose18", modality="bone", score_channel=True).eval()
    plain = Classifier(net, "openpose18", modality="bone").eval()  # the same network, no score channel
    z = clf.preprocess(x)
    assert torch.equal(z[:, -1], x[:, -1])  # normalisation and the bone modality leave the score alone
    torch.testing.assert_close(z[:, :-1], plain.preprocess(x[:, :-1]))
    other = x.clone()
    other[:, -1] *= 0.5
    with torch.no_grad():
        assert not torch.allclose(clf(x), clf(other))
    with pytest.raises(ValueError, match=r"score channel is \(N, C \+ 1, T, V, M\).*got shape \(6, 2,"):
        clf(x[:, :2])
    with pytest.raises(ValueError, match="takes coordinates then the keypoint score"):
        build_attack("pgd", clf, "openpose18")(x[:, :2], torch.zeros(6, dtype=torch.long))


def test_reference_defenses_keep_the_score():
    """PGD-AT's and TRADES' inner maximisation goes through the attack base, so it leaves the score too."""
    x, lengths = random_clips(layout="openpose18", seed=3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for name in ("pgd_at", "trades"):
        system = ClassificationSystem(
            "hcn", 3, "openpose18", in_channels=3, model_kwargs=TINY, score_channel=True,
            robust_training={"name": name, "steps": 2},
        )  # fmt: skip
        x_adv = system._inner_max(x, y, lengths)
        assert torch.equal(x_adv[:, -1], x[:, -1])
        assert not torch.equal(x_adv[:, :-1], x[:, :-1])


def test_data_module_appends_the_score_and_refuses_data_without_one(tmp_path):
    path = save_npz(tmp_path / "2d.npz", two_d_with_score("coco17", num_per_class=4))
    dm = SkeletonDataModule("2d", path=str(path), window=16, score_channel=True, batch_size=4)
    dm.setup()
    assert dm.in_channels == 3 and dm.describe()["score_channel"] is True
    ds = dm.datasets["train"]
    x, _, _, j = ds[1]
    data = load_npz(path)
    assert torch.equal(x, torch.from_numpy(np.concatenate([data["x"][j], data["score"][j][None]])))
    xb, _, _ = ds.batch(np.array([1, 0]))
    assert torch.equal(xb[0], x)
    # training augmentation moves the coordinates and leaves the score
    dm.augment.update(rotate_deg=30.0, scale=0.2)
    xw, _ = dm.window_batch(xb, torch.full((2,), 16), train=True)
    assert not torch.equal(xw[:, :2], xb[:, :2]) and torch.equal(xw[:, 2], xb[:, 2])
    # without the option the batches are the coordinates, as before, and describe() says nothing new
    plain = SkeletonDataModule("2d", path=str(path), window=16)
    plain.setup()
    assert plain.in_channels == 2 and "score_channel" not in plain.describe()
    assert plain.datasets["train"][1][0].shape[0] == 2

    bare = save_npz(tmp_path / "bare.npz", two_d_with_score("coco17", num_per_class=4, score=False))
    with pytest.raises(
        ValueError, match=r"data 'bare': score_channel is true but .*bare\.npz has no 'score'"
    ):
        SkeletonDataModule("bare", path=str(bare), score_channel=True).setup()
    with pytest.raises(ValueError, match="score_channel is true but the data has no 'score'"):
        SkeletonDataset(load_npz(bare), score_channel=True)
    with pytest.raises(ValueError, match="score_channel must be true or false, got 'yes'"):
        SkeletonDataModule("2d", path=str(path), score_channel="yes")
    with pytest.raises(ValueError, match="emotion recognizer .* cannot take the keypoint score"):
        ClassificationSystem("emotion", 3, "coco17", in_channels=3, score_channel=True)
    streams = [Classifier(build_model("hcn", 3, "coco17", in_channels=c, **TINY), "coco17", score_channel=s)
               for c, s in ((3, True), (2, False))]  # fmt: skip
    with pytest.raises(ValueError, match="disagree on score_channel"):
        ScoreFusion(streams)


# ---- train.py and attack.py on 2D data with scores --------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny HCN trained on openpose18 2D data with the score channel, with adversarial training (PGD, last
    epoch) and robust validation on: every attack call on the way checks that it left the score alone, and
    the callbacks' distance metrics record the channels they were given."""
    tmp = tmp_path_factory.mktemp("score")
    path = save_npz(tmp / "kinetics_like.npz", two_d_with_score("openpose18", num_per_class=12))
    overrides = [
        "data=npz", f"data.path={path}", "data.score_channel=true", "data.window=16", "data.batch_size=4",
        "data.val_fraction=0.25", "data.test_fraction=0.25", "model.kwargs.width=16", "model.kwargs.feature_dim=32", "model.kwargs.variant=compact",
        "optim.optimizer.lr=0.01", "trainer.max_epochs=20", f"out_dir={tmp / 'run'}",
        f"paths.cache_dir={tmp / 'cache'}", "threads=1", "trainer.enable_progress_bar=false",
        "callbacks=adv_training", "attack@callbacks.adv_training.attack=pgd", "callbacks.adv_training.attack.steps=1",
        "callbacks.adv_training.start_epoch=19",
        "callbacks.robust_validation.every_n_epochs=10", "callbacks.robust_validation.num_samples=4",
        "callbacks.robust_validation.attacks.admm=null", "callbacks.robust_validation.attacks.autoattack=null",
        "+attack@callbacks.robust_validation.attacks.pgd=pgd", "callbacks.robust_validation.attacks.pgd.steps=1",
        "callbacks.robust_validation.budgets.admm=null", "+callbacks.robust_validation.budgets.pgd={linf_mm:20}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    calls, channels = [], []
    original = Attack.__call__

    def checked(self, x, y, lengths=None, target=None, attack_all=False):
        res = original(self, x, y, lengths, target, attack_all)
        calls.append((attack_all, bool(torch.equal(res.x_adv[:, -1], x[:, -1].to(res.x_adv.device)))))
        return res

    def recorded(x, x_adv, *args, **kwargs):
        channels.append((x.shape[1], x_adv.shape[1]))
        return per_sample_metrics(x, x_adv, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Attack, "__call__", checked)
        mp.setattr("lightning_skel.callbacks.adversarial_training.per_sample_metrics", recorded)
        mp.setattr("lightning_skel.callbacks.robust_validation.per_sample_metrics", recorded)
        metrics = run_train(cfg)
    return {"dir": tmp, "data": path, "ckpt": tmp / "run" / "checkpoints" / "last.ckpt", "metrics": metrics,
            "calls": calls, "channels": channels}  # fmt: skip


def test_training_on_2d_data_with_scores(trained):
    assert trained["metrics"]["test/acc"] >= 0.5  # chance: 1/3
    # adversarial training (attack_all) and robust validation both attacked, and left every score alone
    assert {all_ for all_, _ in trained["calls"]} == {True, False}
    assert all(same for _, same in trained["calls"])
    assert trained["channels"] and set(trained["channels"]) == {(2, 2)}
    assert (trained["dir"] / "run" / "figures" / "clips.png").is_file()
    model = load_classifier(trained["ckpt"])
    assert model.score_channel
    hp = read_checkpoint(trained["ckpt"], "ckpt")["hyper_parameters"]
    assert (
        hp["score_channel"] is True and hp["in_channels"] == 3 and hp["data_config"]["score_channel"] is True
    )
    x, _ = random_clips(layout="openpose18", t=16, seed=4)
    other = x.clone()
    other[:, -1] = 1.0 - other[:, -1] * (other[:, -1] != 0)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(other))


def test_attack_py_writes_the_unchanged_score(trained, tmp_path):
    out = tmp_path / "pgd"
    metrics = run_attack(attack_cfg(out, trained["ckpt"], ["attack=pgd", "attack.steps=3", "batch_size=4"]))
    assert metrics["num_attacked"] >= 1
    adv = load_npz(out / "adversarial.npz")  # a valid skeleton npz: coordinates in x, scores in score
    assert adv["x"].shape[1] == adv["x_clean"].shape[1] == 2
    source = load_npz(trained["data"])
    rows = adv["index"]
    x = torch.from_numpy(np.concatenate([source["x"][rows], source["score"][rows][:, None]], 1))
    windowed, _ = fit_window(x, torch.from_numpy(source["lengths"][rows]), 16)
    assert np.array_equal(adv["score"], windowed[:, -1].numpy())
    assert np.array_equal(adv["x_clean"], windowed[:, :-1].numpy())
    assert not np.array_equal(adv["x"][adv["attacked"]], adv["x_clean"][adv["attacked"]])
    # the metrics of per_sample.csv are those of the coordinates, not of coordinates and score
    table = list(csv.DictReader((out / "per_sample.csv").open()))
    t = torch.from_numpy
    mine = per_sample_metrics(t(adv["x_clean"]), t(adv["x"]), t(adv["lengths"]), "openpose18")
    both = per_sample_metrics(
        join_score(t(adv["x_clean"]), t(adv["score"])[:, None]), join_score(t(adv["x"]), t(adv["score"])[:, None]),
        t(adv["lengths"]), "openpose18",
    )  # fmt: skip
    done = [i for i, row in enumerate(table) if row["delta_bone"]]
    assert done
    logged = torch.tensor([float(table[i]["delta_bone"]) for i in done], dtype=torch.float64)
    torch.testing.assert_close(logged, mine["delta_bone"][done].double(), rtol=1e-5, atol=0)
    assert not torch.allclose(logged, both["delta_bone"][done].double(), rtol=1e-3, atol=0)
    # a data setting other than the checkpoint's, and data without scores, are refused before any work
    with pytest.raises(
        ValueError, match="data.score_channel is False but the checkpoint .* score_channel=True"
    ):
        run_attack(attack_cfg(tmp_path / "off", trained["ckpt"], ["attack=pgd", "+data.score_channel=false"]))
    bare = save_npz(tmp_path / "bare.npz", two_d_with_score("openpose18", num_per_class=2, score=False))
    with pytest.raises(ValueError, match="score_channel is true but .*bare.npz has no 'score'"):
        run_attack(attack_cfg(tmp_path / "bare", trained["ckpt"], ["attack=pgd", f"data.path={bare}"]))
