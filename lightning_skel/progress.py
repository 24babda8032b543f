"""Progress of long runs: a bar in a terminal; elsewhere (a file, a pipe, CI, a SLURM log), where a bar prints
nothing, periodic ``logging`` lines. Time-throttled, so that the per-step cost stays negligible."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, RichProgressBar

from lightning_skel.utils import check_params

log = logging.getLogger(__name__)


def interactive() -> bool:
    """Whether progress can be drawn as a bar: stdout is a terminal.

    Example:
        >>> interactive()  # a doctest's stdout is not a terminal
        False
    """
    return sys.stdout.isatty()


def every_s(cfg: Any, script: str) -> float:
    """The config's ``progress_every_s``, seconds between progress lines (default 30), or a clear error.

    ``script`` starts the error.

    Example:
        >>> every_s({"progress_every_s": 10}, "train.py")
        10.0
        >>> every_s({"progress_every_s": "10s"}, "train.py")
        Traceback (most recent call last):
        ValueError: train.py: invalid setting(s): progress_every_s must be a number of seconds >= 0, ...
    """
    value = cfg.get("progress_every_s", 30)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    check_params(script, {"progress_every_s": (value, ok, "a number of seconds >= 0")}, "setting(s)")
    return float(value)


def format_eta(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS``, or ``?`` when not known yet (infinite, NaN, negative).

    Example:
        >>> format_eta(3725), format_eta(float("inf"))
        ('1:02:05', '?')
    """
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _eta(elapsed: float, done: int, left: float) -> float:
    """Seconds left at the rate so far (``done`` units in ``elapsed`` seconds)."""
    if left <= 0:
        return 0.0
    return elapsed / done * left if done > 0 else math.inf


def _running(pl_module: pl.LightningModule) -> dict[str, float]:
    """The module's running training loss and accuracy of the epoch so far, where it keeps them."""
    get = getattr(pl_module, "running_metrics", None)
    return get() if callable(get) else {}


class MetricsBar(RichProgressBar):
    """Lightning's Rich bar showing the epoch's running training loss and accuracy instead of ``v_num``.

    Args:
        every_s: seconds between readings of the metrics, which wait for the device (default 0.5).
        **kwargs: ``RichProgressBar``'s arguments.

    Example:
        >>> bar = MetricsBar(every_s=1.0)  # a callback of pl.Trainer(callbacks=[bar])
        >>> bar.every_s
        1.0
    """

    def __init__(self, every_s: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.every_s, self._last, self._shown = every_s, -math.inf, {}

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._last = now
            self._shown = {k: round(v, 3) for k, v in _running(pl_module).items()}
        return {**items, **self._shown}


class TrainingProgressLog(Callback):
    """A log line every ``every_s`` seconds of training, and when training ends (rank 0 only).

    Written at a step's or an epoch's end: the epoch, the step of the epoch, the epoch's running training
    loss and accuracy, and the time left for the run.

    Args:
        every_s: seconds between lines (default 30).

    Example:
        >>> callback = TrainingProgressLog(every_s=60)  # a callback of pl.Trainer(callbacks=[callback])
        >>> callback.every_s
        60
    """

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = self._last = time.perf_counter()
        self._done0 = trainer.current_epoch * trainer.num_training_batches
        self._epoch, self._step, self._pending = trainer.current_epoch, 0, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._epoch, self._step, self._pending = trainer.current_epoch, batch_idx + 1, True
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._line(trainer, pl_module, now)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._line(trainer, pl_module, now)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending:  # where training stopped, unless the last line said it
            self._line(trainer, pl_module, time.perf_counter())

    def _line(self, trainer: pl.Trainer, pl_module: pl.LightningModule, now: float) -> None:
        self._last, self._pending = now, False
        if not trainer.is_global_zero:
            return
        step, per_epoch, epochs = self._step, trainer.num_training_batches, trainer.max_epochs
        done = self._epoch * per_epoch + step
        total = per_epoch * epochs if math.isfinite(per_epoch) and epochs and epochs > 0 else math.nan
        eta = _eta(now - self._t0, done - self._done0, total - done)
        metrics = "".join(f" {k} {v:.4f}" for k, v in _running(pl_module).items())
        log.info(
            "epoch %d/%s step %d/%s%s elapsed %s ETA %s",
            self._epoch + 1, epochs, step, per_epoch, metrics, format_eta(now - self._t0), format_eta(eta),
        )  # fmt: skip


def training_progress(enabled: bool, every_s: float) -> list[Callback]:
    """The progress callbacks of a training run: the bar in a terminal, log lines elsewhere.

    None when ``enabled`` (``trainer.enable_progress_bar``) is false. Without a terminal the trainer's own
    bar must be off (``enable_progress_bar=False``). ``every_s``: seconds between log lines.

    Example:
        >>> [type(c).__name__ for c in training_progress(True, every_s=30)]  # no terminal here
        ['TrainingProgressLog']
    """
    if not enabled:
        return []
    return [MetricsBar()] if interactive() else [TrainingProgressLog(every_s)]


class ClipProgress:
    """Items finished out of ``total``: a Rich bar in a terminal, else log lines now and then and at the end.

    Args:
        description: what runs, the start of each line.
        total: the items to finish.
        every_s: seconds between log lines (default 30).
        enabled: ``False`` (ranks other than 0) shows nothing (default true).
        unit: what the items are (default ``"clips"``).

    Example:
        >>> with ClipProgress("ADMM", total=8) as bar:
        ...     bar.advance(3)  # 3 more clips finished
        >>> bar.done
        3
    """

    def __init__(
        self, description: str, total: int, every_s: float = 30.0, enabled: bool = True, unit: str = "clips"
    ) -> None:
        self.description, self.total, self.every_s, self.enabled = description, total, every_s, enabled
        self.unit = unit
        self.done = self._done0 = 0
        self._shown = -1  # the count of the last line logged
        self._bar = None

    def __enter__(self) -> ClipProgress:
        self._t0 = self._last = time.perf_counter()
        if self.enabled and interactive():
            from rich.progress import Progress

            self._bar = Progress()
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif exc[0] is None and self._shown != self.done:
            self._line(time.perf_counter())

    def skip(self, k: int) -> None:
        """``k`` clips done before this run (a resume): counted as done, not in the rate of the ETA."""
        self.done += k
        self._done0 += k
        if self._bar is not None:
            self._bar.reset(self._task, completed=self.done)

    def advance(self, k: int = 1) -> None:
        """``k`` more clips finished."""
        self.done += k
        if self._bar is not None:
            self._bar.advance(self._task, k)
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._line(now)

    def _line(self, now: float) -> None:
        self._last, self._shown = now, self.done
        if not self.enabled:
            return
        eta = _eta(now - self._t0, self.done - self._done0, self.total - self.done)
        pct = 100 * self.done / self.total if self.total else 100.0
        log.info(
            "%s: %s %d/%d (%.0f %%) elapsed %s ETA %s",
            self.description, self.unit, self.done, self.total, pct, format_eta(now - self._t0), format_eta(eta),
        )  # fmt: skip
