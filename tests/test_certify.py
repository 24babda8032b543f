"""Randomized smoothing (lightning_skel.certify): the certificate against the analytic radius of a linear
classifier, soundness against an attack inside the certified ball, abstention, the noise's support, the
argument checks, the Gaussian-noise training callback, and certify.py end to end with resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from scipy import stats
from torch import nn

from lightning_skel.callbacks.noise_augmentation import GaussianNoiseAugmentation
from lightning_skel.certify import ABSTAIN, SmoothedClassifier, clopper_pearson_lower, min_samples
from lightning_skel.certify.run import CertifyRun, run_certify
from lightning_skel.certify.smoothing import binomial_p_value, certified_accuracy, certified_accuracy_curve
from lightning_skel.run import run_train
from lightning_skel.skeleton.features import valid_mask
from tests.helpers import CONFIGS, run_script, train_cfg

T, V, M = 8, 5, 2


class Linear2(nn.Module):
    """A two-class linear classifier of raw clips: class 0 where ``w . x + b > 0``."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) * self.w.flatten()).sum(1) + self.b
        return torch.stack([z, -z], 1)


def clips(n: int, lengths: list[int], absent: list[bool], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random clips ``(n, 3, T, V, M)`` with padding after ``lengths`` and person 2 absent where
    ``absent``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, T, V, M, generator=g) * 0.1
    for i, (ln, gone) in enumerate(zip(lengths, absent, strict=True)):
        x[i, :, ln:] = 0
        if gone:
            x[i, ..., 1] = 0
    return x, torch.tensor(lengths)


# ---- the certificate ------------------------------------------------------------------------------------
def test_linear_classifier_certified_radius_is_the_analytic_one_within_the_bound_width():
    """For ``f(x) = [w.x + b > 0]`` and noise on the valid entries only, ``P(f(x + eps) = 0) = Phi(z / (sigma
    |w_valid|))`` with ``z = w.x + b``, so the smoothed classifier's exact radius is ``sigma * Phi^-1(p_A) =
    z / |w_valid|``, the L2 distance to the boundary within the valid entries (Cohen et al.: tight for linear
    classifiers). The certified radius is ``sigma * Phi^-1(p_lower)`` with ``p_lower`` the Clopper-Pearson
    bound of the votes ``k ~ Bin(n, p_A)``: it lies between the radii that ``k``'s 1e-6 and 1 - 1e-6
    quantiles give, and below the exact one. ``w`` is non-zero on the padding and the absent person, so
    noise leaking there would change ``p_A``."""
    sigma, n, alpha = 0.05, 20000, 0.001
    targets = np.array([0.7, 0.8, 0.9, 0.97, 0.99])
    x, lengths = clips(5, [8, 6, 5, 8, 3], [False, True, True, False, True])
    w = torch.randn(3, T, V, M, generator=torch.Generator().manual_seed(1))
    mask = valid_mask(x, lengths).float()
    w_valid = (w * mask).flatten(1).norm(dim=1).double()  # (5,): |w| over each clip's valid entries
    # move each clip along w (on its valid entries) to the margin that gives its target p_A
    z_target = torch.as_tensor(stats.norm.ppf(targets)) * sigma * w_valid
    z_now = (x * w).flatten(1).sum(1).double()
    step = ((z_target - z_now) / w_valid**2).float().view(-1, 1, 1, 1, 1)
    x = x + step * w * mask
    exact = ((x * w).flatten(1).sum(1).double() / w_valid).numpy()  # z / |w_valid|, metres
    np.testing.assert_allclose(exact, sigma * stats.norm.ppf(targets), rtol=1e-4)

    cert = SmoothedClassifier(Linear2(w), sigma, batch=4096).certify(x, lengths, n0=100, n=n, alpha=alpha)
    assert (cert.prediction == 0).all()
    lo_k, hi_k = stats.binom.ppf(1e-6, n, targets), stats.binom.ppf(1 - 1e-6, n, targets)
    lo = sigma * stats.norm.ppf(clopper_pearson_lower(lo_k, n, alpha))
    hi = sigma * stats.norm.ppf(clopper_pearson_lower(hi_k, n, alpha))
    radius = cert.radius.numpy()
    assert ((lo <= radius) & (radius <= hi)).all(), (lo, radius, hi, exact)
    assert (radius <= exact).all(), "a certificate beyond the exact radius"
    # the tolerance is the bound's width at this n: small next to the radii, so the check says something
    assert ((exact - lo) / exact < 0.2).all()
    np.testing.assert_array_equal(cert.count.numpy(), cert.count.numpy().clip(lo_k, hi_k))


