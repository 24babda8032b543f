"""Import a published checkpoint of an official implementation as a project checkpoint.

``python -m lightning_skel.models.convert MODEL OFFICIAL.pt OUT.ckpt --data DATA`` reads the official file
(``weights_only=True``), maps its state_dict onto the project's network built with the official graph, and
writes a checkpoint that describes itself as one trained here does (model name and kwargs, layout, class
names, preprocessing, the graph as buffers), so ``load_classifier`` (attack.py, ``init_from``) reads it.

Each model's key mapping is an :class:`OfficialFormat` in :data:`OFFICIAL_FORMATS`: for every entry of the
project's state_dict, the official keys it is computed from (with their shapes) and how. The file must
hold exactly those keys: anything else is refused with the missing and unexpected keys and their shapes.

The checkpoint records the official input pipeline of the format (``pipeline``: ``stgcn``; ``agcn`` for
2s-AGCN and MS-G3D, whose data preparation is 2s-AGCN's; ``ctrgcn``; ``sgn``; see
:mod:`lightning_skel.data.pipelines`) and no normalisation of its own (``normalize="none"``, joint modality):
the classifier it loads as maps raw clips through that pipeline to the official model's input format, and
``classifier.net`` is the official network on that format.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lightning_skel.checkpoints import CheckpointError, load_checkpoint
from lightning_skel.models.registry import build_model
from lightning_skel.utils import atomic_open

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The official NTU models see every clip zero-padded to 300 frames (their data preparation's max_frame).
OFFICIAL_WINDOW = 300

# One project entry's sources: ``[(official key, official shape), ...]`` and the function that computes
# the project tensor from those tensors (in that order); no sources keeps the project's own value.
Sources = tuple[list[tuple[str, tuple[int, ...]]], Callable[[list[Tensor]], Tensor]]
Rule = Callable[[str, Tensor, Mapping[str, Tensor]], Sources | None]


@dataclass(frozen=True)
class OfficialFormat:
    """How one official implementation's state_dict maps onto a registered project model.

    Args:
        model: the project model's registry name.
        repo: the official repository, ``owner/name``.
        layout: the layout of the official graph.
        model_kwargs: with ``layout``, they build the official network.
        rules: tried in order for each project key, ``rule(key, tensor, project_state)``; the first that
            returns sources wins (:func:`rename`, :func:`keep`).
        sizes: ``sizes(official_state)`` reads ``num_classes``, ``in_channels`` and ``num_persons``.
        aliases: ``(regex, replacement)`` renames of official keys, applied before matching (the names of
            some released files; default none).
        pipeline: the official input pipeline the imported checkpoint records
            (:data:`~lightning_skel.data.pipelines.PIPELINES`; default ``None``, none).

    Example:
        >>> fmt = get_format("stgcn")
        >>> fmt.repo, fmt.layout, fmt.pipeline
        ('yysijie/st-gcn', 'ntu25', 'stgcn')
    """

    model: str
    repo: str
    layout: str
    model_kwargs: dict[str, Any]
    rules: tuple[Rule, ...]
    sizes: Callable[[Mapping[str, Tensor]], dict[str, int]]
    aliases: tuple[tuple[str, str], ...] = field(default=())
    pipeline: str | None = None


OFFICIAL_FORMATS: dict[str, OfficialFormat] = {}


def register_format(name: str, fmt: OfficialFormat) -> None:
    """Register the official format ``fmt`` under ``name``; a name already taken is a ``KeyError``.

    Example:
        >>> from dataclasses import replace
        >>> register_format("stgcn_fork", replace(get_format("stgcn"), repo="me/st-gcn"))
        >>> get_format("stgcn_fork").repo
        'me/st-gcn'
        >>> del OFFICIAL_FORMATS["stgcn_fork"]
    """
    if name in OFFICIAL_FORMATS:
        raise KeyError(f"official format {name!r} is already registered")
    OFFICIAL_FORMATS[name] = fmt


def rename(pattern: str, repl: str, fn: Callable[[Tensor], Tensor] | None = None,
           shape: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None) -> Rule:  # fmt: skip
    r"""A rule for one-to-one entries: a project key that matches comes from one official key.

    Args:
        pattern: a regex the project key must match in full.
        repl: the official key, ``re`` replacement syntax (``\1`` ...).
        fn: official tensor -> project tensor (default as is).
        shape: project shape -> official shape (default the same).

    Example:
        >>> rule = rename(r"fc\.(.+)", r"fcn.\1")
        >>> sources, fn = rule("fc.bias", torch.zeros(5), {})
        >>> sources
        [('fcn.bias', (5,))]
    """
    rx = re.compile(pattern)

    def rule(key: str, t: Tensor, state: Mapping[str, Tensor]) -> Sources | None:
        m = rx.fullmatch(key)
        if m is None:
            return None
        src = m.expand(repl)
        return [(src, (shape or (lambda s: s))(tuple(t.shape)))], lambda ts: (fn or (lambda x: x))(ts[0])

    return rule


def keep(pattern: str) -> Rule:
    r"""A rule for project entries the official file does not hold: the project model's own value.

    The official code keeps its fixed graph as a plain attribute; the project's is a buffer built from the
    official graph.

    Example:
        >>> rule = keep(r"l\d+\.gcn1\.A")
        >>> sources, fn = rule("l1.gcn1.A", torch.ones(2), {})
        >>> sources, fn([])
        ([], tensor([1., 1.]))
    """
    rx = re.compile(pattern)
    return lambda key, t, state: ([], lambda ts: t) if rx.fullmatch(key) else None


def _transpose(t: Tensor) -> Tensor:
    """The official graphs are ``A[k, j, i]`` (weight of joint j in the update of i), the project's the
    transpose."""
    return t.transpose(-1, -2).contiguous()


def unwrap(obj: Any, path: str | Path) -> dict[str, Tensor]:
    """The state_dict inside what an official training script saved.

    The dict itself, or the one under ``'state_dict'`` / ``'model'``; ``module.`` prefixes (DataParallel)
    are removed. Anything else is a :class:`~lightning_skel.checkpoints.CheckpointError` naming ``path``.

    Example:
        >>> list(unwrap({"state_dict": {"module.fc.weight": torch.zeros(2, 3)}}, "official.pt"))
        ['fc.weight']
    """
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        kind = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path}: not an official state_dict (a dict of tensors, or one under 'state_dict' / 'model'), "
            f"got {kind}"
        )
    out: dict[str, Tensor] = {}
    for k, v in obj.items():
        name = k.replace("module.", "")
        if name in out:
            raise CheckpointError(
                f"{path}: keys {k!r} and another both name {name!r} once 'module.' is removed"
            )
        out[name] = v
    return out


def map_state_dict(
    fmt_name: str,
    official: Mapping[str, Tensor],
    project: Mapping[str, Tensor],
    path: str | Path = "state_dict",
) -> dict[str, Tensor]:
    """The project state_dict computed from the ``official`` one by format ``fmt_name``'s rules.

    A file that does not fit is a :class:`~lightning_skel.checkpoints.CheckpointError` listing the missing,
    unexpected and mis-shaped official keys with their shapes.

    Args:
        fmt_name: a name of :data:`OFFICIAL_FORMATS`.
        official: the official state_dict (:func:`unwrap`).
        project: the state_dict of the project network to fill.
        path: the file's name for the errors.

    Example:
        >>> from lightning_skel.models import build_model
        >>> net = build_model("ctrgcn", 60, "ntu25", graph="official_ntu", channels=8, num_blocks=2)
        >>> official = {k: v for k, v in net.state_dict().items() if not k.endswith(".gcn1.A")}
        >>> sorted(set(map_state_dict("ctrgcn", official, net.state_dict())) - set(official))
        ['l1.gcn1.A', 'l2.gcn1.A']
    """
    fmt = get_format(fmt_name)
    renamed = apply_aliases(fmt_name, official, path)
    plans: dict[str, Sources] = {}
    for key, t in project.items():
        for rule in fmt.rules:
            plan = rule(key, t, project)
            if plan is not None:
                plans[key] = plan
                break
        else:
            raise KeyError(f"official format {fmt_name!r} has no rule for the project's {key!r}")
    expected = {src: shape for sources, _ in plans.values() for src, shape in sources}
    missing = [f"{k} {list(s)}" for k, s in expected.items() if k not in renamed]
    unexpected = [f"{k} {list(v.shape)}" for k, v in renamed.items() if k not in expected]
    wrong = [
        f"{k} {list(renamed[k].shape)} (expected {list(s)})"
        for k, s in expected.items()
        if k in renamed and tuple(renamed[k].shape) != s
    ]
    if missing or unexpected or wrong:
        parts = [f"{name} ({len(ks)}): {', '.join(ks)}" for name, ks in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if ks]  # fmt: skip
        raise CheckpointError(
            f"{path}: not an official {fmt_name} checkpoint ({fmt.repo}) as the project maps it; "
            + "; ".join(parts)
        )
    return {key: fn([renamed[src] for src, _ in sources]) for key, (sources, fn) in plans.items()}


def apply_aliases(
    fmt_name: str, official: Mapping[str, Tensor], path: str | Path = "state_dict"
) -> dict[str, Tensor]:
    """``official`` with the aliases of format ``fmt_name`` applied: its keys in the names the rules expect.

    Example:
        >>> list(apply_aliases("agcn", {"l1a.gcn1.conv_res.0.weight": torch.zeros(1)}))
        ['l1.gcn1.down.0.weight']
    """
    renamed: dict[str, Tensor] = {}
    for k, v in official.items():
        name = k
        for pattern, repl in get_format(fmt_name).aliases:
            name = re.sub(pattern, repl, name)
        if name in renamed:
            raise CheckpointError(
                f"{path}: keys {k!r} and another both stand for {name!r} ({fmt_name} aliases)"
            )
        renamed[name] = v
    return renamed


def get_format(name: str) -> OfficialFormat:
    """The official format registered as ``name``; an unknown name is a ``KeyError`` listing them.

    Example:
        >>> get_format("msg3d").repo
        'kenziyuliu/MS-G3D'
    """
    if name not in OFFICIAL_FORMATS:
        raise KeyError(f"no official format for model {name!r}; known: {', '.join(sorted(OFFICIAL_FORMATS))}")
    return OFFICIAL_FORMATS[name]


def build_official(name: str, official: Mapping[str, Tensor], path: str | Path = "state_dict"):
    """The project network of format ``name`` holding the ``official`` state_dict, in eval mode.

    Returns:
        The network, and the sizes read off the file (``num_classes``, ``in_channels``, ``num_persons``).

    Example:
        >>> from lightning_skel.models import build_model
        >>> net = build_model("ctrgcn", 60, "ntu25", graph="official_ntu")
        >>> official = {k: v for k, v in net.state_dict().items() if ".A" not in k}  # the graph is not saved
        >>> imported, sizes = build_official("ctrgcn", official)
        >>> sizes
        {'num_classes': 60, 'in_channels': 3, 'num_persons': 2}
    """
    fmt = get_format(name)
    official = apply_aliases(name, official, path)
    try:
        sizes = fmt.sizes(official)
    except KeyError as e:  # no head or input layer: the full list of what is missing and unexpected
        default = build_model(fmt.model, 60, fmt.layout, **fmt.model_kwargs)
        map_state_dict(name, official, default.state_dict(), path)
        raise CheckpointError(f"{path}: no {e} in the file") from None
    net = build_model(fmt.model, sizes["num_classes"], fmt.layout, in_channels=sizes["in_channels"],
                      num_persons=sizes["num_persons"], **fmt.model_kwargs)  # fmt: skip
    net.load_state_dict(map_state_dict(name, official, net.state_dict(), path))
    return net.eval(), sizes


# ---- ST-GCN (yysijie/st-gcn, net/st_gcn.py) -------------------------------------------------------------
_B = r"blocks\.(\d+)\."
_S = r"st_gcn_networks.\1."


def _stgcn_sizes(sd: Mapping[str, Tensor]) -> dict[str, int]:
    v = sd["A"].shape[-1]
    # persons are folded into the batch, so the weights do not fix their number: NTU's two
    return {"num_classes": sd["fcn.weight"].shape[0], "in_channels": sd["data_bn.weight"].shape[0] // v,
            "num_persons": 2}  # fmt: skip


register_format(
    "stgcn",
    OfficialFormat(
        model="stgcn",
        repo="yysijie/st-gcn",
        layout="ntu25",
        model_kwargs={"graph": "official_ntu", "dropout": 0.5},
        pipeline="stgcn",
        sizes=_stgcn_sizes,
        rules=(
            rename(r"data_bn\.(.+)", r"data_bn.\1"),
            rename(_B + r"A", "A", _transpose),  # one graph for all blocks
            rename(_B + r"importance", r"edge_importance.\1", _transpose),
            rename(_B + r"gcn\.(weight|bias)", _S + r"gcn.conv.\2"),
            rename(_B + r"tcn\.2\.conv\.(.+)", _S + r"tcn.2.\2"),
            rename(_B + r"(tcn|residual)\.(\d)\.(.+)", _S + r"\2.\3.\4"),
            rename(r"fc\.weight", "fcn.weight", lambda t: t.flatten(1), lambda s: (*s, 1, 1)),
            rename(r"fc\.bias", "fcn.bias"),
        ),
    ),
)


# ---- 2s-AGCN (lshiwjx/2s-AGCN, model/agcn.py) -----------------------------------------------------------
def _agcn_subsets(proj: str, official: str) -> Rule:
    """The project's stacked embeddings / subset convolution from the official per-subset lists. The
    project's ``theta`` (the embedding of the updated joint) is the official ``conv_b``, ``phi`` is
    ``conv_a``; the K subset convolutions ``conv_d`` are one convolution over the K stacked inputs, their
    biases the rows of ``subset_bias``."""
    rx = re.compile(
        _B + r"gcn\." + proj + r"\.(weight|bias)" if proj != "subset_bias" else _B + r"gcn\.(subset_bias)"
    )

    def rule(key: str, t: Tensor, state: Mapping[str, Tensor]) -> Sources | None:
        m = rx.fullmatch(key)
        if m is None:
            return None
        block, what = int(m.group(1)), m.group(2)
        k = state[f"blocks.{block}.gcn.A"].shape[0]
        if what == "subset_bias":
            srcs = [f"l{block + 1}.gcn1.{official}.{i}.bias" for i in range(k)]
            return [(s, tuple(t.shape[1:])) for s in srcs], torch.stack
        srcs = [f"l{block + 1}.gcn1.{official}.{i}.{what}" for i in range(k)]
        if official != "conv_d":
            shape = (t.shape[0] // k, *t.shape[1:])
            return [(s, shape) for s in srcs], lambda ts: torch.cat(ts, 0)
        shape = (t.shape[0], t.shape[1] // k, *t.shape[2:])
        return [(s, shape) for s in srcs], lambda ts: torch.cat(ts, 1)

    return rule


def _agcn_block(pattern: str, official: str, fn: Callable[[Tensor], Tensor] | None = None) -> Rule:
    """A one-to-one 2s-AGCN block entry: block i of the project is the official ``l{i+1}``."""
    rx = re.compile(_B + pattern)

    def rule(key: str, t: Tensor, state: Mapping[str, Tensor]) -> Sources | None:
        m = rx.fullmatch(key)
        if m is None:
            return None
        src = f"l{int(m.group(1)) + 1}." + m.expand(official)
        return [(src, tuple(t.shape))], lambda ts: (fn or (lambda x: x))(ts[0])

    return rule


def _agcn_sizes(sd: Mapping[str, Tensor]) -> dict[str, int]:
    c = sd["l1.gcn1.conv_d.0.weight"].shape[1]
    v = sd["l1.gcn1.PA"].shape[-1]
    return {"num_classes": sd["fc.weight"].shape[0], "in_channels": c,
            "num_persons": sd["data_bn.weight"].shape[0] // (c * v)}  # fmt: skip


register_format(
    "agcn",
    OfficialFormat(
        model="agcn",
        repo="lshiwjx/2s-AGCN",
        layout="ntu25",
        model_kwargs={"graph": "official_ntu"},
        pipeline="agcn",
        sizes=_agcn_sizes,
        # released checkpoints name the first blocks' gcn residual conv_res (lshiwjx/2s-AGCN#67, #32) and,
        # in the cross-subject bone model, the first block l1a (#32)
        aliases=((r"^l1a\.", "l1."), (r"^(l\d+\.gcn1\.)conv_res\.", r"\1down.")),
        rules=(
            rename(r"data_bn\.(.+)", r"data_bn.\1"),
            rename(r"fc\.(.+)", r"fc.\1"),
            keep(
                _B + r"gcn\.A"
            ),  # the official fixed graph is a plain attribute, built from graph/ntu_rgb_d.py
            _agcn_block(r"gcn\.B", r"gcn1.PA", _transpose),
            _agcn_subsets("theta", "conv_b"),
            _agcn_subsets("phi", "conv_a"),
            _agcn_subsets("conv", "conv_d"),
            _agcn_subsets("subset_bias", "conv_d"),
            _agcn_block(r"gcn\.(bn|down)\.(.+)", r"gcn1.\2.\3"),
            _agcn_block(r"tcn\.0\.conv\.(.+)", r"tcn1.conv.\2"),
            _agcn_block(r"tcn\.1\.(.+)", r"tcn1.bn.\2"),
            _agcn_block(r"residual\.0\.conv\.(.+)", r"residual.conv.\2"),
            _agcn_block(r"residual\.1\.(.+)", r"residual.bn.\2"),
        ),
    ),
)


# ---- SGN (microsoft/SGN, model.py) ----------------------------------------------------------------------
def _sgn_sizes(sd: Mapping[str, Tensor]) -> dict[str, int]:
    # the official network sees one row stream (its loader interleaves the two bodies: the sgn pipeline);
    # the project's takes the data's two persons, which the pipeline turns into that stream
    return {"num_classes": sd["fc.weight"].shape[0], "in_channels": sd["joint_embed.cnn.1.cnn.weight"].shape[1],
            "num_persons": 2}  # fmt: skip


def _sgn_kernel(t: Tensor) -> Tensor:
    """The official ``(C_out, C_in, 1, 3)`` kernel over ``(V, T)`` as the project's ``(C_out, C_in, 3, 1)``
    over ``(T, V)``."""
    return t.transpose(2, 3).contiguous()


def _sgn_kernel_shape(s: tuple[int, ...]) -> tuple[int, ...]:
    return (s[0], s[1], s[3], s[2])


register_format(
    "sgn",
    OfficialFormat(
        model="sgn",
        repo="microsoft/SGN",
        layout="ntu25",
        # SGN(num_classes, 'NTU', seg=20, args, bias=True): 64-d embeddings, 20 segments
        model_kwargs={"channels": 64, "num_frames": 20},
        sizes=_sgn_sizes,
        pipeline="sgn",
        rules=(
            rename(r"(joint|dif)_embed\.bn\.(.+)", r"\1_embed.cnn.0.bn.\2"),  # norm_data
            rename(r"(joint|dif)_embed\.mlp\.0\.(.+)", r"\1_embed.cnn.1.cnn.\2"),
            rename(r"(joint|dif)_embed\.mlp\.2\.(.+)", r"\1_embed.cnn.3.cnn.\2"),
            rename(r"(spa|tem)_embed\.mlp\.(0|2)\.(.+)", r"\1_embed.cnn.\2.cnn.\3"),
            rename(r"compute_g\.theta\.(.+)", r"compute_g1.g1.cnn.\1"),
            rename(r"compute_g\.phi\.(.+)", r"compute_g1.g2.cnn.\1"),
            *(rename(rf"gcn\.{i}\.(w|w1)\.(.+)", rf"gcn{i + 1}.\1.cnn.\2") for i in range(3)),
            *(rename(rf"gcn\.{i}\.bn\.(.+)", rf"gcn{i + 1}.bn.\1") for i in range(3)),
            rename(r"frame_cnn\.0\.conv\.weight", "cnn.cnn1.weight", _sgn_kernel, _sgn_kernel_shape),
            rename(r"frame_cnn\.0\.conv\.bias", "cnn.cnn1.bias"),
            rename(r"frame_cnn\.1\.(.+)", r"cnn.bn1.\1"),
            rename(r"frame_cnn\.4\.(.+)", r"cnn.cnn2.\1"),
            rename(r"frame_cnn\.5\.(.+)", r"cnn.bn2.\1"),
            rename(r"fc\.(.+)", r"fc.\1"),
        ),
    ),
)


# ---- CTR-GCN (Uason-Chen/CTR-GCN, model/ctrgcn.py) -------------------------------------------------------
# The project's network holds the official keys as they are; the fixed graph, a plain attribute there, is
# the project's buffer ``l*.gcn1.A`` built from the official graph (graph/ntu_rgb_d.py).
def _ctrgcn_sizes(sd: Mapping[str, Tensor]) -> dict[str, int]:
    c = sd["l1.gcn1.convs.0.conv3.weight"].shape[1]
    v = sd["l1.gcn1.PA"].shape[-1]
    return {"num_classes": sd["fc.weight"].shape[0], "in_channels": c,
            "num_persons": sd["data_bn.weight"].shape[0] // (c * v)}  # fmt: skip


register_format(
    "ctrgcn",
    OfficialFormat(
        model="ctrgcn",
        repo="Uason-Chen/CTR-GCN",
        layout="ntu25",
        model_kwargs={"graph": "official_ntu"},
        pipeline="ctrgcn",
        sizes=_ctrgcn_sizes,
        rules=(keep(r"l\d+\.gcn1\.A"), rename(r"(.+)", r"\1")),
    ),
)


# ---- MS-G3D (kenziyuliu/MS-G3D, model/msg3d.py) ----------------------------------------------------------
# The official keys as they are; the binary graphs the official code keeps as plain attributes (its
# ``A_powers`` / ``A_scales`` are derived from them) are the project's ``*.A_binary`` buffers.
def _msg3d_sizes(sd: Mapping[str, Tensor]) -> dict[str, int]:
    scales_v, v = sd["sgcn1.0.A_res"].shape  # (num_gcn_scales * V, V)
    c = sd["sgcn1.0.mlp.layers.0.weight"].shape[1] // (scales_v // v)
    return {"num_classes": sd["fc.weight"].shape[0], "in_channels": c,
            "num_persons": sd["data_bn.weight"].shape[0] // (c * v)}  # fmt: skip


register_format(
    "msg3d",
    OfficialFormat(
        model="msg3d",
        repo="kenziyuliu/MS-G3D",
        layout="ntu25",
        # config/nturgbd-cross-subject/train_joint.yaml
        model_kwargs={"graph": "official_ntu", "num_gcn_scales": 13, "num_g3d_scales": 6},
        pipeline="agcn",  # MS-G3D's data_gen is 2s-AGCN's, bit for bit
        sizes=_msg3d_sizes,
        rules=(keep(r".+\.A_binary"), rename(r"(.+)", r"\1")),
    ),
)


# ---- the project checkpoint ----------------------------------------------------------------------------
def data_config(data: str, pipeline: str | None = None) -> tuple[dict[str, Any], str, tuple[str, ...]]:
    """The data config ``configs/data/<data>.yaml`` of an imported checkpoint, its layout and class names.

    The config is resolved, with the official window: :data:`OFFICIAL_WINDOW` zero-padded frames. Raw NTU
    files are read with the body selection of the official ``pipeline`` (the NTU reader's option of that
    name: each repository picks the persons of a clip its own way).

    Example:
        >>> cfg, layout, names = data_config("ntu60_xsub", "stgcn")
        >>> layout, cfg["window"], cfg["temporal"], cfg["source"]["options"]
        ('ntu25', 300, 'pad', {'pipeline': 'stgcn'})
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lightning_skel.data.readers import READERS

    known = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml") if not p.stem.startswith("_"))
    if data not in known:
        raise ValueError(f"--data {data!r}: no configs/data/{data}.yaml; known: {', '.join(known)}")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={data}"])
    cfg_data = OmegaConf.to_container(cfg.data, resolve=True)
    source = cfg_data.get("source") or {}
    if source.get("format") not in READERS.names():
        raise ValueError(f"--data {data!r}: an official checkpoint needs a data set read from its source "
                         f"files (data.source.format one of {READERS.names()}), got source {source!r}")  # fmt: skip
    reader = READERS.get(source["format"])
    cfg_data = {**cfg_data, "window": OFFICIAL_WINDOW, "temporal": "pad"}
    if source["format"] == "ntu" and pipeline is not None:
        options = {**(source.get("options") or {}), "pipeline": pipeline}
        cfg_data["source"] = {**source, "options": options}
    return cfg_data, reader.layout, tuple(reader.class_names)


