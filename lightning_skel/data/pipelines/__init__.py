"""The official input pipelines: what each published network's own code does to a clip between its data
files and the network, as differentiable modules that run inside the :class:`~lightning_skel.models.Classifier`.

A pipeline takes raw clips ``x (N, C, T, V, M)`` in metres, zero padded in time and for absent persons
(the readers' output), and returns what the official network sees, ``(N * samples, C', T', V', M')``. With
``samples > 1`` (test-time averaging over several samplings of each clip, SGN's official test) the rows are
clip-major and the classifier averages the logits of each clip's ``samples`` rows. Because the attack
differentiates through the classifier, it differentiates through exactly what the published model saw.

Registered names (``model.pipeline`` in configs; ``build_pipeline(name, layout, **kwargs)``):

* ``stgcn``: ST-GCN's test feeder passes the array through unchanged.
* ``agcn``: 2s-AGCN's (and MS-G3D's) ``pre_normalization``: the padding filled by repeating each person,
  centred on the first person's spine, turned so that its spine points along +z and its shoulders along +x
  (:mod:`~lightning_skel.data.pipelines.agcn`).
* ``ctrgcn``: CTR-GCN's ``seq_translation`` (centred on the first person's spine in its first frame) and its
  test feeder's centre crop resampled to 64 frames (:mod:`~lightning_skel.data.pipelines.ctrgcn`).
* ``sgn``: SGN's loader (:mod:`~lightning_skel.data.pipelines.sgn`): zero frames dropped, two bodies as
  consecutive rows, ``seg`` segments with one row sampled from each (the middle, or at random with several
  samplings per clip as the official test); ``(N * samples, C, seg, V, 1)``.

Example:
    >>> import torch
    >>> pipe = build_pipeline("sgn", "ntu25")
    >>> pipe(torch.randn(2, 3, 30, 25, 2)).shape  # (N * pipe.samples, C, seg, V, 1)
    torch.Size([2, 3, 20, 25, 1])
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lightning_skel.registry import Registry
from lightning_skel.skeleton.layouts import Layout, get_layout

PIPELINES: Registry[type[Pipeline]] = Registry("pipeline")


class Pipeline(nn.Module):
    """Base class of the official input pipelines.

    ``forward(x (N, C, T, V, M))`` returns ``(N * samples, C', T', V', M')``, clip-major.

    Args:
        layout: the skeleton layout of the clips (a name or a :class:`~lightning_skel.skeleton.Layout`).

    Example:
        >>> class Identity(Pipeline):
        ...     takes_score = True  # moves nothing: a score channel may ride along
        ...     def forward(self, x):
        ...         return x
        >>> Identity("kinect20").layout.name, Identity("kinect20").samples
        ('kinect20', 1)
    """

    samples: int = 1  # rows per clip in the output; the classifier averages their logits
    # whether a keypoint-score channel may ride through as one more channel: true only for a pipeline that
    # moves frames and persons but computes nothing from the coordinates (a centring would shift the score)
    takes_score: bool = False

    def __init__(self, layout: str | Layout) -> None:
        super().__init__()
        self.layout = get_layout(layout)

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@PIPELINES.register("stgcn")
class STGCNPipeline(Pipeline):
    """ST-GCN's input (Yan et al., AAAI 2018; yysijie/st-gcn): its NTU test feeder passes the array through.

    ``tools/ntu_gendata.py`` keeps the first two bodies of each frame; that is the reader's part.

    Args:
        layout: the skeleton layout of the clips.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 3, 30, 25, 2)
        >>> STGCNPipeline("ntu25")(x) is x
        True
    """

    takes_score = True

    def forward(self, x: Tensor) -> Tensor:
        return x


def build_pipeline(name: str, layout: str | Layout, **kwargs: Any) -> Pipeline:
    """The registered pipeline ``name`` for ``layout``; an unknown name is a ``KeyError`` listing the known.

    ``kwargs`` are the pipeline's options.

    Example:
        >>> build_pipeline("ctrgcn", "ntu25", window=32).window
        32
    """
    return PIPELINES.get(name)(layout, **kwargs)


from lightning_skel.data.pipelines import agcn, ctrgcn, sgn  # noqa: E402, F401  (register the official pipelines)
