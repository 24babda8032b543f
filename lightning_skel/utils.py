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
    """``logger.info(msg, *args)`` the first time this process says it, ``logger.debug`` after.

    A message that a sequence of runs in one process (the demo, a sweep) would repeat word for word is
    said once.

    Example:
        >>> import sys
        >>> demo = logging.getLogger("log_once_example")
        >>> demo.addHandler(logging.StreamHandler(sys.stdout)); demo.setLevel(logging.INFO)
        >>> for run in range(3):
        ...     log_once(demo, "data %s: %d clips", "log_once_example", 861)
        data log_once_example: 861 clips
        >>> demo.handlers.clear()
    """
    key = (logger.name, msg % args if args else msg)
    if key in _LOGGED_ONCE:
        logger.debug(msg, *args)
    else:
        _LOGGED_ONCE.add(key)
        logger.info(msg, *args)


def check_params(owner: str, rules: Mapping[str, tuple[Any, bool, str]], what: str = "argument(s)") -> None:
    """Raise one ``ValueError`` naming every argument that breaks its rule (ART's ``_check_params``).

    Args:
        owner: the start of the message (the class or script).
        rules: ``{name: (value, ok, rule)}``; ``rule`` says what the value must be.
        what: what the names are (default ``"argument(s)"``).

    Example:
        >>> width = 0
        >>> check_params("hcn", {"width": (width, width >= 2, ">= 2")})
        Traceback (most recent call last):
        ValueError: hcn: invalid argument(s): width must be >= 2, got 0
    """
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
    """Check that the numbers of a nested config (dicts and lists, e.g. a ``DictConfig``) are numbers.

    One ``ValueError`` names every key whose value is of another type (a string typed on the command line,
    a list), through :func:`check_params`.

    Args:
        owner: the start of the message.
        tree: the config.
        kinds: dotted-key patterns (``*`` matches one key: ``optim.optimizer.lr``, ``attack.weights.*``) to
            a kind of :data:`NUMBER_KINDS`.

    Returns:
        The keys checked.

    Example:
        >>> cfg = {"attack": {"weights": {"bone": 1, "speed": 0.5}}}
        >>> check_number_types("train.py", cfg, {"attack.weights.*": "float"})
        ['attack.weights.bone', 'attack.weights.speed']
        >>> check_number_types("train.py", {"optim": {"lr": "1e-3"}}, {"optim.lr": "float"})
        Traceback (most recent call last):
        ValueError: train.py: invalid setting(s): optim.lr must be a number, got '1e-3'
    """
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
    """Give the file at ``path`` the permissions a plain ``open`` would: mkstemp creates owner-only files.

    Example:
        >>> fd, tmp = tempfile.mkstemp(dir=".")
        >>> os.close(fd); make_readable(tmp)
        >>> umask = os.umask(0); _ = os.umask(umask)
        >>> oct(os.stat(tmp).st_mode & 0o777) == oct(0o666 & ~umask)  # 0o644 under umask 022
        True
    """
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
    """Remove the temporary files that :func:`atomic_open` left beside ``path`` in processes that are gone.

    Only this machine's processes, killed before their rename (e.g. by SIGKILL); live writers' files stay.

    Example:
        >>> stale = Path(f".out.json.{socket.gethostname()}.999999999.x1y2.tmp")  # pid 999999999: no process
        >>> _ = stale.write_text("partial")
        >>> remove_stale_temps("out.json"); stale.exists()
        False
    """
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
    r"""Write ``path`` atomically: a temporary file beside it, fsynced and renamed onto it on success.

    On an error the temporary file is deleted. Readers never see a partial file, and a killed writer or a
    crash leaves the old file (or none): the data reaches the disk before the rename does. A temporary file
    is removed at once on an exception (Ctrl-C too), or by the next write of ``path`` after a SIGKILL. A
    failed write (a full disk) raises an ``OSError`` that names ``path``. ``mode`` and ``kwargs`` are
    ``open``'s.

    Example:
        >>> with atomic_open("notes.txt") as f:
        ...     _ = f.write("done\n")
        >>> Path("notes.txt").read_text()
        'done\n'
    """
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
    """``obj`` with every non-finite float as ``None``, so that it is written as strict JSON (``null``).

    NaN is an undefined metric; Python's ``NaN`` is not JSON, and not every parser reads it. numpy scalars
    become Python numbers.

    Example:
        >>> json_safe({"success_rate": float("nan"), "n": np.int64(3)})
        {'success_rate': None, 'n': 3}
    """
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
    """Write ``obj`` to ``path`` as indented strict JSON, atomically (:func:`json_safe`: NaN is null).

    Example:
        >>> write_json("metrics.json", {"success_rate": float("nan")})
        PosixPath('metrics.json')
        >>> json.loads(Path("metrics.json").read_text())
        {'success_rate': None}
    """
    with atomic_open(path, "w") as f:
        json.dump(json_safe(obj), f, indent=2, sort_keys=True, default=str, allow_nan=False)
        f.write("\n")
    return Path(path)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], compress: bool = False) -> Path:
    """Write named ``arrays`` to ``path`` as an npz, atomically; ``compress`` zips them (default false).

    Example:
        >>> write_npz("arrays.npz", {"x": np.zeros(3)})
        PosixPath('arrays.npz')
        >>> np.load("arrays.npz")["x"]
        array([0., 0., 0.])
    """
    with atomic_open(path, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of the bytes of the file at ``path`` (hex), read in 1 MiB blocks.

    Example:
        >>> _ = Path("abc.txt").write_bytes(b"abc")
        >>> file_sha256("abc.txt")[:16]
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """The versions of the package, torch, pytorch_lightning and numpy, for a run's records.

    Example:
        >>> sorted(versions())
        ['lightning_skel', 'numpy', 'pytorch_lightning', 'torch']
    """
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
    """Where a benchmark ran: platform, CPU count, torch's intra-op threads, and the package versions.

    Example:
        >>> sorted(machine_info())[:3]
        ['cpu_count', 'lightning_skel', 'numpy']
    """
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
    """Torch's intra-op thread count for ``threads``.

    Threads on cores another job keeps busy wait for each other at every parallel region
    (docs/RESULTS.md, the demo on a loaded machine), hence ``"auto"``.

    Args:
        threads: a whole number >= 1, as given; or ``"auto"``: ``OMP_NUM_THREADS`` where the environment
            sets it, else the cores this process may run on that other processes leave idle (a
            quarter-second sample), shared among ``processes``; at least 1.
        processes: the processes of this node that share the cores (default 1).
        key: the setting's name in the error (default ``"threads"``).

    Example:
        >>> resolve_threads(4), resolve_threads("auto") >= 1
        (4, True)
        >>> resolve_threads(0)
        Traceback (most recent call last):
        ValueError: config: invalid setting(s): threads must be "auto" or a whole number >= 1, got 0
    """
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

    Example:
        >>> import torch
        >>> with torch_threads(1) as n:
        ...     n, torch.get_num_threads(), os.environ["OMP_NUM_THREADS"]
        (1, 1, '1')
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