def convert(model: str, official_path: str | Path, out_path: str | Path, data: str) -> dict[str, Any]:
    """Write the project checkpoint of an official checkpoint file; returns its hyper-parameters.

    Args:
        model: a name of :data:`OFFICIAL_FORMATS`.
        official_path: the official file (read with ``weights_only=True``).
        out_path: the project checkpoint to write (atomically).
        data: the data config it classifies (``configs/data``), e.g. ``ntu60_xsub``.

    Example:
        >>> from lightning_skel.models import build_model
        >>> net = build_model("ctrgcn", 60, "ntu25", graph="official_ntu")
        >>> torch.save({k: v for k, v in net.state_dict().items() if ".A" not in k}, "official.pt")
        >>> hp = convert("ctrgcn", "official.pt", "ctrgcn.ckpt", data="ntu60_xsub")
        >>> hp["model"], hp["num_classes"], hp["pipeline"], hp["window"]
        ('ctrgcn', 60, 'ctrgcn', 300)
    """
    from lightning_skel.systems.classification import ClassificationSystem

    fmt = get_format(model)
    cfg_data, layout, names = data_config(data, fmt.pipeline)  # bad arguments fail before the file is read
    if layout != fmt.layout:
        raise ValueError(
            f"--data {data!r} is layout {layout!r}; the official {model} graph is {fmt.layout!r}"
        )
    official = unwrap(load_checkpoint(official_path, "official checkpoint"), official_path)
    net, sizes = build_official(model, official, official_path)
    if len(names) < sizes["num_classes"]:
        raise CheckpointError(
            f"{official_path}: {sizes['num_classes']} classes, data {data!r} names {len(names)}"
        )
    hp = {
        "model": fmt.model,
        "num_classes": sizes["num_classes"],
        "layout": layout,
        "class_names": list(names[: sizes["num_classes"]]),
        "in_channels": sizes["in_channels"],
        "num_persons": sizes["num_persons"],
        "window": OFFICIAL_WINDOW,
        "model_kwargs": dict(fmt.model_kwargs),
        "normalize": "none",  # the official pipeline makes the official model's input format
        "modality": "joint",
        "pipeline": fmt.pipeline,
        "data_name": cfg_data["name"],
        "data_config": cfg_data,
    }
    system = ClassificationSystem(**hp)
    system.classifier.net.load_state_dict(net.state_dict())
    ckpt = {
        "hyper_parameters": hp,
        "state_dict": system.state_dict(),
        "imported_from": {"repo": fmt.repo, "file": Path(official_path).name, "format": model},
    }
    with atomic_open(out_path, "wb") as f:
        torch.save(ckpt, f)
    return hp


