"""Transfer evaluation: adversarial clips crafted on one classifier, labelled by others.

The threat model of the skeleton robustness benchmarks (RobustBenchHAR / TASAR, SVA): an attacker crafts
on a surrogate and the clips are judged by target models it never queried. Each target keeps its own input
function (window, official pipeline, score channel), so a clip is judged as that model would judge any
recording. A clip *transfers* to a target when the target's label on it is wrong (untargeted) or the
attack's target (targeted); the rate is over the clips the source attacked, so that a target equal to the
source gives the white-box success rate.

From an attack run (``attack.py ... transfer=[ckpt, ...]``) or on any existing adversarial file::

    python -m lightning_skel.transfer runs/attack_admm/adversarial.npz hcn=runs/a/last.ckpt sgn=runs/b/last.ckpt

The file is an ``adversarial.npz`` of attack.py, or another codebase's npz with ``x (N, C, T, V, M)`` in
metres and labels ``y (N,)`` (optional: ``lengths``, ``target``, ``attacked``, ``x_clean``, ``score``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lightning_skel.models.classifier import WindowedClassifier
from lightning_skel.utils import atomic_open, write_json

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a target's name: a column suffix and a metrics key


def target_names(specs: Sequence[str] | Mapping[str, str | list[str]]) -> dict[str, str | list[str]]:
    """``{name: checkpoint}`` from specs ``name=path`` or ``path``; a bare path is named after its run folder
    (``runs/bench_utd/utd_hcn/checkpoints/last.ckpt`` -> ``utd_hcn``), else after the file's stem. A mapping
    is taken as it is (a list of checkpoints: one target, their scores fused).

    >>> target_names(["hcn=a/last.ckpt", "runs/utd_sgn/checkpoints/last.ckpt"])
    {'hcn': 'a/last.ckpt', 'utd_sgn': 'runs/utd_sgn/checkpoints/last.ckpt'}
    """
    if isinstance(specs, Mapping):
        bad = [k for k in specs if not NAME.match(str(k))]
        if bad:
            raise ValueError(f"transfer target names {bad}: use [A-Za-z0-9_.-]")
        return dict(specs)
    out: dict[str, str | list[str]] = {}
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        if not sep:
            p = Path(spec)
            name, path = (p.parent.parent.name if p.parent.name == "checkpoints" else p.stem), str(spec)
        if not NAME.match(name) or not path:
            raise ValueError(
                f"transfer target {spec!r}: expected NAME=CHECKPOINT or CHECKPOINT, NAME of [A-Za-z0-9_.-]"
            )
        if name in out:
            raise ValueError(
                f"transfer target name {name!r} given twice ({out[name]}, {path}); name them NAME=PATH"
            )
        out[name] = path
    return out


def load_targets(
    specs: Sequence[str] | Mapping[str, str | list[str]],
    layout: str | None = None,
    num_classes: int | None = None,
    has_score: bool = False,
) -> dict[str, WindowedClassifier]:
    """The target classifiers of ``specs`` (:func:`target_names`), each checked to take the clips: the
    clips' layout (where they name one), the same number of classes (the clips', or else the first
    target's), and a keypoint-score channel only where the clips have one. Raises ValueError naming the
    checkpoint.

    Example:
        >>> from lightning_skel.systems import ClassificationSystem
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", class_names=["wave", "clap"], window=16)
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> {name: model.window for name, model in load_targets(["sgn.ckpt"], layout="kinect20").items()}
        {'sgn': 16}
        >>> load_targets(["sgn.ckpt"], layout="ntu25")
        Traceback (most recent call last):
        ValueError: transfer target sgn (sgn.ckpt): layout 'kinect20', the clips' is 'ntu25'
    """
    from lightning_skel import load_classifier

    models = {}
    for name, path in target_names(specs).items():
        model = load_classifier(path)
        k = len(model.class_names or [])
        num_classes = k if num_classes is None else num_classes
        if layout is not None and model.layout != layout:
            raise ValueError(
                f"transfer target {name} ({path}): layout {model.layout!r}, the clips' is {layout!r}"
            )
        if k != num_classes:
            raise ValueError(f"transfer target {name} ({path}): {k} classes, the clips have {num_classes}")
        if model.score_channel and not has_score:
            raise ValueError(
                f"transfer target {name} ({path}) takes a keypoint-score channel; the clips have none"
            )
        models[name] = model
    return models


@torch.no_grad()
def labels(
    model: WindowedClassifier,
    x: Tensor,
    lengths: Tensor,
    score: Tensor | None = None,
    batch: int = 128,
    device: str | torch.device = "cpu",
) -> Tensor:
    """The labels ``(N,)`` that ``model`` gives clips ``x (N, C, T, V, M)`` with valid frames ``lengths
    (N,)``, through its own window and pipeline; ``score (N, 1, T, V, M)`` is appended as the last channel
    where the model takes one. ``batch`` clips at a time on ``device``.

    Example:
        >>> from lightning_skel import load_classifier
        >>> from lightning_skel.systems import ClassificationSystem
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", window=16)  # untrained
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> x, lengths = torch.zeros(4, 3, 40, 20, 2), torch.full((4,), 40)  # windowed by the model
        >>> labels(load_classifier("sgn.ckpt"), x, lengths, batch=2).shape
        torch.Size([4])
    """
    model = model.to(device).eval()
    if model.score_channel:
        x = torch.cat([x, score], dim=1)
    out = [model(x[i : i + batch].to(device), lengths[i : i + batch].to(device)).argmax(1).cpu()
           for i in range(0, x.shape[0], batch)]  # fmt: skip
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def transferred(pred: np.ndarray, y: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per clip, whether label ``pred`` is the attack's goal: ``target`` where it is >= 0, else not ``y``.

    >>> transferred(np.array([1, 2, 2]), np.array([1, 1, 0]), np.array([-1, -1, 2])).tolist()
    [False, True, True]
    """
    return np.where(target >= 0, pred == target, pred != y)


