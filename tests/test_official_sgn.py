"""SGN exactly as microsoft/SGN computes it: the official state_dict of the fixture beside the checkout
(../shared/fixtures/official/sgn.pt, README there) through the import reproduces the official logits, and the
``sgn`` input pipeline reproduces the official loader's rows (preprocess_sgn.pt) from the seq arrays. The
pipeline's own sampling, gradients and arguments are checked without fixtures."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import DATA

import lightning_skel
from lightning_skel.checkpoints import CheckpointError
from lightning_skel.data.pipelines import build_pipeline
from lightning_skel.models import Classifier, build_model
from lightning_skel.models.convert import convert

FIXTURES = DATA.parent / "fixtures" / "official"
requires_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"official fixtures not found at {FIXTURES}"
)


def _fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt")


def _clips(seq: torch.Tensor) -> torch.Tensor:
    """Official seq arrays ``(N, T, 150)`` (two bodies of 25 joints x xyz) as clips ``(N, 3, T, 25, 2)``."""
    return seq.view(*seq.shape[:2], 2, 25, 3).permute(0, 4, 1, 3, 2)


def _official_rows(z: torch.Tensor) -> torch.Tensor:
    """Pipeline output ``(N, 3, seg, 25, 1)`` as the official network's input ``(N, seg, 75)``."""
    return z.squeeze(-1).permute(0, 2, 3, 1).flatten(2)


def _project(rows: torch.Tensor) -> torch.Tensor:
    """The official input ``(N, seg, 75)`` as ``(N, 3, seg, 25, 1)``."""
    return rows.view(*rows.shape[:2], 25, 3).permute(0, 3, 1, 2).unsqueeze(-1)


def _official_file(path, state_dict) -> None:
    """What main.py's save_checkpoint writes."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=1e-3, weight_decay=1e-4)
    p.sum().backward()
    opt.step()
    torch.save(
        {"epoch": 97, "state_dict": state_dict, "best": torch.tensor(0.86), "monitor": "val_acc",
         "optimizer": opt.state_dict()},
        path,
    )  # fmt: skip


@requires_fixtures
def test_imported_sgn_reproduces_official_logits(tmp_path):
    fx = _fixture("sgn")
    path, out = tmp_path / "0_best.pth", tmp_path / "imported.ckpt"
    _official_file(path, fx["state_dict"])
    convert("sgn", path, out, "ntu60_xsub")
    model = lightning_skel.load_classifier(out)
    hp = torch.load(out, weights_only=True)["hyper_parameters"]
    assert hp["model"] == "sgn" and hp["pipeline"] == "sgn" and hp["normalize"] == "none"
    assert model.window == 300 and model.temporal == "pad" and len(model.class_names) == 60
    clf, net = model.classifier, model.classifier.net
    assert sum(p.numel() for p in net.parameters()) == 691_048  # the official count (fixture README)
    scale = fx["logits"].abs().max()
    with torch.no_grad():
        logits = net(_project(fx["input"]))
        assert (logits - fx["logits"]).abs().max() <= 1e-4 * scale
        # the one-hot joint and frame inputs broadcast over any batch (the official's fit one size)
        assert (net(_project(fx["input"][2:])) - fx["logits"][2:]).abs().max() <= 1e-4 * scale
        net64 = copy.deepcopy(net).double()
        assert (net64(_project(fx["input"]).double()) - fx["logits_f64"]).abs().max() <= 1e-9

        # the whole input function: the seq arrays through the window and the pipeline, replaying the
        # official loader's first sampling of each clip; the fixture's random clips went into the loader
        # as they are, without the dataset's centring
        x = _clips(fx["sgn_seq"])
        clf.pipeline.translate = False
        clf.pipeline.offsets = lambda lengths: fx["sgn_offsets"][:, :1]
        assert (model(x) - fx["logits"]).abs().max() <= 1e-4 * scale

        # the official test: 5 samplings per clip, their logits averaged by the Classifier
        five = Classifier(net, "ntu25", normalize="none", pipeline="sgn",
                          pipeline_kwargs={"sampling": "random", "samples": 5, "translate": False}).eval()  # fmt: skip
        assert five.samples == 5
        five.pipeline.offsets = lambda lengths: fx["sgn_offsets"]
        assert torch.equal(_official_rows(five.pipeline(x)), fx["input_test5"])
        mean = five(x)
        assert (mean - fx["logits_test5_mean"]).abs().max() <= 1e-4 * fx["logits_test5_mean"].abs().max()


@requires_fixtures
def test_sgn_import_refuses_another_seg(tmp_path):
    sd = dict(_fixture("sgn")["state_dict"])
    sd["tem_embed.cnn.0.cnn.weight"] = torch.zeros(64, 30, 1, 1)  # seg=30
    path = tmp_path / "seg30.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(
        CheckpointError, match=r"tem_embed\.cnn\.0\.cnn\.weight \[64, 30, 1, 1\] \(expected \[64, 20"
    ):
        convert("sgn", path, tmp_path / "out.ckpt", "ntu60_xsub")


@requires_fixtures
def test_sgn_pipeline_reproduces_the_official_loader():
    """The six real clips' seq arrays: the rows after zero-frame removal and turn_two_to_one, and with the
    recorded offsets the official test collate's 5 samplings, bit for bit (it is a gather)."""
    seq, pre = _fixture("preprocess_ctrgcn")["seq"], _fixture("preprocess_sgn")
    x = _clips(seq)
    pipe = build_pipeline("sgn", "ntu25")
    rows, lengths = pipe.rows(x)
    assert lengths.tolist() == [len(r) for r in pre["rows"]] == [103, 82, 140, 100, 71, 124]
    for i, want in enumerate(pre["rows"]):
        assert torch.equal(rows[i, : lengths[i]].transpose(1, 2).flatten(1), want)
        assert not rows[i, lengths[i] :].any()
    assert torch.equal(_official_rows(pipe(x, offsets=pre["offsets"])), pre["input"])
    # from the denoised joints, before the dataset's centring: the pipeline centres them as the script does
    raw = torch.zeros_like(seq)
    for i, d in enumerate(_fixture("preprocess_ctrgcn")["denoised"]):
        raw[i, : d.shape[0], : d.shape[1]] = d
    assert not torch.equal(raw, seq)
    assert torch.equal(_official_rows(pipe(_clips(raw), offsets=pre["offsets"])), pre["input"])


