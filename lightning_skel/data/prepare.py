"""Convert a dataset in an external format into one skeleton npz.

    python -m lightning_skel.data.prepare FORMAT SRC OUT.npz [--split NAME] [--workers N] [--limit K]
                                          [--pipeline NAME] [--option KEY=VALUE ...]

FORMAT is a reader registered in :data:`~lightning_skel.data.readers.READERS` (the package imports every
reader module, each of which registers its format; :func:`load_readers` names them). The files under SRC are read in
parallel (``--workers``), in file order, so the output is the same for any worker count. A file the reader
cannot read (a :class:`~lightning_skel.data.readers.base.ReadError`) is skipped and reported; any other
exception is a bug and stops the run. OUT is written atomically at the end, never partially.

``--pipeline NAME`` is the reader option ``pipeline`` (``-o pipeline=NAME``): for ``ntu``, whose body
selection chooses the persons of each clip (``project``, ``stgcn``, ``agcn``, ``ctrgcn``, ``sgn``; see
:class:`~lightning_skel.data.readers.ntu.NTUReader`). OUT records what made it in ``prepared_by``: the
format, the reader's options with its defaults filled in, and the split (:func:`preparation`).

Exit codes: 0 all files read; 1 some files skipped (OUT written); 2 bad arguments or nothing could be read;
143 stopped by SIGTERM (nothing written, no temporary file left).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lightning_skel.data.io import (
    PER_SAMPLE_INT,
    PER_SAMPLE_STR,
    SkeletonData,
    pad_concat,
    save_npz,
    validate,
)
from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError
from lightning_skel.data.safe_pickle import UnsafePickleError

log = logging.getLogger(__name__)


class PrepareError(ValueError):
    """Bad arguments, or a run that produced nothing: ``main`` exits with code 2.

    Example:
        >>> prepare("nope", ".", "out.npz")
        Traceback (most recent call last):
        lightning_skel.data.prepare.PrepareError: unknown format 'nope'; known formats: agcn, ctrgcn, ...
    """


class NothingReadError(PrepareError):
    """Every file was skipped; nothing was written.

    Args:
        message: what went wrong, with the first skips.
        report: the :class:`PrepareReport`, whose ``skipped`` lists every skip.

    Example:
        >>> _ = open("a2_s1_t1_skeleton.mat", "w").write("not a mat file")
        >>> prepare("utd_mhad", "a2_s1_t1_skeleton.mat", "none.npz", progress=False)
        Traceback (most recent call last):
        lightning_skel.data.prepare.NothingReadError: no clip could be read from the 1 file(s) under ...
    """

    def __init__(self, message: str, report: PrepareReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Skipped:
    """A file that could not be read.

    Args:
        path: the file.
        line: the 1-based line of the problem, ``None`` where not known.
        reason: what is wrong.

    Example:
        >>> str(Skipped("S001C001P001R001A001.skeleton", 3, "not a number"))
        'S001C001P001R001A001.skeleton:3: not a number'
    """

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class PrepareReport:
    """What :func:`prepare` did.

    Args:
        out: the npz written; ``None`` when nothing was.
        num_clips: the clips it holds.
        skipped: the files that could not be read (default none).
        num_files: the files read or skipped (default 0).

    Example:
        >>> import scipy.io
        >>> scipy.io.savemat("a1_s1_t1_skeleton.mat", {"d_skel": np.zeros((20, 3, 10))})  # a UTD-MHAD clip
        >>> prepare("utd_mhad", "a1_s1_t1_skeleton.mat", "utd.npz", progress=False)
        PrepareReport(out=PosixPath('utd.npz'), num_clips=1, skipped=[], num_files=1)
    """

    out: Path | None
    num_clips: int
    skipped: list[Skipped] = field(default_factory=list)
    num_files: int = 0


def load_readers() -> list[str]:
    """The registered formats: ``lightning_skel.data.readers`` imports every reader module, each of which
    registers its own.

    Returns:
        The registered formats, sorted.

    Example:
        >>> load_readers()
        ['agcn', 'ctrgcn', 'emotion_gait', 'kinetics', 'ntu', 'pyskl', 'utd_mhad']
    """
    return READERS.names()


def make_reader(format: str, options: Mapping[str, Any] | None = None) -> Reader:
    """The reader of ``format`` with ``options``; an unknown format or a bad option is :class:`PrepareError`.

    Example:
        >>> make_reader("ntu", {"pipeline": "agcn"}).settings()
        {'pipeline': 'agcn'}
    """
    known = load_readers()
    if format not in READERS:
        raise PrepareError(f"unknown format {format!r}; known formats: {', '.join(known)}")
    try:
        return READERS.get(format)(options=dict(options or {}))
    except (ValueError, TypeError, OSError) as e:
        raise PrepareError(f"format {format!r}: bad options {dict(options or {})}: {e}") from e


def preparation(
    format: str,
    options: Mapping[str, Any] | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The ``prepared_by`` record that :func:`prepare` writes for these arguments.

    The reader's options have their defaults filled in; ``limit`` appears only when set. Bad options are a
    :class:`PrepareError`, as in :func:`prepare`.

    Example:
        >>> preparation("ntu", split="xsub60")
        {'format': 'ntu', 'options': {'pipeline': 'project'}, 'split': 'xsub60'}
    """
    return _record(format, make_reader(format, options), split, limit)