def transfer_metrics(
    preds: Mapping[str, np.ndarray],
    y: np.ndarray,
    target: np.ndarray,
    attacked: np.ndarray,
    clean_preds: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float | int]:
    """``transfer/<name>/success_rate``: the fraction of the attacked clips whose label by target ``name``
    (``preds[name] (N,)``) is the attack's goal (:func:`transferred`); with ``clean_preds`` also each target's
    ``clean_accuracy`` on the attacked clips' clean versions. ``num_attacked`` is the denominator (NaN rates
    where it is 0).

    Example:
        >>> y, target, attacked = np.array([0, 1, 2]), np.full(3, -1), np.array([True, True, False])
        >>> transfer_metrics({"sgn": np.array([1, 1, 0])}, y, target, attacked, clean_preds={"sgn": y})
        {'transfer/sgn/success_rate': 0.5, 'transfer/sgn/num_attacked': 2, 'transfer/sgn/clean_accuracy': 1.0}
    """
    attacked = attacked.astype(bool)
    n = int(attacked.sum())
    out: dict[str, float | int] = {}
    for name, pred in preds.items():
        hit = transferred(pred, y, target)[attacked]
        out[f"transfer/{name}/success_rate"] = float(hit.mean()) if n else float("nan")
        out[f"transfer/{name}/num_attacked"] = n
        if clean_preds is not None:
            ok = (clean_preds[name] == y)[attacked]
            out[f"transfer/{name}/clean_accuracy"] = float(ok.mean()) if n else float("nan")
    return out


def transfer_columns(
    preds: Mapping[str, np.ndarray], y: np.ndarray, target: np.ndarray
) -> dict[str, np.ndarray]:
    """The per-clip columns of each target: ``pred_adv_<name>`` and ``transferred_<name>`` (0 / 1).

    Example:
        >>> cols = transfer_columns({"sgn": np.array([1, 1, 0])}, np.array([0, 1, 2]), np.full(3, -1))
        >>> {k: v.tolist() for k, v in cols.items()}
        {'pred_adv_sgn': [1, 1, 0], 'transferred_sgn': [1, 0, 1]}
    """
    cols = {}
    for name, pred in preds.items():
        cols[f"pred_adv_{name}"] = pred.astype(np.int64)
        cols[f"transferred_{name}"] = transferred(pred, y, target).astype(np.int64)
    return cols


