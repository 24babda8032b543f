"""Small shared helpers: argument checks, atomic file writes, package versions."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)


_LOGGED_ONCE: set[tuple[str, str]] = set()


def log_once(logger: logging.Logger, msg: str, *args: Any) -> None:
    """``logger.info(msg, *args)`` the first time this process says it, ``debug`` after: a message that a
    sequence of runs in one process (the demo, a sweep) would repeat word for word is said once."""
    key = (logger.name, msg % args if args else msg)
    if key in _LOGGED_ONCE:
        logger.debug(msg, *args)
    else:
        _LOGGED_ONCE.add(key)
        logger.info(msg, *args)


def check_params(owner: str, rules: Mapping[str, tuple[Any, bool, str]], what: str = "argument(s)") -> None:
    """Raise one ``ValueError`` naming every argument that breaks its rule: ``rules`` maps a name to
    ``(value, ok, rule)``, e.g. ``{"width": (width, width >= 2, ">= 2")}`` ->
    ``hcn: invalid argument(s): width must be >= 2, got 0``."""
    bad = [f"{k} must be {rule}, got {value!r}" for k, (value, ok, rule) in rules.items() if not ok]
    if bad:
        raise ValueError(f"{owner}: invalid {what}: {'; '.join(bad)}")


NUMBER_KINDS = {
    "int": "an integer",
    "int?": "an integer or null",
    "float": "a number",
    "float?": "a number or null",
}


def _is_kind(value: Any, kind: str) -> bool:
    if value is None:
        return kind.endswith("?")
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (kind.startswith("float") and isinstance(value, float))


def check_number_types(owner: str, tree: Any, kinds: Mapping[str, str]) -> list[str]:
    """Check that the numbers of a nested config (dicts and lists, e.g. a resolved ``DictConfig``) are
    numbers: ``kinds`` maps dotted-key patterns (``*`` matches one key, ``optim.optimizer.lr``,
    ``attack.weights.*``) to a kind of :data:`NUMBER_KINDS`. One ``ValueError`` names every key whose value
    is of another type (a string typed on the command line, a list), through :func:`check_params`. Returns
    the keys checked."""
    patterns = [(tuple(p.split(".")), kind) for p, kind in kinds.items()]
    rules: dict[str, tuple[Any, bool, str]] = {}

    def visit(node: Any, key: tuple[str, ...]) -> None:
        kind = next((k for p, k in patterns if len(p) == len(key) and all(map(fnmatchcase, key, p))), None)
        if kind is not None:
            rules[".".join(key)] = (node, _is_kind(node, kind), NUMBER_KINDS[kind])
        elif isinstance(node, Mapping):
            for k, v in node.items():
                visit(v, (*key, str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, (*key, str(i)))

    visit(tree, ())
    check_params(owner, rules, "setting(s)")
    return list(rules)


def make_readable(path: str | os.PathLike) -> None:
    """mkstemp creates owner-only files; give the result the permissions a plain ``open`` would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _temp_prefix(path: Path) -> str:
    """The name start of :func:`atomic_open`'s temporary files for ``path``: they record the machine and
    the process that writes them, so that one left by a killed writer can be told from a live one's."""
    return f".{path.name}.{socket.gethostname()}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> None:
    """Remove the temporary files that :func:`atomic_open` left beside ``path`` in processes of this machine
    that are gone (killed before their rename, e.g. by SIGKILL); those of live writers stay."""
    path = Path(path)
    head, host = f".{path.name}.", socket.gethostname()
    with os.scandir(path.parent) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(head) and name.endswith(".tmp")):
                continue
            parts = name[len(head) : -len(".tmp")].rsplit(".", 2)  # host, pid, mkstemp's random part
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _alive(int(parts[1])):
                Path(entry.path).unlink(missing_ok=True)
                log.info("removed %s, left by a writer of %s that was killed", entry.path, path.name)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it onto ``path``, on error delete
    it. Readers never see a partial file, and a killed writer or a crash leaves the old file (or none): the
    data reaches the disk before the rename does, a temporary file is removed at once on an exception (Ctrl-C
    too), or by the next write of ``path`` after a SIGKILL. A failed write (a full disk) raises an
    ``OSError`` that names ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        make_readable(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # numpy's and json's writes name no file
            raise (OSError(e.errno, e.strerror, str(path)) if e.errno else OSError(f"{path}: {e}")) from e
        raise


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, an undefined metric; infinities) as None, so that it is
    written as strict JSON (``null``), which every parser reads; Python's ``NaN`` is not JSON."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON atomically (:func:`json_safe`: undefined numbers are null)."""
    with atomic_open(path, "w") as f:
        json.dump(json_safe(obj), f, indent=2, sort_keys=True, default=str, allow_nan=False)
        f.write("\n")
    return Path(path)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], compress: bool = False) -> Path:
    """Write named arrays as an npz atomically."""
    with atomic_open(path, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    import pytorch_lightning
    import torch

    from lightning_skel import __version__

    return {
        "lightning_skel": __version__,
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "numpy": np.__version__,
    }


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: platform, CPU count, torch's intra-op threads, and the package versions."""
    import platform

    import torch

    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            **versions()}  # fmt: skip


def _busy_cores(window_s: float = 0.25) -> float | None:
    """Cores kept busy by other processes over ``window_s`` seconds (from ``/proc/stat``, less this
    process's own CPU time), or ``None`` where ``/proc/stat`` does not exist."""
    import resource
    import time

    def sample() -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            cpu = [float(v) for v in f.readline().split()[1:]]
        own = resource.getrusage(resource.RUSAGE_SELF)
        idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0.0)  # idle + iowait, in clock ticks
        return sum(cpu) - idle, own.ru_utime + own.ru_stime, time.monotonic()

    try:
        busy0, own0, t0 = sample()
        time.sleep(window_s)
        busy1, own1, t1 = sample()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((busy1 - busy0) / ticks - (own1 - own0)) / (t1 - t0))


def resolve_threads(threads: int | str, processes: int = 1, key: str = "threads") -> int:
    """Torch's intra-op thread count for ``threads``: a whole number >= 1 as given, or ``"auto"``:
    ``OMP_NUM_THREADS`` where the environment sets it, else the cores this process may run on that other
    processes leave idle (a quarter-second sample), shared among the ``processes`` of this node; at least 1.
    Threads on cores another job keeps busy wait for each other at every parallel region: on a loaded
    2-core machine two threads made training and ADMM an order of magnitude slower than one."""
    if threads == "auto":
        env = os.environ.get("OMP_NUM_THREADS", "")
        if env.isdigit() and int(env) >= 1:
            return int(env)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        busy = _busy_cores()
        free = cores if busy is None else max(1, cores - round(busy))
        return max(1, free // max(1, processes))
    ok = isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    check_params("config", {key: (threads, ok, '"auto" or a whole number >= 1')}, "setting(s)")
    return threads


@contextmanager
def torch_threads(threads: int | str, processes: int = 1) -> Iterator[int]:
    """Run the block with torch's intra-op threads set by :func:`resolve_threads`, then restore them.
    ``OMP_NUM_THREADS`` is set for the block too: Lightning's DDP launch keeps it (it would otherwise set
    its own count) and the processes it starts inherit it.

    Example::

        with torch_threads("auto") as n:
            log.info("torch threads: %d", n)
    """
    import torch

    n = resolve_threads(threads, processes)
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env