def _record(format: str, reader: Reader, split: str | None, limit: int | None) -> dict[str, Any]:
    record = {"format": format, "options": reader.settings(), "split": split}
    if limit is not None:
        record["limit"] = limit
    return json.loads(json.dumps(record, default=str))  # as read back from the file


def _read_one(reader: Reader, path: Path) -> tuple[list[Clip] | SkeletonData | None, Skipped | None]:
    """Read one file; a ReadError becomes a Skipped record (it does not cross process boundaries), and so
    does a clip that is not finite in float32 (a finite float64 such as 1e39 overflows), which would fail
    the whole assembly."""
    try:
        result = reader.read_file(path)
    except ReadError as e:
        return None, Skipped(e.path, e.line, e.reason)
    if isinstance(result, list):
        for clip in result:
            if not (np.isfinite(clip.x).all() and (clip.score is None or np.isfinite(clip.score).all())):
                return None, Skipped(str(path), None, f"clip {clip.name!r} holds NaN or Inf in float32")
    return result, None


def _results(reader: Reader, files: list[Path], workers: int, progress: bool) -> Iterator[tuple[Any, Any]]:
    """``_read_one`` over ``files`` in file order, in ``workers`` processes, with progress: a bar in a
    terminal, else a log line every 30 s (:class:`~lightning_skel.progress.ClipProgress`)."""
    from lightning_skel.progress import ClipProgress  # imports Lightning: only when there is work

    read = partial(_read_one, reader)
    with ClipProgress(f"{reader.name}: reading", len(files), enabled=progress, unit="files") as bar:
        if workers <= 1 or len(files) <= 1:
            for path in files:
                yield read(path)
                bar.advance()
            return
        pool = ProcessPoolExecutor(max_workers=min(workers, len(files)))
        try:
            chunk = max(1, min(64, len(files) // (workers * 8)))
            for result in pool.map(read, files, chunksize=chunk):  # map keeps file order
                yield result
                bar.advance()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _take(data: SkeletonData, n: int) -> SkeletonData:
    """The first ``n`` rows of a skeleton dict."""
    rows = {"x", "y", "lengths", "score", *PER_SAMPLE_INT, *PER_SAMPLE_STR}
    return {k: (v[:n] if k in rows else v) for k, v in data.items()}


def _concat(parts: list[SkeletonData]) -> SkeletonData:
    """Stack skeleton dicts from several files, padding T and M; shared metadata must agree."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for key in ("layout", "class_names", "emotion_names"):
        values = {json.dumps(np.asarray(p.get(key, [])).tolist()) for p in parts}
        if len(values) > 1:
            raise ValueError(f"the files disagree on {key}: {sorted(values)}")
    c, v = first["x"].shape[1], first["x"].shape[3]
    if any(p["x"].shape[1] != c or p["x"].shape[3] != v for p in parts):
        raise ValueError("the files disagree on the coordinate channels C or the joint count V")
    out: SkeletonData = {k: first[k] for k in ("layout", "class_names", "emotion_names") if k in first}
    out["x"] = pad_concat([p["x"] for p in parts])
    if any("score" in p for p in parts):  # files without scores: zeros, padded like their clips
        _, _, t, _, m = out["x"].shape
        out["score"] = pad_concat(
            [p["score"] if "score" in p else np.zeros((len(p["y"]), 0, v, 0)) for p in parts], (t, v, m)
        )
    out["y"] = np.concatenate([p["y"] for p in parts])
    out["lengths"] = np.concatenate([p["lengths"] for p in parts])
    for key in PER_SAMPLE_INT:
        if any(key in p for p in parts):
            out[key] = np.concatenate([p.get(key, np.full(len(p["y"]), -1, dtype=np.int64)) for p in parts])
    for key in PER_SAMPLE_STR:
        if any(key in p for p in parts):
            out[key] = np.concatenate([np.asarray(p.get(key, [""] * len(p["y"])), dtype=str) for p in parts])
    return out


def _clips_of(data: SkeletonData) -> list[Clip]:
    """Rows of a skeleton dict as clips, so that a reader's ``split_of`` can label them."""
    n = len(data["y"])
    col = {k: data.get(k, np.full(n, -1)) for k in ("subject", "view", "emotion")}
    names = data.get("sample_name", np.array([str(i) for i in range(n)]))
    return [
        Clip(
            x=data["x"][i, :, : data["lengths"][i]],
            label=int(data["y"][i]),
            name=str(names[i]),
            subject=int(col["subject"][i]),
            view=int(col["view"][i]),
            emotion=int(col["emotion"][i]),
        )
        for i in range(n)
    ]


def _assemble(reader: Reader, results: list, split: str | None, limit: int | None) -> SkeletonData:
    if all(isinstance(r, list) for r in results):
        clips = [c for r in results for c in r]
        return reader.assemble(clips[:limit] if limit else clips, split)
    if not all(isinstance(r, dict) for r in results):
        kinds = sorted({type(r).__name__ for r in results})
        raise TypeError(
            f"reader {reader.name!r} returned {kinds}; read_file must return a list of Clip or a dict"
        )
    data = _concat([validate(r, f"<{reader.name} arrays>") for r in results])
    if limit:
        data = _take(data, limit)
    if split is not None and "split" not in data:
        data["split"] = np.array([reader.split_of(c, split) for c in _clips_of(data)])
    return validate(data, f"<{reader.name} arrays>")


def prepare(
    format: str,
    src: str | os.PathLike,
    out: str | os.PathLike,
    split: str | None = None,
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
    options: Mapping[str, Any] | None = None,
) -> PrepareReport:
    """Read every ``format`` file under ``src`` into one skeleton npz ``out``, written atomically.

    A file that raises :class:`~lightning_skel.data.readers.base.ReadError` is skipped and listed in the
    report; any other exception from a reader propagates.

    Args:
        format: a registered reader (:func:`load_readers`).
        src: the data set's file or folder.
        out: the ``.npz`` to write.
        split: the format's benchmark protocol, stored as the ``split`` column (default none).
        workers: reader processes (default 1); the output does not depend on them.
        limit: read at most that many files and keep at most that many clips (default all).
        progress: a bar in a terminal, else log lines (default true).
        options: the reader's options (default none).

    Raises:
        PrepareError: bad arguments.
        NothingReadError: no file could be read; nothing is written.

    Example:
        >>> import scipy.io
        >>> scipy.io.savemat("a1_s1_t1_skeleton.mat", {"d_skel": np.zeros((20, 3, 10))})  # a UTD-MHAD clip
        >>> report = prepare("utd_mhad", "a1_s1_t1_skeleton.mat", "utd.npz", split="xsub", progress=False)
        >>> report.num_clips, report.skipped
        (1, [])
    """
    src, out = Path(src), Path(out)
    reader = make_reader(format, options)
    if not src.exists():
        raise PrepareError(f"source {str(src)!r} does not exist")
    try:
        reader.check_split(split)
    except ValueError as e:
        raise PrepareError(str(e)) from e
    if out.suffix != ".npz":
        raise PrepareError(f"output {str(out)!r} must end in .npz")
    if out.is_dir():
        raise PrepareError(f"output {str(out)!r} is a folder")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PrepareError(f"workers must be a positive integer, got {workers!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise PrepareError(f"limit must be a positive integer or None, got {limit!r}")

    try:
        files = reader.files(src)
    except ValueError as e:  # e.g. a folder with several benchmark files, or a misnamed file
        raise PrepareError(f"{format}: cannot list the files of {str(src)!r}: {e}") from e
    if not files:
        raise PrepareError(f"no {format} files found under {str(src)!r}")
    if limit is not None:
        files = files[:limit]
    reader.warm_up()  # once, before any worker starts
    log.info("%s: reading %d file(s) from %s with %d worker(s)", format, len(files), src, workers)

    results: list = []
    skipped: list[Skipped] = []
    for result, skip in _results(reader, files, workers, progress):
        if skip is not None:
            log.warning("skipping %s", skip)
            skipped.append(skip)
        else:
            results.append(result)
    report = PrepareReport(out=None, num_clips=0, skipped=skipped, num_files=len(files))
    results = [r for r in results if (len(r["y"]) if isinstance(r, dict) else len(r))]
    if not results:
        shown = "; ".join(str(s) for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        raise NothingReadError(
            f"no clip could be read from the {len(files)} file(s) under {src}: {shown}", report
        )

    try:
        data = _assemble(reader, results, split, limit)
    except ValueError as e:  # a split protocol the files cannot satisfy, or inconsistent files
        raise PrepareError(f"{format}: cannot assemble the clips read from {src}: {e}") from e
    data["prepared_by"] = json.dumps(_record(format, reader, split, limit), sort_keys=True)
    report.out = save_npz(out, data)
    report.num_clips = len(data["y"])
    log.info("%s: wrote %d clip(s) to %s (%d file(s) skipped)", format, report.num_clips, out, len(skipped))
    return report


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: Sequence[str] | None = None) -> int:
    """The command line of the module doc; returns the exit code.

    Example:
        >>> import scipy.io
        >>> scipy.io.savemat("a1_s1_t1_skeleton.mat", {"d_skel": np.zeros((20, 3, 10))})
        >>> main(["utd_mhad", "a1_s1_t1_skeleton.mat", "utd.npz", "--no-progress"])
        wrote 1 clip(s) from 1 file(s) to utd.npz
        0
    """
    from lightning_skel.data.readers.ntu import DEFAULT_PIPELINE, NTU_PIPELINES

    parser = argparse.ArgumentParser(
        prog="python -m lightning_skel.data.prepare",
        description="Convert a skeleton dataset into one skeleton npz. Formats: " + ", ".join(load_readers()),
        epilog="exit codes: 0 all files read; 1 some files skipped (OUT written); 2 bad arguments or nothing read",
    )
    parser.add_argument("format", metavar="FORMAT", help="a registered reader")
    parser.add_argument("src", metavar="SRC", type=Path, help="the dataset's file or folder")
    parser.add_argument("out", metavar="OUT.npz", type=Path, help="the skeleton npz to write")
    parser.add_argument(
        "--split", default=None, help="the benchmark protocol (e.g. xsub) for the split column"
    )
    parser.add_argument("--workers", type=int, default=1, help="reader processes (default 1)")
    parser.add_argument(
        "--limit", type=int, default=None, help="read at most K files and keep at most K clips"
    )
    parser.add_argument(
        "--pipeline",
        default=None,
        metavar="NAME",
        help=f"the reader option pipeline; ntu: the body selection of {', '.join(NTU_PIPELINES)} "
        f"(default {DEFAULT_PIPELINE})",
    )
    parser.add_argument(
        "-o",
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a reader option, VALUE parsed as JSON when it can be (e.g. -o max_people=3)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress and each skip as it happens"
    )
    args = parser.parse_args(argv)
    options = dict(args.option)
    if args.pipeline is not None:
        if options.get("pipeline", args.pipeline) != args.pipeline:
            print(
                f"error: --pipeline {args.pipeline} and -o pipeline={options['pipeline']} disagree",
                file=sys.stderr,
            )
            return 2
        options["pipeline"] = args.pipeline
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(message)s"
    )
    if not args.no_progress:  # what takes time (a parser compiling) is said without --verbose too
        logging.getLogger("lightning_skel.progress").setLevel(logging.INFO)

    # SIGTERM (a scheduler's kill, `timeout`) unwinds like Ctrl-C, so that a partial output is removed
    default_sigterm = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        report = prepare(
            args.format,
            args.src,
            args.out,
            split=args.split,
            workers=args.workers,
            limit=args.limit,
            progress=not args.no_progress,
            options=options,
        )
    except NothingReadError as e:
        print(
            f"error: no clip could be read from the {e.report.num_files} file(s); nothing written",
            file=sys.stderr,
        )
        _print_skips(e.report.skipped)
        return 2
    except (PrepareError, UnsafePickleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, default_sigterm)
    print(
        f"wrote {report.num_clips} clip(s) from {report.num_files - len(report.skipped)} file(s) to {report.out}"
    )
    if report.skipped:
        _print_skips(report.skipped)
        return 1
    return 0


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _print_skips(skipped: list[Skipped]) -> None:
    print(f"skipped {len(skipped)} file(s):")
    for s in skipped:
        print(f"  {s}")


if __name__ == "__main__":
    sys.exit(main())
