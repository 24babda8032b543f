"""Datasets and the Lightning data module over skeleton-npz files.

The module turns one of four sources (a prepared npz, separate train/val/test npz files, a reader FORMAT
converted on first use, or generated motion) into train/val/test sets. Batches are ``(x, y, lengths,
index)`` with ``x (N, C, T, V, M)`` float32 in the data's own coordinates (with ``score_channel``, the npz
``score`` follows them as one more channel, ``(N, C + 1, T, V, M)``: ST-GCN's Kinetics input x, y, score);
the temporal window and the training augmentation run on the device after transfer, vectorised over the
batch. Normalisation and the input modality (joint / bone / motion) belong to the classifier
(``lightning_skel.models.Classifier``), so that an attack perturbs coordinates, not a derived
representation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_skel.data.io import SkeletonData, load_npz, read_prepared_by, save_npz
from lightning_skel.data.transforms import TEMPORAL, fit_window, random_affine, random_mirror
from lightning_skel.skeleton.features import join_score, split_score
from lightning_skel.skeleton.layouts import get_layout
from lightning_skel.utils import log_once

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


_FILE_NAME_SAFE = re.compile(r"[A-Za-z0-9_.+-]+")


def _options_key(options: dict) -> str:
    """``-key=value`` per option (sorted) for a cache file name, ``-`` and a hash of them when a key or
    value is not a short plain word, ``""`` without options."""
    if not options:
        return ""
    words = [f"{k}={v}" for k, v in sorted(options.items())]
    if all(_FILE_NAME_SAFE.fullmatch(w.replace("=", "", 1)) for w in words) and sum(map(len, words)) <= 60:
        return "-" + "-".join(words)
    return "-" + hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:10]


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation of ``range(length)`` every epoch, fixed by ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch`, so a run resumed from a checkpoint sees the order an uninterrupted
    one sees.

    Example:
        >>> sampler = EpochShuffleSampler(5, seed=0)
        >>> sampler.set_epoch(1)
        >>> sorted(sampler) == list(range(5)), list(sampler) == list(EpochShuffleSampler(5, seed=0))
        (True, False)
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=g).tolist())

    def __len__(self) -> int:
        return self.length


class SkeletonDataset(Dataset):
    """Rows of a skeleton-npz dict; an item is ``(x (C, T, V, M), y, length, index)``.

    ``index`` is the row in the source file.

    Args:
        data: the skeleton-npz dict (:func:`~lightning_skel.data.io.load_npz`).
        indices: the rows (default all).
        score_channel: append the data's ``score`` to ``x`` as its last channel, ``(C + 1, T, V, M)``
            (default false); data without ``score`` is then a ``ValueError``.

    Example:
        >>> from lightning_skel.data.synthetic import generate
        >>> data = generate(num_per_class=2, seed=0, frames=16, layout="kinect20")
        >>> ds = SkeletonDataset(data, indices=np.arange(4))
        >>> len(ds), ds[1][0].shape
        (4, torch.Size([3, 16, 20, 2]))
    """

    def __init__(
        self, data: SkeletonData, indices: np.ndarray | None = None, score_channel: bool = False
    ) -> None:
        if score_channel and "score" not in data:
            raise ValueError("score_channel is true but the data has no 'score' array (keypoint confidence)")
        self.data = data
        self.indices = np.arange(len(data["y"])) if indices is None else np.asarray(indices, dtype=np.int64)
        self.score_channel = score_channel

    def __len__(self) -> int:
        return len(self.indices)

    def _x(self, rows: int | np.ndarray) -> torch.Tensor:
        """``x`` of one row ``(C, T, V, M)`` or of rows ``(B, C, T, V, M)``, the score channel appended."""
        x = self.data["x"][rows]
        if self.score_channel:
            x = np.concatenate([x, self.data["score"][rows][..., None, :, :, :]], axis=-4)
        return torch.from_numpy(np.ascontiguousarray(x))

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        return (self._x(j), int(self.data["y"][j]), int(self.data["lengths"][j]), j)

    def batch(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items ``items`` at once, stacked: ``(x (B, C, T, V, M), y (B,), lengths (B,))``."""
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        return (
            self._x(rows),
            torch.from_numpy(self.data["y"][rows].astype(np.int64)),
            torch.from_numpy(self.data["lengths"][rows].astype(np.int64)),
        )

    @property
    def labels(self) -> np.ndarray:
        return self.data["y"][self.indices]


