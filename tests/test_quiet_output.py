"""A run says each thing once: Lightning's tips and repeated device lines are filtered, W&B's console
output is off (the run's folder is logged instead), repeated messages of a process are said once, and the
final metrics line is strict JSON."""

from __future__ import annotations

import json
import logging

import pytest

from lightning_skel.cli import print_metrics
from lightning_skel.run import LightningNoise, build_loggers
from lightning_skel.utils import log_once
from tests.helpers import train_cfg


def _passes(f: logging.Filter, msg: str) -> bool:
    return f.filter(logging.LogRecord("pytorch_lightning", logging.INFO, __file__, 1, msg, None, None))


def test_lightning_noise_drops_tips_and_says_device_lines_once():
    f = LightningNoise()
    assert not _passes(f, "💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
    assert not _passes(f, "Restoring states from the checkpoint path at /x/best.ckpt")
    assert [_passes(f, "GPU available: False, used: False") for _ in range(3)] == [True, False, False]
    assert _passes(f, "GPU available: True (cuda), used: True")  # a different line is said
    assert _passes(f, "Loaded model weights from the checkpoint at /x/best.ckpt")
    assert _passes(f, "`Trainer.fit` stopped: `max_epochs=2` reached.")


def test_log_once_says_a_repeated_message_once(caplog):
    caplog.set_level(logging.DEBUG, logger="tests.once")
    lg = logging.getLogger("tests.once")
    for _ in range(3):
        log_once(lg, "data %s: %d clips", "unique-name-for-this-test", 7)
    log_once(lg, "data %s: %d clips", "unique-name-for-this-test", 8)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["data unique-name-for-this-test: 7 clips", "data unique-name-for-this-test: 8 clips"]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2


def test_wandb_logger_is_silent_and_not_anonymous(tmp_path):
    pytest.importorskip("wandb")
    cfg = train_cfg(tmp_path, ["logger=wandb"])
    (wandb_logger,) = [lg for lg in build_loggers(cfg, tmp_path) if type(lg).__name__ == "WandbLogger"]
    init = wandb_logger._wandb_init
    assert init["settings"].silent is True and "anonymous" not in init


def test_final_metrics_line_is_strict_json(capsys):
    print_metrics({"success_rate": float("nan"), "rms_mm": 1.5, "path": tmp_path_like()})
    line = capsys.readouterr().out
    assert line.endswith("\n") and line.count("\n") == 1

    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    parsed = json.loads(line, parse_constant=refuse)
    assert parsed == {"success_rate": None, "rms_mm": 1.5, "path": "/x/y"}


def tmp_path_like():
    from pathlib import PurePosixPath

    return PurePosixPath("/x/y")