def test_certify_is_reproducible_for_a_seed_and_changes_with_it():
    x, lengths = clips(3, [8, 5, 6], [True, False, True])
    smooth = SmoothedClassifier(Linear2(torch.randn(3, T, V, M)), 0.1, batch=100)
    a, b = smooth.certify(x, lengths, 20, 500, seed=3), smooth.certify(x, lengths, 20, 500, seed=3)
    c = smooth.certify(x, lengths, 20, 500, seed=4)
    for key in ("prediction", "count", "selected"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert torch.equal(a.radius.nan_to_num(-1), b.radius.nan_to_num(-1))
    assert not torch.equal(a.count, c.count)


class SoftMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * T * V * M, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def smoothed_pgd(smooth, x, lengths, label, radius, steps=60, copies=256):
    """PGD on the Monte-Carlo estimate of the smoothed classifier's soft output (the mean softmax over
    ``copies`` noisy copies, fixed noise stream): descends the log-probability of ``label``, in the L2 ball of
    ``radius`` over the valid entries (the perturbation is zero elsewhere)."""
    mask = valid_mask(x, lengths)
    delta = torch.zeros_like(x)
    g = torch.Generator().manual_seed(1)
    rows = torch.zeros(copies, dtype=torch.long)
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        probs = smooth.model(smooth.noisy(x + d, mask, rows, g)).softmax(1).mean(0)
        (grad,) = torch.autograd.grad(-probs[label].clamp_min(1e-12).log(), d)
        grad = grad * mask
        delta = delta + (radius / 10) * grad / grad.norm().clamp_min(1e-12)
        delta = delta * torch.clamp(radius / delta.norm().clamp_min(1e-12), max=1.0)
    return delta


def test_an_attack_inside_the_certified_ball_does_not_change_the_smoothed_prediction():
    """PGD against the smoothed classifier of a small MLP, constrained to the certified radius over the
    valid entries, leaves the smoothed prediction (20000 samples) as certified; the same attack at twice the
    radius changes it, so the attack has the strength to break a certificate that was too large."""
    model = SoftMLP()
    x, lengths = clips(1, [6], [True])
    smooth = SmoothedClassifier(model, 0.5, batch=5000)
    cert = smooth.certify(x, lengths, n0=100, n=2000, alpha=0.001)
    label, radius = int(cert.prediction), float(cert.radius)
    assert label != ABSTAIN and radius > 0
    inside = smoothed_pgd(smooth, x, lengths, label, radius)
    mask = valid_mask(x, lengths)
    assert float(inside.norm()) == pytest.approx(radius, rel=1e-4)  # the attack goes to the ball's edge
    assert torch.equal(inside[~mask.expand_as(inside)], torch.zeros_like(inside[~mask.expand_as(inside)]))
    assert int(smooth.predict(x + inside, lengths, n=20000, seed=7)) == label
    outside = smoothed_pgd(smooth, x, lengths, label, 2 * radius)
    assert int(smooth.predict(x + outside, lengths, n=20000, seed=7)) not in (label, ABSTAIN)


def test_abstains_when_the_top_class_is_not_significant():
    """A clip on the boundary of a linear classifier (p_A = 0.5): certify and predict abstain. A clip of
    p_A = 0.55: predict abstains with 30 samples (the 25 of 30 votes the test needs at alpha = 0.001 come
    with probability 1.1e-3) and predicts with 20000 (where a tie is rejected but with probability 1e-27)."""
    x, lengths = clips(2, [8, 6], [False, True])
    w = torch.randn(3, T, V, M, generator=torch.Generator().manual_seed(2))
    mask = valid_mask(x, lengths).float()
    w_valid = (w * mask).flatten(1).norm(dim=1)
    z_target = torch.tensor([0.0, float(stats.norm.ppf(0.55))]) * 0.05 * w_valid
    step = (z_target - (x * w).flatten(1).sum(1)) / w_valid**2
    x = x + step.view(-1, 1, 1, 1, 1) * w * mask
    smooth = SmoothedClassifier(Linear2(w), 0.05, batch=4096)
    cert = smooth.certify(x[:1], lengths[:1], n0=100, n=10000, alpha=0.001)
    assert cert.abstain.all() and cert.radius.isnan().all() and float(cert.p_lower[0]) < 0.5
    assert int(smooth.predict(x[:1], lengths[:1], n=10000)) == ABSTAIN
    assert binomial_p_value(25, 5) < 0.001 < binomial_p_value(24, 6)
    assert stats.binom.sf(24, 30, 0.55) < 1.2e-3
    assert int(smooth.predict(x[1:], lengths[1:], n=30)) == ABSTAIN
    assert int(smooth.predict(x[1:], lengths[1:], n=20000)) == 0


def test_statistics_match_scipy_and_the_least_sample_counts():
    for top, second in [(10, 0), (7, 3), (50, 50), (600, 400), (3, 2)]:
        assert binomial_p_value(top, second) == pytest.approx(stats.binomtest(top, top + second, 0.5).pvalue)
    # all n votes: the lower bound is alpha ** (1 / n); the least n at which it exceeds 0.5
    assert float(clopper_pearson_lower(1000, 1000, 0.001)) == pytest.approx(0.001 ** (1 / 1000))
    assert float(clopper_pearson_lower(0, 1000, 0.001)) == 0.0
    for alpha in (0.5, 0.1, 0.01, 0.001, 1e-6):
        need = min_samples(alpha)
        assert alpha ** (1 / need) > 0.5 >= alpha ** (1 / (need - 1))
        need = min_samples(alpha, "predict")
        assert 2 * 0.5**need <= alpha < 2 * 0.5 ** (need - 1)
    assert min_samples(0.001) == 10
    # at the least n an all-agreeing clip is certified, below it nothing can be
    x, lengths = clips(1, [8], [False])
    w = torch.zeros(3, T, V, M)
    smooth = SmoothedClassifier(Linear2(w, b=1.0), 0.05)
    assert float(smooth.certify(x, lengths, n0=1, n=10, alpha=0.001).radius) > 0
    with pytest.raises(ValueError, match=r"n must be an integer >= 10 at alpha=0.001"):
        smooth.certify(x, lengths, n0=1, n=9, alpha=0.001)


def test_certified_accuracy_and_its_curve():
    pred = np.array([0, 1, ABSTAIN, 2, 0])
    y = np.array([0, 1, 1, 0, 0])
    radius = np.array([3.0, 10.0, np.nan, 8.0, 3.0])  # mm
    np.testing.assert_allclose(
        certified_accuracy(pred, y, radius, [0, 3, 5, 10, 20]), [0.6, 0.6, 0.2, 0.2, 0]
    )
    r, acc = certified_accuracy_curve(pred, y, radius)
    np.testing.assert_array_equal(r, [0, 3, 10])
    np.testing.assert_allclose(acc, [0.6, 0.6, 0.2])


# ---- the noise's support --------------------------------------------------------------------------------
class Recorder(nn.Module):
    def __init__(self, score_channel: bool = False) -> None:
        super().__init__()
        self.score_channel = score_channel
        self.seen: list[torch.Tensor] = []
        self.lin = nn.Linear(1, 1)  # a parameter: the device is read from it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.zeros(len(x), 3)


@pytest.mark.parametrize("score_channel", [False, True])
def test_noise_leaves_padding_absent_persons_and_the_score_untouched(score_channel):
    x, lengths = clips(3, [8, 5, 3], [False, True, True])
    if score_channel:  # a keypoint score on present entries, as the readers give it
        score = torch.rand(3, 1, T, V, M) * (x.abs().sum(1, keepdim=True) > 0)
        x = torch.cat([x, score], 1)
    model, sigma, copies = Recorder(score_channel), 0.02, 400
    SmoothedClassifier(model, sigma, batch=128).counts(x, lengths, copies, torch.Generator().manual_seed(0))
    seen = torch.cat(model.seen)
    assert seen.shape == (3 * copies, *x.shape[1:])
    clean = x.repeat_interleave(copies, 0)
    coords, clean_coords = seen[:, :3], clean[:, :3]
    mask = valid_mask(x[:, :3], lengths).repeat_interleave(copies, 0).expand_as(coords)
    assert torch.equal(coords[~mask], clean_coords[~mask])  # bit-identical off the valid entries
    if score_channel:
        assert torch.equal(seen[:, 3:], clean[:, 3:])
    noise = (coords - clean_coords)[mask]
    assert bool((noise != 0).all())
    # its spread is sigma: the sample std of K normals is within 6 standard errors sqrt(1 / (2K)) of it
    k = noise.numel()
    assert abs(float(noise.double().std()) / sigma - 1) < 6 * (1 / (2 * k)) ** 0.5
    assert abs(float(noise.double().mean())) < 6 * sigma / k**0.5


# ---- argument checks --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 0.0}, r"sigma must be > 0 \(the noise's standard deviation, metres\), got 0.0"),
        ({"sigma": -0.01}, r"sigma must be > 0 .* got -0.01"),
        ({"batch": 0}, r"batch must be an integer >= 1 \(noisy copies per forward pass\), got 0"),
    ],
)
def test_bad_smoothing_arguments_are_named(kwargs, message):
    args = {"sigma": 0.01, **kwargs}
    with pytest.raises(ValueError, match=r"SmoothedClassifier: invalid argument\(s\): " + message):
        SmoothedClassifier(Linear2(torch.ones(3, T, V, M)), **args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n0": 0}, r"n0 must be an integer >= 1 \(noise samples that select the top class\), got 0"),
        ({"n": 9}, r"n must be an integer >= 10 at alpha=0.001 \(with fewer samples even all of them"),
        ({"n": 12, "alpha": 1e-4}, r"n must be an integer >= 14 at alpha=0.0001"),
        ({"n": 100.5}, r"n must be an integer >= 10 at alpha=0.001 .* got 100.5"),
        ({"alpha": 0.0}, r"alpha must be in \(0, 1\) \(the probability that the answer is wrong\), got 0.0"),
        ({"alpha": 1.0}, r"alpha must be in \(0, 1\) .* got 1.0"),
    ],
)
def test_bad_certify_arguments_are_named_before_any_work(kwargs, message):
    model = Recorder()
    args = {"n0": 10, "n": 100, "alpha": 0.001, **kwargs}
    x, lengths = clips(1, [8], [False])
    with pytest.raises(ValueError, match=r"SmoothedClassifier.certify: invalid argument\(s\): " + message):
        SmoothedClassifier(model, 0.01).certify(x, lengths, **args)
    assert model.seen == []