def main(argv: list[str] | None = None) -> None:
    """The command line of the module doc; a bad argument or file exits with code 2 and one line on stderr.

    Example:
        >>> main(["ctrgcn", "official.pt", "ctrgcn.ckpt", "--data", "ntu61"])  # no configs/data/ntu61.yaml
        Traceback (most recent call last):
        SystemExit: 2
    """
    parser = argparse.ArgumentParser(
        prog="python -m lightning_skel.models.convert",
        description="Turn an official checkpoint file into a lightning_skel checkpoint.",
    )
    parser.add_argument("model", choices=sorted(OFFICIAL_FORMATS), help="the model the file holds")
    parser.add_argument("official", type=Path, help="the official checkpoint (.pt / .pth)")
    parser.add_argument("out", type=Path, help="the project checkpoint to write")
    parser.add_argument(
        "--data", required=True, help="the data config it classifies (configs/data), e.g. ntu60_xsub"
    )
    args = parser.parse_args(argv)
    try:
        hp = convert(args.model, args.official, args.out, args.data)
    except (CheckpointError, ValueError, KeyError) as e:
        parser.exit(2, f"error: {e}\n")
    sys.stdout.write(
        f"{args.out}: {hp['model']} {hp['model_kwargs']} on {hp['layout']}, "
        f"{hp['num_classes']} classes of {hp['data_name']}\n"
    )


if __name__ == "__main__":
    main()
