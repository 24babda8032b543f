"""The published models end to end: from the raw NTU ``.skeleton`` files and an official checkpoint to the
official logits, and to an attack run. Each official state_dict of the fixtures (../shared/fixtures/official,
README there) is imported; the six sample recordings are prepared with the matching repository's body
selection (``prepare ntu --pipeline``); the imported classifier's whole input function (the window, the
official pipeline, the network) gives, on the real clip S001C001P001R001A001, the logits the official code
gave on its own preprocessing of that clip (the fixtures' clip 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DATA
from hydra import compose, initialize_config_dir

import lightning_skel
from lightning_skel.attack_run import run_attack
from lightning_skel.data.io import load_npz, save_npz
from lightning_skel.data.prepare import prepare
from lightning_skel.models.convert import OFFICIAL_FORMATS, convert
from tests.helpers import CONFIGS

FIXTURES = DATA.parent / "fixtures" / "official"
NTU = DATA / "ntu60_samples"
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(
        not (FIXTURES.is_dir() and NTU.is_dir()),
        reason=f"official fixtures or NTU samples not at {DATA.parent}",
    ),
]
CLIP = "S001C001P001R001A001"  # the real clip of every model fixture (clip 2)


def _imported(tmp_path, name: str, split: str | None = None) -> tuple[dict, object, dict]:
    """The fixture of ``name``, its import, and the six recordings prepared with its body selection."""
    fx = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    official = tmp_path / f"{name}_official.pt"
    torch.save({"state_dict": fx["state_dict"]}, official)
    ckpt = tmp_path / f"{name}.ckpt"
    hp = convert(name, official, ckpt, "ntu60_xsub")
    pipeline = OFFICIAL_FORMATS[name].pipeline
    assert hp["data_config"]["source"]["options"]["pipeline"] == pipeline  # the reader's body selection
    npz = prepare("ntu", NTU, tmp_path / f"ntu_{pipeline}.npz", split=split, progress=False,
                  options={"pipeline": pipeline})  # fmt: skip
    return fx, ckpt, load_npz(npz.out)


@pytest.mark.parametrize("name", ["stgcn", "agcn", "ctrgcn", "msg3d"])
def test_raw_ntu_files_through_the_imported_checkpoint_give_the_official_logits(tmp_path, name):
    fx, ckpt, data = _imported(tmp_path, name)
    model = lightning_skel.load_classifier(ckpt)
    i = list(data["sample_name"]).index(CLIP)
    x = torch.from_numpy(data["x"][i : i + 1])
    lengths = torch.from_numpy(data["lengths"][i : i + 1]).long()
    with torch.no_grad():
        logits = model(x, lengths)
    want = fx["logits"][2:3]
    # float32, a different order of the same operations: within 1e-4 of the largest |logit| (README)
    assert (logits - want).abs().max() <= 1e-4 * fx["logits"].abs().max()
    assert logits.argmax(1) == want.argmax(1)


def test_admm_on_an_imported_checkpoint_keeps_padding_and_absent_persons(tmp_path):
    """attack.py on the imported 2s-AGCN over two of the cross-subject training clips of the six recordings
    (given as the prepared npz; one ADMM step, the network is the full official one): the adversarial clips
    are the official 300 zero-padded frames and keep padding frames and absent persons bit for bit."""
    _, ckpt, data = _imported(tmp_path, "agcn", split="xsub60")
    # labelled as the (randomly weighted) imported model labels them, so that every clip is attacked
    model = lightning_skel.load_classifier(ckpt)
    with torch.no_grad():
        pred = model(torch.from_numpy(data["x"]), torch.from_numpy(data["lengths"]).long()).argmax(1)
    save_npz(tmp_path / "relabelled.npz", {**data, "y": pred.numpy()})
    overrides = [f"ckpt={ckpt}", f"data.path={tmp_path / 'relabelled.npz'}", "data.split=train", "attack=admm",
                 "attack.max_iter=1", "attack.delta_steps=2", "limit=2", "subset=spread", "threads=1", "batch_size=6",
                 f"out_dir={tmp_path / 'attack'}"]  # fmt: skip
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        metrics = run_attack(compose("attack", overrides=overrides))
    out = np.load(tmp_path / "attack" / "adversarial.npz")
    x, x_adv, lengths = out["x_clean"], out["x"], out["lengths"]
    assert x.shape == (2, 3, 300, 25, 2)
    frames = np.arange(300)[None, :] >= lengths[:, None]  # (6, 300) padding frames
    padding = np.broadcast_to(frames[:, None, :, None, None], x.shape)
    absent = np.broadcast_to((x == 0).all(axis=(1, 2, 3), keepdims=True), x.shape)
    assert padding.any() and absent.any()  # one-person clips, shorter than 300 frames
    np.testing.assert_array_equal(x_adv[padding | absent], x[padding | absent])
    assert out["attacked"].all() and metrics["clean_accuracy"] == 1.0
    valid = ~(padding | absent)
    assert all((x_adv[i][valid[i]] != x[i][valid[i]]).any() for i in range(2))  # every clip was perturbed