def test_predict_needs_its_own_least_sample_count():
    x, lengths = clips(1, [8], [False])
    with pytest.raises(
        ValueError, match=r"n must be an integer >= 11 at alpha=0.001 \(with fewer samples the"
    ):
        SmoothedClassifier(Recorder(), 0.01).predict(x, lengths, n=10)


# ---- Gaussian-noise training ------------------------------------------------------------------------------
def noise_step(cb: GaussianNoiseAugmentation, x, lengths, score_channel=False):
    logged = {}
    module = SimpleNamespace(
        hparams=SimpleNamespace(score_channel=score_channel), log=lambda k, v, **kw: logged.update({k: v})
    )
    batch = (x, torch.zeros(len(x), dtype=torch.long), lengths, torch.arange(len(x)))
    cb.on_train_batch_start(None, module, batch, 0)
    return logged


def test_noise_augmentation_noises_a_ratio_of_the_batch_on_valid_entries_and_resumes():
    x, lengths = clips(6, [8, 5, 3, 8, 6, 4], [False, True, True, False, True, False])
    score = torch.rand(6, 1, T, V, M)
    clean = torch.cat([x, score], 1)
    cb = GaussianNoiseAugmentation(sigma=0.02, ratio=0.5, seed=0)
    state = cb.state_dict()
    batch = clean.clone()
    logged = noise_step(cb, batch, lengths, score_channel=True)
    assert logged["train/noise_fraction"] == 0.5
    changed = (batch != clean).flatten(1).any(1)
    assert int(changed.sum()) == 3
    mask = valid_mask(x, lengths).expand_as(x)
    assert torch.equal(batch[:, :3][~mask], x[~mask]) and torch.equal(batch[:, 3:], score)
    noised = changed.view(-1, 1, 1, 1, 1).expand_as(x) & mask
    assert bool((batch[:, :3][noised] != x[noised]).all())
    noise = (batch[:, :3][noised] - x[noised]).double()
    assert abs(float(noise.std()) / 0.02 - 1) < 6 * (1 / (2 * noise.numel())) ** 0.5
    # a callback restored from the state draws the same clips and noise
    again = GaussianNoiseAugmentation(sigma=0.02, ratio=0.5, seed=123)
    again.load_state_dict(state)
    batch2 = clean.clone()
    noise_step(again, batch2, lengths, score_channel=True)
    assert torch.equal(batch, batch2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 0}, r"sigma must be > 0 \(the noise's standard deviation, metres\), got 0"),
        ({"ratio": 0}, r"ratio must be in \(0, 1\] \(the fraction of each batch noised\), got 0"),
        ({"ratio": 1.5}, r"ratio must be in \(0, 1\] .* got 1.5"),
        ({"seed": 0.5}, r"seed must be an integer, got 0.5"),
    ],
)
def test_noise_augmentation_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=r"GaussianNoiseAugmentation: invalid argument\(s\): " + message):
        GaussianNoiseAugmentation(**kwargs)


