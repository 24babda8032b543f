"""lightning_skel.load_classifier: a checkpoint's classifier with its whole input function, window included,
and the README's "From Python" example."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import lightning_skel
from lightning_skel.checkpoints import CheckpointError
from lightning_skel.checkpoints import load_classifier as load_bare
from lightning_skel.data.datamodule import SkeletonDataModule
from lightning_skel.run import checkpoint_accuracy, run_train
from tests.helpers import tiny_npz, train_cfg

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny HCN trained on generated clips of 24 frames, seen through a window of 16."""
    tmp = tmp_path_factory.mktemp("victim")
    run_train(
        train_cfg(tmp, ["trainer.max_epochs=4", "optim.optimizer.lr=0.003", f"paths.cache_dir={tmp / 'c'}"])
    )
    return tmp / "run" / "checkpoints" / "last.ckpt"


def raw_test_clips(hp: dict, **changes) -> tuple[SkeletonDataModule, tuple[torch.Tensor, ...]]:
    """The checkpoint's data module (with ``changes``) and its raw test clips ``x, y, lengths``."""
    dm = SkeletonDataModule(**{**hp["data_config"], **changes})
    dm.setup()
    ds = dm.datasets["test"]
    return dm, ds.batch(np.arange(len(ds)))


@torch.no_grad()
def test_raw_clips_of_any_length_give_the_windowed_accuracy(ckpt):
    model = lightning_skel.load_classifier(ckpt)
    bare, hp = load_bare(ckpt)
    dm, (x, y, lengths) = raw_test_clips(hp)
    assert (model.window, model.temporal, model.layout, x.shape[2]) == (16, "resample", "ntu25", 24)
    assert model.class_names == hp["class_names"] and not model.training
    logits = model(x, lengths)
    assert torch.equal(logits, bare(dm.window_batch(x, lengths, train=False)[0]))
    acc = float((logits.argmax(1) == y).double().mean())
    assert acc == pytest.approx(checkpoint_accuracy(str(ckpt)))
    # more padding frames change nothing: only each clip's valid frames are windowed
    longer = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 17))
    assert torch.equal(model(longer, lengths), logits)
    # the classifier behind the window takes windowed clips; raw ones straight into it score otherwise
    assert not torch.allclose(bare(x), logits)
    xw, lw = model.apply_window(x, lengths)
    assert xw.shape[2] == 16 and torch.equal(model.classifier(xw), logits) and (lw == 16).all()


@torch.no_grad()
def test_the_checkpoints_temporal_mode_is_applied(ckpt, tmp_path):
    """A checkpoint trained with ``temporal: pad`` is windowed by padding / cutting, not resampling."""
    raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    raw["hyper_parameters"]["data_config"]["temporal"] = "pad"
    torch.save(raw, tmp_path / "pad.ckpt")
    model = lightning_skel.load_classifier(tmp_path / "pad.ckpt")
    bare, hp = load_bare(ckpt)
    dm, (x, _, lengths) = raw_test_clips(hp, temporal="pad")
    assert model.temporal == "pad"
    assert torch.equal(model(x, lengths), bare(dm.window_batch(x, lengths, train=False)[0]))
    assert torch.equal(model(x, lengths), bare(x[:, :, :16]))


def test_bad_clips_and_checkpoints_get_clear_errors(ckpt, tmp_path):
    model = lightning_skel.load_classifier(ckpt)
    x = torch.zeros(2, 3, 20, 25, 2)
    with pytest.raises(
        ValueError, match=r"lengths must be \(N,\) = \(2,\) integers in \[1, T = 20\].*\[5, 21\]"
    ):
        model(x, torch.tensor([5, 21]))
    with pytest.raises(ValueError, match=r"lengths must be .* got shape \(3,\)"):
        model(x, torch.tensor([5, 6, 7]))
    with pytest.raises(ValueError, match=r"x must be \(N, C, T, V, M\), got shape \(3, 20, 25, 2\)"):
        model(x[0])
    with pytest.raises(CheckpointError, match="no such file"):
        lightning_skel.load_classifier(tmp_path / "missing.ckpt")


def test_readme_python_example_runs(ckpt, tmp_path, monkeypatch):
    """The README's "From Python" example, run as written against a tiny checkpoint and clips of 30
    frames (the checkpoint's window is 16)."""
    section = README.read_text().split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for path in ("runs/demo/checkpoints/last.ckpt", "clips.npz"):
        assert f'"{path}"' in code, path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "checkpoints" / "last.ckpt").symlink_to(ckpt)
    tiny_npz(tmp_path / "clips.npz", num_per_class=1, frames=30, seed=5)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    pred, res, y = scope["pred"], scope["res"], scope["y"]
    assert pred.shape == (12,) and scope["x"].shape[2] == 30
    assert res.x_adv.shape == scope["xw"].shape == (12, 3, 16, 25, 2)
    assert torch.equal(res.attacked, pred == y)
    assert not res.success[~res.attacked].any() and (res.grad_evals[~res.attacked] == 0).all()
    assert (res.grad_evals[res.attacked] > 0).all()