def read_clips(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """An adversarial npz: ``x`` and ``y`` required, ``lengths`` (default: up to each clip's last frame with a
    non-zero joint), ``target`` (default -1: untargeted), ``attacked`` (default all) and, where present,
    ``x_clean``, ``score``, ``layout`` and ``class_names``. Raises ValueError naming the file.

    Example:
        >>> x = np.zeros((2, 3, 8, 20, 1), np.float32)
        >>> x[0, :, :5] = 0.1  # clip 0 moves for 5 frames, then padding; clip 1 is all zeros
        >>> np.savez("clips.npz", x=x, y=np.array([0, 1]))
        >>> data = read_clips("clips.npz")
        >>> data["lengths"], data["target"], data["attacked"]  # the defaults
        (array([5, 1]), array([-1, -1]), array([ True,  True]))
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for key in ("x", "y"):
        if key not in data:
            raise ValueError(f"{path}: no {key!r} array (need x (N, C, T, V, M) and labels y (N,))")
    x, y = data["x"], data["y"]
    if x.ndim != 5 or y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{path}: x must be (N, C, T, V, M) and y (N,) integers, got {x.shape} and {y.shape} {y.dtype}"
        )
    n, t = x.shape[0], x.shape[2]
    if "lengths" not in data:
        frames = (x != 0).any(axis=(1, 3, 4))  # (N, T)
        data["lengths"] = np.where(frames.any(1), t - np.argmax(frames[:, ::-1], axis=1), 1)
    data.setdefault("target", np.full(n, -1, dtype=np.int64))
    data.setdefault("attacked", np.ones(n, dtype=bool))
    for key in ("lengths", "target", "attacked"):
        if data[key].shape != (n,):
            raise ValueError(f"{path}: {key} must be ({n},), got {data[key].shape}")
    return data


def evaluate_file(
    path: str | os.PathLike,
    specs: Sequence[str] | Mapping[str, str | list[str]],
    out_dir: str | os.PathLike | None = None,
    batch: int = 128,
    device: str = "cpu",
) -> dict[str, float | int]:
    """Labels the clips of ``path`` (:func:`read_clips`) with every target of ``specs`` and writes
    ``transfer.csv`` (a row per clip: label, target, attacked, each target's columns) and ``transfer.json``
    (:func:`transfer_metrics`) into ``out_dir`` (default: beside the file), ``batch`` clips at a time on
    ``device``. Returns the metrics.

    Example:
        >>> from lightning_skel.systems import ClassificationSystem
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", class_names=["wave", "clap"], window=16)
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> np.savez("clips.npz", x=np.random.rand(3, 3, 16, 20, 2), y=np.array([0, 1, 1]))  # metres
        >>> metrics = evaluate_file("clips.npz", ["sgn=sgn.ckpt"], out_dir="out")
        >>> sorted(metrics), sorted(p.name for p in Path("out").iterdir())
        (['transfer/sgn/num_attacked', 'transfer/sgn/success_rate'], ['transfer.csv', 'transfer.json'])
    """
    data = read_clips(path)
    layout = str(data["layout"]) if "layout" in data else None
    names = data.get("class_names")
    x = torch.from_numpy(np.ascontiguousarray(data["x"], dtype=np.float32))
    score = torch.from_numpy(data["score"]).float() if "score" in data else None
    models = load_targets(specs, layout, None if names is None else len(names), score is not None)
    lengths = torch.from_numpy(data["lengths"].astype(np.int64))
    y, target = data["y"].astype(np.int64), data["target"].astype(np.int64)
    preds, clean = {}, {} if "x_clean" in data else None
    paths = target_names(specs)
    for name, model in models.items():
        log.info("transfer: labelling %d clips with %s", x.shape[0], name)
        try:
            preds[name] = labels(model, x, lengths, score, batch, device).numpy()
            if clean is not None:
                xc = torch.from_numpy(np.ascontiguousarray(data["x_clean"], dtype=np.float32))
                clean[name] = labels(model, xc, lengths, score, batch, device).numpy()
        except RuntimeError as e:  # e.g. clips of another number of coordinates than the target takes
            raise ValueError(
                f"transfer target {name} ({paths[name]}) cannot take the clips {tuple(x.shape)}: {e}"
            ) from e
    metrics = transfer_metrics(preds, y, target, data["attacked"], clean)
    out = Path(out_dir) if out_dir is not None else Path(path).parent
    out.mkdir(parents=True, exist_ok=True)
    cols = {"y": y, "target": target, "attacked": data["attacked"].astype(np.int64),
            **transfer_columns(preds, y, target)}  # fmt: skip
    with atomic_open(out / "transfer.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *cols])
        w.writerows(zip(range(len(y)), *cols.values(), strict=True))
    write_json(out / "transfer.json", {"file": str(path), "targets": target_names(specs), **metrics})
    return metrics


def add_to_run(
    out_dir: str | os.PathLike,
    specs: Sequence[str] | Mapping[str, str | list[str]],
    batch: int = 128,
    device: str = "cpu",
) -> dict[str, float | int]:
    """An attack run's clips (``out_dir/adversarial.npz``) labelled by every target: each target's columns
    (:func:`transfer_columns`) appended to ``per_sample.csv`` (its rows are the npz's, in order) and its
    metrics to ``metrics.json``, both rewritten atomically; ``transfer.csv`` and ``transfer.json`` too.

    Example:
        >>> add_to_run("runs/nothing_here", ["hcn=runs/utd_hcn/checkpoints/last.ckpt"])  # no attack run there
        Traceback (most recent call last):
        ValueError: runs/nothing_here/adversarial.npz: no such file
    """
    out = Path(out_dir)
    metrics = evaluate_file(out / "adversarial.npz", specs, out, batch, device)
    with (out / "transfer.csv").open(newline="") as f:
        extra = list(csv.DictReader(f))
    with (out / "per_sample.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    added = [k for k in extra[0] if k.startswith(("pred_adv_", "transferred_"))] if extra else []
    with atomic_open(out / "per_sample.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*rows[0], *added])
        w.writerows([*row, *(e[k] for k in added)] for row, e in zip(rows[1:], extra, strict=True))
    saved = json.loads((out / "metrics.json").read_text())
    write_json(out / "metrics.json", {**saved, **metrics, "transfer_targets": target_names(specs)})
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m lightning_skel.transfer CLIPS.npz [NAME=]CKPT ...`` (module docstring);
    ``argv`` default ``sys.argv[1:]``, ``--out``, ``--batch-size`` and ``--device`` as :func:`evaluate_file`'s.
    Returns the exit code, 0.

    Example:
        >>> from lightning_skel.systems import ClassificationSystem
        >>> sgn = ClassificationSystem("sgn", 2, "kinect20", class_names=["wave", "clap"], window=16)
        >>> torch.save({"hyper_parameters": dict(sgn.hparams), "state_dict": sgn.state_dict()}, "sgn.ckpt")
        >>> np.savez("adversarial.npz", x=np.random.rand(3, 3, 16, 20, 2), y=np.array([0, 1, 1]))
        >>> main(["adversarial.npz", "sgn=sgn.ckpt", "--out", "transfer"])  # logs each target's success rate
        0
        >>> json.loads(Path("transfer/transfer.json").read_text())["targets"]
        {'sgn': 'sgn.ckpt'}
    """
    parser = argparse.ArgumentParser(
        prog="python -m lightning_skel.transfer", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "clips", help="adversarial.npz of attack.py, or any npz with x (N, C, T, V, M) and y (N,)"
    )
    parser.add_argument("targets", nargs="+", help="target checkpoints, NAME=PATH or PATH")
    parser.add_argument(
        "--out", default=None, help="folder for transfer.csv and transfer.json (default: beside clips)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    metrics = evaluate_file(args.clips, args.targets, args.out, args.batch_size, args.device)
    for key, value in metrics.items():
        if key.endswith("success_rate"):
            log.info("%s: %.4f", key, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