# ---- certify.py -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny HCN trained three epochs with Gaussian-noise augmentation (callbacks=noise)."""
    tmp = tmp_path_factory.mktemp("noisy")
    run_train(train_cfg(tmp, ["trainer.max_epochs=3", "callbacks=noise", "callbacks.noise.sigma=0.005",
                              "callbacks.figures=null"]))  # fmt: skip
    logged = (tmp / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/noise_fraction" in logged, "the noise callback did not run"
    return tmp / "run" / "checkpoints" / "last.ckpt"


SMALL = ["sigma=0.005", "n0=20", "n=200", "batch=500", "batch_size=4", "trainer.enable_progress_bar=false"]


def certify_cfg(out_dir: Path, ckpt: Path, overrides=()):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("certify", [f"ckpt={ckpt}", f"out_dir={out_dir}", "threads=1", *SMALL, *overrides])


def load(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "certificates.npz") as f:
        return {k: f[k] for k in f.files}


def test_certify_command_end_to_end(tmp_path, ckpt):
    """``python certify.py`` as a user runs it, with W&B offline: every output, consistent with each other."""
    out = tmp_path / "c"
    lines = run_script("certify.py", [f"ckpt={ckpt}", f"out_dir={out}", "threads=1", *SMALL, "logger=wandb"],
                       tmp_path, env={"WANDB_MODE": "offline"})  # fmt: skip
    printed = json.loads(lines[-1])
    saved = json.loads((out / "metrics.json").read_text())
    assert printed["num_samples"] == saved["num_samples"] == 12  # the synthetic test split
    assert saved["spec"]["sigma"] == 0.005 and saved["spec"]["n"] == 200
    res = load(out)
    rows = list(csv.DictReader((out / "per_sample.csv").open()))
    assert len(rows) == 12 and [int(r["index"]) for r in rows] == res["index"].tolist()
    for row, pred, radius, abstain in zip(
        rows, res["prediction"], res["radius_mm"], res["abstain"], strict=True
    ):
        assert row["abstain"] == str(int(abstain))
        assert row["prediction"] == ("" if abstain else str(pred))
        if not abstain:
            assert float(row["radius_mm"]) == pytest.approx(radius, rel=1e-5)
    # the radius in mm is sigma * Phi^-1(p_lower) of the votes, the p_lower that of the recorded count
    np.testing.assert_allclose(res["p_lower"], clopper_pearson_lower(res["count"], 200, 0.001))
    ok = ~res["abstain"]
    np.testing.assert_allclose(res["radius_mm"][ok], 5.0 * stats.norm.ppf(res["p_lower"][ok]))
    for r in (0, 2.5, 5, 10, 20):
        expected = np.mean(res["correct"] & ok & (res["radius_mm"] >= r))
        assert saved[f"certified_accuracy_l2_mm_{r:g}"] == pytest.approx(expected)
    assert saved["clean_accuracy"] == pytest.approx(np.mean(res["base_prediction"] == res["y"]))
    assert (out / "figures" / "certified_accuracy.png").stat().st_size > 0
    curve = list(csv.DictReader((out / "certified_accuracy.csv").open()))
    assert float(curve[0]["radius_mm"]) == 0 and float(curve[0]["certified_accuracy"]) == pytest.approx(
        saved["certified_accuracy_l2_mm_0"], abs=1e-6
    )
    tables = list(
        (out / "wandb").glob("offline-run-*/files/media/table/certify/certified_accuracy_*.table.json")
    )
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["radius_mm", "certified_accuracy"] and len(table["data"]) == len(curve)


def test_killed_run_resumes_to_identical_outputs(tmp_path, ckpt, monkeypatch):
    full, part = tmp_path / "full", tmp_path / "part"
    run_certify(certify_cfg(full, ckpt))
    original = CertifyRun._attack_batch
    calls = []

    def dies_on_second(self, b, *args):
        calls.append(b)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return original(self, b, *args)

    monkeypatch.setattr(CertifyRun, "_attack_batch", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_certify(certify_cfg(part, ckpt))
    assert [p.name for p in (part / "shards").glob("batch_*.npz")] == ["batch_000000.npz"]
    assert not (part / "metrics.json").exists()
    monkeypatch.setattr(CertifyRun, "_attack_batch", original)
    calls.clear()
    redone = []
    monkeypatch.setattr(
        CertifyRun, "_attack_batch", lambda self, b, *a: (redone.append(b), original(self, b, *a))
    )
    run_certify(certify_cfg(part, ckpt))
    assert redone == [1, 2]  # the shard written before the kill is reused
    a, b = load(full), load(part)
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # another sigma is another run: refused in the same out_dir, naming what differs
    with pytest.raises(ValueError, match=r"holds shards of another certification run .*differs in sigma"):
        run_certify(certify_cfg(part, ckpt, ["sigma=0.01"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sigma=0", r"certify.py: invalid setting\(s\): sigma must be > 0"),
        ("n=5", r"n must be an integer >= 10 at alpha=0.001"),
        ("n0=0", r"n0 must be an integer >= 1"),
        ("alpha=1.5", r"alpha must be in \(0, 1\)"),
        ("sigma=abc", r"certify config: invalid setting\(s\): sigma must be a number, got 'abc'"),
        ("radii_mm=[]", r"radii_mm must be a non-empty list of radii >= 0 \(mm\)"),
    ],
)
def test_bad_settings_fail_before_any_work(tmp_path, override, message):
    """Refused before the checkpoint is read (it does not exist) and before out_dir is made."""
    with pytest.raises(ValueError, match=message):
        run_certify(certify_cfg(tmp_path / "c", tmp_path / "missing.ckpt", [override]))
    assert not (tmp_path / "c").exists()


def test_the_command_asks_for_sigma(tmp_path):
    """sigma has no default (certify at the sigma the classifier was trained with): its absence is one line
    and exit code 2, before the heavy imports."""
    err = run_script("certify.py", ["ckpt=x.ckpt"], tmp_path, fails=True)
    assert err[-1] == "certify.py: error: sigma must be set, e.g. python certify.py sigma=..."


@pytest.mark.numerics
def test_ddp_two_processes_equal_single_process(tmp_path, ckpt):
    single, multi = tmp_path / "single", tmp_path / "multi"
    run_certify(certify_cfg(single, ckpt))
    run_certify(certify_cfg(multi, ckpt, ["trainer.strategy=ddp_spawn", "trainer.devices=2"]))
    a, b = load(single), load(multi)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
