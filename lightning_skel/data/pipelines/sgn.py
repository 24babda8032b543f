"""SGN's input pipeline (Zhang et al. CVPR 2020; microsoft/SGN ``data.py``, ``NTUDataLoaders``): what its
loader does to a zero-padded ``seq`` array before the network.

Per clip, as ``Tolist_fix`` and ``sub_seq``: frames whose values are all zero are dropped; each remaining
frame gives one row per person present in it, in person order (``turn_two_to_one``: a frame with both
bodies gives two consecutive rows, one with a single body one row, whichever body it is); the rows are
zero padded to at least ``seg``; of the ``L`` rows, segment ``k`` is rows ``[k d, (k + 1) d)`` with
``d = L // seg`` (the ``L - seg d`` last rows are never sampled), and one row is taken from each segment.
The output is ``(N * samples, C, seg, V, 1)``: a sampling's ``seg`` rows as frames, one "person".

SGN's loader reads the ``seq`` arrays of its ``data/ntu/seq_transformation.py``, centred on the spine of the
first actor's first frame when the dataset is built. With ``translate=True`` (the default) that centring
(:func:`~lightning_skel.data.pipelines.ctrgcn.seq_translation`, the same script as CTR-GCN's) is applied
first, so clips straight from the NTU reader and the already centred arrays of the ``ctrgcn`` reader give
the same rows (the centring of centred clips changes nothing). A person counts as present in a
frame when any of its values is non-zero (:func:`~lightning_skel.skeleton.features.valid_mask`, the mask
the attacks perturb within), so the rows depend on the exact zeros of ``x``: an attack keeps absent persons
and padding frames at zero, and their gradient is zero.

Everything is index arithmetic and one gather over the batch (no loop over clips, frames or persons), so
gradients reach every sampled value of ``x``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_skel.data.pipelines import PIPELINES, Pipeline
from lightning_skel.data.pipelines.ctrgcn import seq_translation
from lightning_skel.skeleton.features import valid_mask
from lightning_skel.skeleton.layouts import Layout
from lightning_skel.utils import check_params

SAMPLING = ("middle", "random")
# a random offset is an integer draw r in [0, 2**31): in a segment of d rows it is floor(r d / 2**31),
# uniform over the d rows (to 1 part in 2**31 / d); integers are untouched by ``.double()`` / ``.half()``
DRAW_RANGE = 2**31


@PIPELINES.register("sgn")
class SGNPipeline(Pipeline):
    """SGN's loader (Zhang et al., CVPR 2020; microsoft/SGN ``data.py``), as a differentiable module.

    ``forward(x (N, C, T, V, M)) -> (N * samples, C, seg, V, 1)``, clip-major (the module doc).

    Args:
        layout: the skeleton layout of the clips.
        seg: rows per sampling, the segments (default 20, official ``main.py``; the network's
            ``num_frames`` must be at least this).
        sampling: ``"middle"`` (default): the middle row of each segment, ``k d + (d - 1) // 2``. It is
            deterministic, so the classifier is one fixed function of the clip (what an attack
            differentiates, and reproducible evaluation) at one network pass per clip, and it is the centre
            of the official uniform draw. ``"random"``: a uniform row in each segment, as the official.
            In eval mode its offsets come from draws made once, at construction, from a generator seeded
            with ``seed``: sampling ``s`` takes the same fraction of every clip's segments, so a clip gets
            the same rows in any batch and on every call, each sampling as distributed as the official's
            (which draws anew per clip from numpy's global RNG; :meth:`forward` replays given offsets).
            In train mode it draws anew from that generator on every call, one sampling per clip, as the
            official training and validation loaders (``sub_seq(train=1)``).
        samples: samplings per clip in eval mode, whose logits the classifier averages (default 1;
            ``sampling="random", samples=5`` is the official test, ``sub_seq(train=2)``); ``"middle"``
            takes 1.
        seed: seeds the ``"random"`` draws (default 1337, the official ``np.random.seed``).
        translate: centre the clips as ``seq_transformation.py`` does first (default true; false for clips
            that are centred otherwise).

    Example:
        >>> pipe = SGNPipeline("ntu25", sampling="random", samples=5).eval()  # the official test
        >>> pipe(torch.randn(2, 3, 30, 25, 2)).shape
        torch.Size([10, 3, 20, 25, 1])
        >>> rows, lengths = pipe.rows(torch.randn(2, 3, 30, 25, 2))  # before padding and sampling
        >>> rows.shape, lengths
        (torch.Size([2, 60, 3, 25]), tensor([60, 60]))
    """

    def __init__(
        self,
        layout: str | Layout,
        seg: int = 20,
        sampling: str = "middle",
        samples: int = 1,
        seed: int = 1337,
        translate: bool = True,
    ) -> None:
        check_params(
            "sgn pipeline",
            {
                "seg": (seg, isinstance(seg, int) and seg >= 1, "an integer >= 1"),
                "sampling": (sampling, sampling in SAMPLING, f"one of {SAMPLING}"),
                "samples": (
                    samples,
                    isinstance(samples, int) and samples >= 1 and (samples == 1 or sampling == "random"),
                    "an integer >= 1, and 1 for the deterministic 'middle' sampling",
                ),
                "seed": (seed, isinstance(seed, int), "an integer"),
                "translate": (translate, isinstance(translate, bool), "true or false"),
            },
        )
        super().__init__(layout)
        self.seg, self.sampling, self.num_samples, self.seed = seg, sampling, samples, seed
        self.translate = translate
        self.generator = torch.Generator().manual_seed(seed)
        draws = torch.randint(0, DRAW_RANGE, (samples, seg), generator=self.generator)
        self.register_buffer("draws", draws, persistent=False)  # (samples, seg), eval-mode "random"

    @property
    def samples(self) -> int:  # type: ignore[override]
        """Rows per clip in the output: one in train mode with ``"random"``, else ``samples``."""
        return 1 if self.training and self.sampling == "random" else self.num_samples

    def _check(self, x: Tensor) -> Tensor:
        """``x`` checked, and centred when ``translate``."""
        v = self.layout.num_joints
        if x.dim() != 5 or x.shape[3] != v:
            raise ValueError(
                f"sgn pipeline: x must be (N, C, T, V={v}, M) clips of layout {self.layout.name!r}, "
                f"got shape {tuple(x.shape)}"
            )
        return seq_translation(x) if self.translate else x

    @staticmethod
    def _count(x: Tensor) -> tuple[Tensor, Tensor]:
        """``cum (N, T * M)``: persons present up to each (frame, person), frame-major; ``lengths (N,)``."""
        present = valid_mask(x)[:, 0, :, 0]  # (N, T, M): some value of the person non-zero
        cum = present.flatten(1).cumsum(1)  # (N, T * M)
        return cum, cum[:, -1]

    @staticmethod
    def _gather(x: Tensor, cum: Tensor, lengths: Tensor, index: Tensor) -> Tensor:
        """Rows ``index (N, K)`` of each clip, zeros at ``index >= lengths``: ``(N, K, C * V)``."""
        n, c, t, v, m = x.shape
        flat = x.permute(0, 2, 4, 1, 3).reshape(n, t * m, c * v)  # (N, T * M, C * V), frame-major
        # row r is the (r + 1)-th present (frame, person): the first position where the count reaches r + 1
        pos = torch.searchsorted(cum, index + 1).clamp_max(t * m - 1)
        rows = flat.gather(1, pos.unsqueeze(-1).expand(-1, -1, c * v))
        return torch.where((index < lengths.unsqueeze(1)).unsqueeze(-1), rows, 0.0)

    def rows(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The rows of each clip before padding and sampling (zero-frame removal and ``turn_two_to_one``):
        ``(N, T * M, C, V)``, zero from row ``lengths`` on, and ``lengths (N,)``."""
        x = self._check(x)
        n, c, t, v, m = x.shape
        cum, lengths = self._count(x)
        index = torch.arange(t * m, device=x.device).expand(n, -1)
        return self._gather(x, cum, lengths, index).view(n, t * m, c, v), lengths

    def offsets(self, lengths: Tensor) -> Tensor:
        """The sampled row of each segment, ``(N, samples, seg)``, for clips of ``lengths (N,)`` rows; in
        train mode with ``"random"`` every call draws anew."""
        d = lengths.clamp_min(self.seg) // self.seg  # (N,) rows per segment after padding
        start = torch.arange(self.seg, device=lengths.device) * d.unsqueeze(1)  # (N, seg)
        if self.sampling == "middle":
            within = ((d - 1) // 2).view(-1, 1, 1)
        else:
            draws = self.draws
            if self.training:
                draws = torch.randint(0, DRAW_RANGE, (len(d), 1, self.seg), generator=self.generator)
            within = draws.to(d.device) * d.view(-1, 1, 1) // DRAW_RANGE  # (N, S, seg) in [0, d)
        return start.unsqueeze(1) + within

    def forward(self, x: Tensor, offsets: Tensor | None = None) -> Tensor:
        """``x (N, C, T, V, M) -> (N * S, C, seg, V, 1)``, clip-major. ``offsets (N, S, seg)`` replays given
        rows (indices into each clip's rows after padding to ``seg``, e.g. recorded from the official
        loader); default :meth:`offsets`, ``S = samples``."""
        x = self._check(x)
        n, c, _, v, _ = x.shape
        cum, lengths = self._count(x)
        if offsets is None:
            offsets = self.offsets(lengths)
        else:
            offsets = torch.as_tensor(offsets, device=x.device)
            padded = lengths.clamp_min(self.seg).view(-1, 1, 1)
            ok = offsets.dim() == 3 and offsets.shape[0] == n and offsets.shape[2] == self.seg
            ok = ok and not offsets.is_floating_point() and offsets.dtype != torch.bool
            if not ok or bool(((offsets < 0) | (offsets >= padded)).any()):
                raise ValueError(
                    f"sgn pipeline: offsets must be (N={n}, S, seg={self.seg}) integer rows in [0, max(L, seg)) "
                    f"of each clip's L rows (L = {lengths.tolist()[:8]}), got shape {tuple(offsets.shape)}, "
                    f"dtype {offsets.dtype}"
                )
        s = offsets.shape[1]
        rows = self._gather(x, cum, lengths, offsets.flatten(1))  # (N, S * seg, C * V)
        return rows.view(n, s, self.seg, c, v).transpose(2, 3).reshape(n * s, c, self.seg, v, 1)