def stratified_split(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split row indices into ``len(fractions) + 1`` parts, class by class; deterministic for a ``seed``.

    Part k gets ``fractions[k]`` of each class (rounded), the last part the rest.

    Args:
        y: ``(N,)`` labels.
        fractions: one fraction per part but the last.
        seed: the shuffle's seed.

    Example:
        >>> stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), (0.25,), seed=0)
        [array([3, 6]), array([0, 1, 2, 4, 5, 7])]
    """
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(y)), y))  # rows grouped by class, shuffled within
    ys = y[order]
    position = np.arange(len(ys)) - np.searchsorted(ys, ys, side="left")  # 0, 1, ... within each class
    counts = np.bincount(ys)[ys]
    bounds = np.round(np.outer(counts, np.cumsum(fractions))).astype(np.int64)  # (n, K) integer cut points
    part = (position[:, None] >= bounds).sum(1)
    return [np.sort(order[part == k]) for k in range(len(fractions) + 1)]


class SkeletonDataModule(pl.LightningDataModule):
    """Train / val / test skeleton data from exactly one source (``configs/data/_base_.yaml``).

    Batches are ``(x, y, lengths, index)``: ``x (N, C, T, V, M)`` float32 in the data's own coordinates,
    brought to ``window`` frames (and augmented in training) on the device after transfer.

    Args:
        name: the data's name (cache files, messages).
        path: one skeleton npz; its ``split`` column picks the sets.
        train_path: the training npz; ``val_path`` and ``test_path`` optionally beside it.
        val_path, test_path: npz files of the same layout and classes as ``train_path``.
        source: ``{"format", "src", "split"?, "options"?, "workers"?}``: a reader FORMAT converted on first
            use into ``cache_dir`` (:func:`~lightning_skel.data.prepare.prepare`), again when the cache was
            made with other settings.
        synthetic: the arguments of :func:`~lightning_skel.data.synthetic.generate`, generated on first use
            into ``cache_dir``.
        cache_dir: where ``source`` and ``synthetic`` sets are cached (default ``.cache/lightning_skel``).
        val_fraction, test_fraction: the fraction of each class carved from the training rows where a set is
            missing, in [0, 1) (default 0.1 and 0.2).
        split_seed: the carving's seed (default 0).
        window: frames per clip the model sees, at least 2 (default 64).
        temporal: ``"resample"`` (default) or ``"pad"`` (:func:`~lightning_skel.data.transforms.fit_window`).
        augment: training augmentation: ``rotate_deg`` (degrees), ``scale``, ``shear``, ``random_crop``,
            ``mirror`` (default none of them).
        batch_size: clips per batch (default 32).
        num_workers: data-loader processes (default 0).
        seed: the shuffle's and the augmentation's seed (default 0).
        num_folds: k-fold cross-validation: the test set is fold ``fold`` of a stratified k-fold split of
            all rows (default ``None``, none).
        fold: the test fold, in ``[0, num_folds)`` (default 0).
        score_channel: the npz ``score`` (keypoint confidence of 2D data) as the last input channel,
            ``x (N, C + 1, T, V, M)`` (default false).

    Example:
        >>> spec = dict(num_per_class=10, seed=0, frames=16, layout="kinect20")  # generate()'s arguments
        >>> dm = SkeletonDataModule("demo", synthetic=spec, cache_dir="cache", window=8, batch_size=4)
        >>> dm.setup()
        >>> {k: len(v) for k, v in dm.datasets.items()}, dm.num_classes
        ({'test': 24, 'val': 12, 'train': 84}, 12)
    """

    def __init__(
        self,
        name: str,
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        source: dict | None = None,
        synthetic: dict | None = None,
        cache_dir: str = ".cache/lightning_skel",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        window: int = 64,
        temporal: str = "resample",
        augment: dict | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        num_folds: int | None = None,
        fold: int = 0,
        score_channel: bool = False,
    ) -> None:
        super().__init__()
        given = [
            k
            for k, v in (
                ("path", path),
                ("train_path", train_path),
                ("source", source),
                ("synthetic", synthetic),
            )
            if v
        ]
        if len(given) != 1:
            raise ValueError(
                f"data {name!r}: set exactly one of path, train_path, source, synthetic; got {given or 'none'}"
            )
        if (val_path or test_path) and not train_path:
            raise ValueError(f"data {name!r}: val_path/test_path need train_path")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= value < 1:
                raise ValueError(f"data {name!r}: {key} must be in [0, 1), got {value}")
        if num_folds is not None and not (num_folds >= 2 and 0 <= fold < num_folds):
            raise ValueError(
                f"data {name!r}: need num_folds >= 2 and 0 <= fold < num_folds, got {num_folds}, {fold}"
            )
        if window < 2:
            raise ValueError(f"data {name!r}: window must be >= 2, got {window}")
        if not isinstance(score_channel, bool):
            raise ValueError(f"data {name!r}: score_channel must be true or false, got {score_channel!r}")
        if temporal not in TEMPORAL:
            raise ValueError(f"data {name!r}: temporal must be 'resample' or 'pad', got {temporal!r}")
        for p in (path, train_path, val_path, test_path):
            if p and not Path(p).is_file():
                raise FileNotFoundError(f"data {name!r}: no such file {p}")
        if source is not None:
            missing = {"format", "src"} - set(source)
            if missing:
                raise ValueError(f"data {name!r}: source needs keys {sorted(missing)}")
        self.name = name
        self.paths = {"path": path, "train": train_path, "val": val_path, "test": test_path}
        self.source = dict(source) if source else None
        self.synthetic = dict(synthetic) if synthetic else None
        self.cache_dir = Path(cache_dir)
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.window, self.temporal = window, temporal
        self.augment = {
            "rotate_deg": 0.0,
            "scale": 0.0,
            "shear": 0.0,
            "random_crop": False,
            "mirror": False,
            **(augment or {}),
        }
        unknown = set(self.augment) - {"rotate_deg", "scale", "shear", "random_crop", "mirror"}
        if unknown:
            raise ValueError(f"data {name!r}: unknown augment keys {sorted(unknown)}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.seed = seed
        self.num_folds, self.fold = num_folds, fold
        self.score_channel = score_channel
        self.datasets: dict[str, SkeletonDataset] = {}
        self._carved: dict[str, str] = {}  # sets carved from the training rows: the setting that sized each
        self._generator = torch.Generator().manual_seed(seed)
        self._preparation: dict | None = None

    # ---- where the data comes from ---------------------------------------------------------------
    @property
    def preparation(self) -> dict | None:
        """The ``prepared_by`` record the cache of a ``source`` must hold (format, the reader's options with
        its defaults, split; :func:`lightning_skel.data.prepare.preparation`); ``None`` without a source."""
        if self.source is None:
            return None
        if self._preparation is None:
            from lightning_skel.data.prepare import preparation

            self._preparation = preparation(
                self.source["format"], self.source.get("options"), self.source.get("split")
            )
        return self._preparation

    @property
    def cache_file(self) -> Path | None:
        """Where a ``synthetic`` or ``source`` set is cached: ``<name>-<hash of the settings>.npz``, or for a
        source ``<name>[-<split>][-<options>].npz`` with the reader's options (defaults filled in) as
        ``key=value`` (a hash when they do not fit a file name), e.g. ``ntu60_xsub-xsub60-pipeline=stgcn.npz``:
        a set converted with other options is another file."""
        if self.synthetic is not None:
            key = hashlib.sha1(json.dumps(self.synthetic, sort_keys=True).encode()).hexdigest()[:10]
            return self.cache_dir / f"{self.name}-{key}.npz"
        if self.source is not None:
            split = self.source.get("split")
            options = self.preparation["options"]
            return self.cache_dir / f"{self.name}{'-' + split if split else ''}{_options_key(options)}.npz"
        return None

    def _cache_is_current(self, out: Path) -> bool:
        """Whether the cache ``out`` exists and, for a source, records :attr:`preparation`; a stale one is
        logged with both records."""
        if not out.is_file():
            return False
        if self.source is None:
            return True
        try:
            found = read_prepared_by(out)
        except ValueError as e:
            found = f"unreadable ({e})"
        if found == self.preparation:
            return True
        log.warning(
            "%s was prepared by %s, not %s: converting it again",
            out,
            found or "a version that recorded nothing",
            self.preparation,
        )
        return False

    def prepare_data(self) -> None:
        """Generate or convert into the cache on first use, or again when the cached conversion was made
        with other settings (rank 0 only under DDP)."""
        out = self.cache_file
        if out is None or self._cache_is_current(out):
            return
        if self.synthetic is not None:
            from lightning_skel.data.synthetic import generate

            log.info("generating %s into %s", self.name, out)
            save_npz(out, generate(**self.synthetic))
        else:
            from lightning_skel.data.prepare import prepare

            log.info("converting %s from %s into %s", self.source["format"], self.source["src"], out)
            prepare(
                self.source["format"],
                self.source["src"],
                out,
                split=self.source.get("split"),
                workers=int(self.source.get("workers", 1)),
                options=self.source.get("options"),
            )

    def _load_all(self) -> dict[str, SkeletonDataset]:
        if self.paths["train"]:
            train = self._load(self.paths["train"])
            sets = {"train": self._dataset(train)}
            for split in ("val", "test"):
                if self.paths[split]:
                    sets[split] = self._dataset(
                        self._check_compatible(self._load(self.paths[split]), train, split)
                    )
            return self._carve(train, sets)
        path = self.paths["path"] or self.cache_file
        if not self.paths["path"]:
            self.prepare_data()
        data = self._load(path)
        if self.source is not None:
            found = json.loads(data["prepared_by"]) if "prepared_by" in data else None
            if found != self.preparation:
                raise ValueError(
                    f"{path}: prepared by {found}, not {self.preparation}; delete it to convert again"
                )
        if "split" in data:
            split = data["split"]
            unknown = sorted(set(split.tolist()) - set(SPLITS))
            if unknown:
                raise ValueError(f"{path}: split column holds {unknown}; expected values in {list(SPLITS)}")
            sets = {s: self._dataset(data, np.nonzero(split == s)[0]) for s in SPLITS if (split == s).any()}
            # no train rows (a test-only file to attack): nothing to carve from; training refuses it by name
            return self._carve(data, sets) if "train" in sets else sets
        return self._carve(data, {})

    def _load(self, path: str | Path) -> SkeletonData:
        """The skeleton npz ``path``; with ``score_channel``, one without ``score`` is a ``ValueError``
        naming the data, the file and the setting."""
        data = load_npz(path)
        if self.score_channel and "score" not in data:
            raise ValueError(
                f"data {self.name!r}: score_channel is true but {path} has no 'score' array (the keypoint "
                f"confidence of 2D data, which the kinetics, pyskl and agcn readers keep for 2D clips; "
                f"layout {data['layout']!r}, C={data['x'].shape[1]}); set data.score_channel=false"
            )
        return data

    def _dataset(self, data: SkeletonData, indices: np.ndarray | None = None) -> SkeletonDataset:
        return SkeletonDataset(data, indices, score_channel=self.score_channel)

    def _check_compatible(self, other: SkeletonData, train: SkeletonData, split: str) -> SkeletonData:
        for key in ("layout", "class_names"):
            if other[key] != train[key]:
                raise ValueError(
                    f"{self.paths[split]}: {key} {other[key]!r} differs from the train file's {train[key]!r}"
                )
        if other["x"].shape[1] != train["x"].shape[1]:
            raise ValueError(f"{self.paths[split]}: C={other['x'].shape[1]} differs from the train file's")
        return other

    def _carve(self, data: SkeletonData, sets: dict[str, SkeletonDataset]) -> dict[str, SkeletonDataset]:
        """Fill in missing val/test sets by stratified seeded splits of the training rows. With
        ``num_folds``, the test set is fold ``fold`` of a stratified k-fold split of all rows instead."""
        if self.num_folds is not None:
            rows = np.arange(len(data["y"]))
            folds = stratified_split(
                data["y"], (1.0 / self.num_folds,) * (self.num_folds - 1), self.split_seed
            )
            sets = {"test": self._dataset(data, rows[folds[self.fold]])}
            rest = np.sort(np.concatenate([f for k, f in enumerate(folds) if k != self.fold]))
            sets["train"] = self._dataset(data, rest)
        base = sets["train"].indices if "train" in sets else np.arange(len(data["y"]))
        want = [s for s in ("test", "val") if s not in sets]
        fractions = tuple(self.test_fraction if s == "test" else self.val_fraction for s in want)
        if fractions:
            parts = stratified_split(data["y"][base], fractions, self.split_seed)
            for s, part in zip(want, parts[:-1], strict=True):
                sets[s] = self._dataset(data, base[part])
                key = f"{s}_fraction"
                self._carved[s] = f"{key}={getattr(self, key)}"
            sets["train"] = self._dataset(data, base[parts[-1]])
        for split, ds in sets.items():
            if len(ds) == 0:
                log.warning(
                    "data %s: the %s set is empty (too few clips per class for its fraction)",
                    self.name,
                    split,
                )
        return sets

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = self._load_all()
            sizes = {k: len(v) for k, v in self.datasets.items()}
            log_once(log, "data %s: %s clips, layout %s", self.name, sizes, self.layout)

    def check_sets(self, *splits: str) -> None:
        """A ``ValueError`` naming the data and the first of ``splits`` that it lacks or that has no clips:
        runs check the sets they use before any work (an empty one gave no test metrics after training, or
        an empty batch to attack)."""
        for split in splits:
            if split not in self.datasets:
                raise ValueError(f"data {self.name!r}: no {split!r} set; it has {sorted(self.datasets)}")
            if len(self.datasets[split]) == 0:
                why = (
                    f"{self._carved[split]} of each class's clips rounds to none; raise it or give the data "
                    "more clips per class"
                    if split in self._carved
                    else "no clip of the data is in it"
                )
                raise ValueError(f"data {self.name!r}: the {split!r} set is empty ({why})")

    @property
    def carved(self) -> dict[str, str]:
        """The sets carved out of the training rows (the data had none of theirs), each with the setting
        that sized it, e.g. ``{"test": "test_fraction=0.2"}``."""
        return dict(self._carved)

    def split_set(self, split: str) -> SkeletonDataset:
        """The clips of ``split`` (after :meth:`setup`): one of its sets, checked as :meth:`check_sets` does,
        or ``"all"``, every clip of its file (a file without a split column is otherwise carved into
        train/val/test); ``"all"`` over separate train/val/test files is a ``ValueError``.

        Example:
            >>> synthetic = {"num_per_class": 10, "seed": 0, "frames": 16, "layout": "kinect20"}
            >>> dm = SkeletonDataModule(name="synthetic", synthetic=synthetic, cache_dir=".", window=16)
            >>> dm.prepare_data(); dm.setup()
            >>> len(dm.split_set("all")), [len(dm.split_set(s)) for s in ("train", "val", "test")]
            (120, [84, 12, 24])
        """
        if split != "all":
            self.check_sets(split)
            return self.datasets[split]
        files = [s for s in SPLITS if self.paths[s]]
        if files:
            raise ValueError(f"data {self.name!r}: split 'all' needs one file, not separate {files} files")
        return self._dataset(self.data)

    # ---- facts the model needs -------------------------------------------------------------------
    @property
    def data(self) -> SkeletonData:
        """The skeleton-npz dict of the train set (of the first set, in a file without train rows)."""
        if not self.datasets:
            raise RuntimeError("call setup() before reading the data module's properties")
        sets = self.datasets
        return (sets["train"] if "train" in sets else next(iter(sets.values()))).data

    @property
    def layout(self) -> str:
        return self.data["layout"]

    @property
    def class_names(self) -> list[str]:
        return self.data["class_names"]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        """The input channels of a batch: the coordinates, plus one with ``score_channel``."""
        return int(self.data["x"].shape[1]) + int(self.score_channel)

    @property
    def num_persons(self) -> int:
        return int(self.data["x"].shape[4])

    def describe(self) -> dict[str, Any]:
        """What a checkpoint must remember about the data.

        ``score_channel`` appears only when true: data without it keeps the description that attack runs
        record in their fingerprints."""
        return {
            "name": self.name,
            "layout": self.layout,
            "class_names": self.class_names,
            "in_channels": self.in_channels,
            "num_persons": self.num_persons,
            "window": self.window,
            **({"score_channel": True} if self.score_channel else {}),
        }

    # ---- loaders ---------------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise KeyError(f"data {self.name!r} has no {split!r} set; it has {sorted(self.datasets)}")
        ds = self.datasets[split]
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(ds), self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # a last training batch of one clip would break batch norm over per-clip features
            drop_last=shuffle and len(ds) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def window_batch(
        self, x: torch.Tensor, lengths: torch.Tensor, train: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bring a batch to ``window`` frames (and augment it when ``train``). The score channel is resampled
        with the coordinates and goes with its joint under the mirror; the affine map moves coordinates only."""
        crop = (0.75, 1.0) if train and self.augment["random_crop"] else None  # resample only
        x, lengths = fit_window(x, lengths, self.window, self.temporal, crop=crop, generator=self._generator)
        if train and any(self.augment[k] for k in ("rotate_deg", "scale", "shear")):
            coords, score = split_score(x, self.score_channel)
            coords = random_affine(
                coords,
                self.augment["rotate_deg"],
                self.augment["scale"],
                self.augment["shear"],
                generator=self._generator,
            )
            x = join_score(coords, score)
        if train and self.augment["mirror"]:
            mirror = torch.as_tensor(get_layout(self.layout).mirror_index)
            x = random_mirror(x, mirror, generator=self._generator)
        return x, lengths

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, lengths, index = batch
        training = self.trainer is not None and self.trainer.training
        x, lengths = self.window_batch(x, lengths, train=training)
        return x, y, lengths, index

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
