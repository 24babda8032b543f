"""What an attack run writes feeds back and parses: adversarial.npz is a skeleton npz, metrics.json strict
JSON, per_sample.csv blank where nothing was measured, one median, and sweep rows that name their files."""

import torch


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