# ---- the pipeline on its own: a per-clip reference of the official loader -------------------------------
SEG = 4


def _reference_rows(clip: np.ndarray) -> np.ndarray:
    """The official rows of one clip ``(C, T, V, 2)``, written as data.py states them: drop the all-zero
    frames, then body 2 alone if body 1 is zero, body 1 alone if body 2 is, else both; pad to SEG."""
    frames = [clip[:, t] for t in range(clip.shape[1]) if clip[:, t].any()]
    rows = []
    for f in frames:  # (C, V, 2)
        if not f[..., 0].any():
            rows.append(f[..., 1])
        elif not f[..., 1].any():
            rows.append(f[..., 0])
        else:
            rows += [f[..., 0], f[..., 1]]
    rows += [np.zeros_like(clip[:, 0, :, 0])] * max(0, SEG - len(rows))
    return np.stack(rows)  # (L, C, V)


def _ragged_clips(dtype=torch.float64) -> torch.Tensor:
    """Five clips ``(5, 3, 12, 25, 2)``: one body, two bodies, body 2 alone in some frames, interior zero
    frames, and one shorter than SEG rows."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 12, 25, 2, generator=g, dtype=dtype)
    x[0, ..., 1] = 0  # one body, 12 rows
    x[1, :, 9:] = 0  # two bodies in 9 frames: 18 rows
    x[2, :, 3:6, :, 0] = 0  # body 2 alone in frames 3..5
    x[2, :, 7, :, 1] = 0
    x[2, :, 10:] = 0
    x[3, :, 2:4] = 0  # interior zero frames
    x[3, :, 8:, :, 1] = 0
    x[4, :, 2:] = 0  # 2 frames of one body: 2 rows, padded to SEG
    x[4, ..., 1] = 0
    return x


def test_sgn_pipeline_middle_sampling_matches_the_reference():
    x = _ragged_clips()
    pipe = build_pipeline("sgn", "ntu25", seg=SEG, translate=False)
    out = pipe(x)
    assert out.shape == (5, 3, SEG, 25, 1) and pipe.samples == 1
    for i in range(5):
        ref = _reference_rows(x[i].numpy())
        d = len(ref) // SEG
        want = ref[np.arange(SEG) * d + (d - 1) // 2]  # the middle row of each segment
        np.testing.assert_array_equal(out[i, ..., 0].permute(1, 0, 2).numpy(), want)
    _, lengths = pipe.rows(x)
    assert lengths.tolist() == [12, 18, 16, 16, 2]
    torch.testing.assert_close(pipe(x), out, rtol=0, atol=0)  # deterministic


def test_sgn_pipeline_random_sampling_is_reproducible_and_uniform():
    x = _ragged_clips()

    def random(seed: int):
        return build_pipeline(
            "sgn", "ntu25", seg=SEG, sampling="random", samples=3, seed=seed, translate=False
        ).eval()

    pipe = random(5)
    out = pipe(x)
    assert out.shape == (5 * 3, 3, SEG, 25, 1) and pipe.samples == 3
    assert torch.equal(pipe(x), out)  # eval mode: a fixed function of the clip
    assert torch.equal(random(5)(x), out)
    assert torch.equal(pipe(x[2:4]), out[6:12])  # the same rows in any batch
    assert not torch.equal(random(6)(x), out)
    _, lengths = pipe.rows(x)
    offsets = pipe.offsets(lengths)  # (5, 3, SEG): one row of each segment [k d, (k + 1) d)
    d = (lengths.clamp_min(SEG) // SEG).view(-1, 1, 1)
    k = torch.arange(SEG).view(1, 1, -1)
    assert bool(((offsets >= k * d) & (offsets < (k + 1) * d)).all())
    for i in range(5):
        ref = _reference_rows(x[i].numpy())
        for s in range(3):
            np.testing.assert_array_equal(out[3 * i + s, ..., 0].permute(1, 0, 2).numpy(), ref[offsets[i, s]])

    # train mode: one sampling per clip, drawn anew on every call, uniform over each segment's d rows
    pipe.train()
    assert pipe.samples == 1 and pipe(x).shape == (5, 3, SEG, 25, 1)
    many = torch.full((4000,), 3 * SEG)  # d = 3
    within = pipe.offsets(many) - torch.arange(SEG) * 3  # (4000, 1, SEG) in {0, 1, 2}
    assert not torch.equal(within, pipe.offsets(many) - torch.arange(SEG) * 3)
    freq = torch.bincount(within.flatten(), minlength=3) / within.numel()
    # 16000 draws: each frequency 1/3 with standard deviation sqrt(2/9 / 16000) = 0.0037; 0.02 is 5 of them
    assert freq.shape == (3,) and (freq - 1 / 3).abs().max() < 0.02


def test_sgn_pipeline_gradient_is_the_gather():
    """The output is linear in x, ``out = A x``: the gradient of ``<w, out>`` is ``A^T w``, so
    ``<grad, x> = <w, out>``; it is zero on padding frames and absent persons, and reaches every row sampled."""
    x = _ragged_clips().requires_grad_(True)
    pipe = build_pipeline("sgn", "ntu25", seg=SEG, sampling="random", samples=2, translate=False).eval()
    out = pipe(x)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    (grad,) = torch.autograd.grad((out * w).sum(), x)
    torch.testing.assert_close((grad * x).sum(), (out * w).sum().detach(), rtol=1e-12, atol=1e-12)
    absent = (x == 0).all(dim=3, keepdim=True).all(dim=1, keepdim=True).expand_as(x)
    assert absent.any() and not grad[absent].any()
    # every row the pipeline took carries its weight: the number of (person, frame) entries with a gradient
    # is the number of distinct real rows sampled
    _, lengths = pipe.rows(x.detach())
    offsets = pipe.offsets(lengths)
    taken = sum(len({int(o) for o in offsets[i].flatten() if o < lengths[i]}) for i in range(5))
    assert int((grad != 0).any(dim=3).any(dim=1).sum()) == taken


def test_sgn_pipeline_in_the_classifier_trains_on_one_fresh_sampling():
    net = build_model("sgn", 5, "ntu25", channels=8, num_frames=SEG, num_persons=2)
    clf = Classifier(net, "ntu25", normalize="none", pipeline="sgn",
                     pipeline_kwargs={"seg": SEG, "sampling": "random", "samples": 3})  # fmt: skip
    x = _ragged_clips(torch.float32)
    assert clf.train().samples == 1 and clf(x).shape == (5, 5)
    assert clf.eval().samples == 3 and clf(x).shape == (5, 5)


def test_sgn_pipeline_refuses_bad_arguments():
    with pytest.raises(ValueError, match="samples must be an integer >= 1, and 1 for the deterministic"):
        build_pipeline("sgn", "ntu25", samples=5)
    with pytest.raises(ValueError, match=r"seg must be an integer >= 1.*sampling must be one of"):
        build_pipeline("sgn", "ntu25", seg=0, sampling="uniform")
    pipe = build_pipeline("sgn", "ntu25", seg=SEG, translate=False)
    x = _ragged_clips()
    with pytest.raises(ValueError, match=r"x must be \(N, C, T, V=25, M\)"):
        pipe(x[:, :, :, :20])
    with pytest.raises(ValueError, match=r"offsets must be \(N=5, S, seg=4\) integer rows"):
        pipe(x, offsets=torch.zeros(5, 1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="offsets must be"):
        pipe(x, offsets=torch.full((5, 1, SEG), 4, dtype=torch.long))  # clip 4 has max(2, 4) = 4 rows
