"""What train.py and attack.py share: a user's mistake reported as one line, with exit code 2.

This module imports neither torch nor Lightning, so that a config the entry point can judge alone (a
required key left unset) is refused before the heavy imports."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

PACKAGE = Path(__file__).resolve().parent
USAGE_EXIT = 2  # as argparse: the command line needs changing
TRACEBACK_ENV = "LIGHTNING_SKEL_TRACEBACK"  # set to 1 for the whole traceback of a user error


def fail(script: str, message: str) -> None:
    """Print ``script: error: message`` on stderr as one line and exit with :data:`USAGE_EXIT`.

    Example:
        >>> import contextlib
        >>> with contextlib.redirect_stderr(sys.stdout):  # here, to show the line
        ...     try: fail("train.py", "data.path: no such file")
        ...     except SystemExit as e: print("exit code", e.code)
        train.py: error: data.path: no such file
        exit code 2
    """
    sys.stderr.write(f"{script}: error: {' '.join(str(message).split())}\n")
    raise SystemExit(USAGE_EXIT)


def require(cfg: DictConfig, script: str) -> None:
    """Refuse a config with a required (``???``) key left unset, naming it and how to set it.

    Example:
        >>> import contextlib
        >>> with contextlib.redirect_stderr(sys.stdout), contextlib.suppress(SystemExit):
        ...     require(OmegaConf.create({"ckpt": "???", "sigma": 0.01}), "certify.py")
        certify.py: error: ckpt must be set, e.g. python certify.py ckpt=...
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        fail(script, f"{', '.join(missing)} must be set, e.g. python {script} {missing[0]}=...")


def _raised_by_the_project(e: BaseException) -> bool:
    """Whether the innermost frame of ``e``'s traceback is in this package: the project's own checks name
    the key or file to change, where an error from inside a library needs its traceback."""
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE)


@contextmanager
def user_errors(script: str) -> Iterator[None]:
    """Turn the project's own argument, file and lookup errors (and an unset required key) into one line
    and exit code 2; any other error, or any error with ``LIGHTNING_SKEL_TRACEBACK=1``, keeps its
    traceback.

    Example:
        >>> import contextlib
        >>> from lightning_skel.utils import check_params  # a check of the project's: one line, exit code 2
        >>> with contextlib.redirect_stderr(sys.stdout), contextlib.suppress(SystemExit):
        ...     with user_errors("attack.py"):
        ...         check_params("attack.py", {"limit": (0, False, "an integer >= 1")}, "setting(s)")
        attack.py: error: attack.py: invalid setting(s): limit must be an integer >= 1, got 0
        >>> with user_errors("attack.py"):  # raised elsewhere: the traceback stays
        ...     raise ValueError("not the project's")
        Traceback (most recent call last):
        ValueError: not the project's
    """
    try:
        yield
    except MissingMandatoryValue as e:
        if os.environ.get(TRACEBACK_ENV):
            raise
        fail(script, f"{e.full_key} must be set, e.g. python {script} {e.full_key}=...")
    except (ValueError, FileNotFoundError, KeyError) as e:
        if os.environ.get(TRACEBACK_ENV) or not _raised_by_the_project(e):
            raise
        fail(script, e.args[0] if isinstance(e, KeyError) and e.args else e)


def print_metrics(metrics: dict) -> None:
    """The run's final metrics as one line of strict JSON on stdout (undefined values ``null``, as in
    metrics.json), for scripts that read the last line.

    Example:
        >>> print_metrics({"test/acc": 0.75, "rms_mm": float("nan"), "epochs": 3})
        {"epochs": 3, "rms_mm": null, "test/acc": 0.75}
    """
    import json

    from lightning_skel.utils import json_safe

    sys.stdout.write(json.dumps(json_safe(metrics), sort_keys=True, default=str, allow_nan=False) + "\n")
