"""The README's commands run as written, in the order written: every ``train.py`` and ``attack.py`` line of its
bash blocks composes with Hydra, and every checkpoint a line reads (``init_from``, ``ckpt``, ``emotion_ckpt``,
``ckpt_path=last``) is written by a command above it, of a model that fits. Running them all would take
hours; composing them and following their ``out_dir`` catches a command that fails at once."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from lightning_skel.models.convert import OFFICIAL_FORMATS
from tests.helpers import CONFIGS

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(program, arguments)`` for each command line of the bash blocks of ``text``, in order: ``make``
    targets as ``("make", [target])``, Python scripts by their file name; ``NAME=value`` lines set a variable
    that later ``$NAME`` arguments read."""
    commands, env = [], {}
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            if len(words) == 1 and re.fullmatch(r"[A-Z_]+=\S+", words[0]):
                name, value = words[0].split("=", 1)
                env[name] = value
                continue
            words = [re.sub(r"\$(\w+)", lambda m: env[m.group(1)], w) for w in words]
            if "lightning_skel.models.convert" in words:  # python -m lightning_skel.models.convert ...
                commands.append(("convert", words[words.index("lightning_skel.models.convert") + 1 :]))
                continue
            if words[0] == "make":
                commands.extend(("make", [target]) for target in words[1:])
                continue
            script = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
            if script is not None:
                commands.append((Path(words[script]).name, words[script + 1 :]))
    return commands


def compose_jobs(config: str, args: list[str]) -> list[DictConfig]:
    """The config of each job ``python <config>.py ARGS`` runs (a sweep, ``-m``: one per combination)."""
    multirun = "-m" in args or "--multirun" in args
    args = [a for a in args if a not in ("-m", "--multirun")]
    jobs = [args]
    if multirun:
        parsed = OverridesParser.create().parse_overrides(args)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return [compose(config, overrides=job) for job in jobs]


def demo_out_dirs() -> dict[str, DictConfig]:
    """``make demo``'s training runs (lightning_skel/demo.py composes them from these experiments)."""
    source = (ROOT / "lightning_skel" / "demo.py").read_text()
    experiments = re.findall(r'"experiment=(\w+)"', source)
    assert experiments, "lightning_skel/demo.py names no experiment"
    return {cfg.out_dir: cfg for e in experiments for cfg in compose_jobs("train", [f"experiment={e}"])}


def producer(path: str, runs: dict[str, DictConfig], where: str) -> DictConfig:
    """The train config of the earlier README run whose ``out_dir`` holds checkpoint ``path``, or of the
    checkpoint an import above wrote to ``path``."""
    if path in runs:
        return runs[path]
    out_dir = str(Path(path).parent.parent)
    assert Path(path).parent.name == "checkpoints" and out_dir in runs, (
        f"{where}: {path} is not a checkpoint of a run a command above writes ({sorted(runs)})"
    )
    return runs[out_dir]


def model_of(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg.model, resolve=True)


def check_commands(commands: list[tuple[str, list[str]]]) -> None:
    runs: dict[str, DictConfig] = {}  # out_dir -> train config of the runs written so far
    attack_dirs: dict[str, list[str]] = {}
    for program, args in commands:
        where = f"{program} {' '.join(args)}"
        if program == "make":
            if args == ["demo"]:
                runs.update(demo_out_dirs())
            continue
        if program == "convert":  # MODEL OFFICIAL OUT --data DATA: OUT is a checkpoint of MODEL on DATA
            model, _, out = args[:3]
            assert model in OFFICIAL_FORMATS, f"{where}: no official format {model!r}"
            (cfg,) = compose_jobs("train", [f"data={args[args.index('--data') + 1]}", f"model={model}"])
            runs[out] = cfg
            continue
        if program == "train.py":
            for cfg in compose_jobs("train", args):
                if cfg.get("init_from"):
                    source = producer(cfg.init_from, runs, where)
                    assert model_of(source) == model_of(cfg), (
                        f"{where}: init_from's model {model_of(source)} is not this run's {model_of(cfg)}"
                    )
                    assert source.data.name == cfg.data.name and source.data.window == cfg.data.window, where
                if cfg.get("ckpt_path") == "last":
                    assert cfg.out_dir in runs, f"{where}: nothing above trains into {cfg.out_dir} to resume"
                runs[cfg.out_dir] = cfg
        elif program == "attack.py":
            jobs = compose_jobs("attack", args)
            for cfg in jobs:
                ckpts = [cfg.ckpt] if isinstance(cfg.ckpt, str) else list(cfg.ckpt)
                sources = [producer(c, runs, where) for c in ckpts]
                for c, source in zip(ckpts, sources, strict=True):
                    assert source.model.name != "emotion", f"{where}: ckpt {c} is an emotion recognizer"
                assert len({(s.data.name, s.data.window) for s in sources}) == 1, (
                    f"{where}: fused streams differ"
                )
                if cfg.get("emotion_ckpt"):
                    source = producer(cfg.emotion_ckpt, runs, where)
                    assert source.model.name == "emotion", (
                        f"{where}: emotion_ckpt is not an emotion recognizer"
                    )
            if len(jobs) == 1:  # a sweep's jobs write into folders of their own under out_dir
                out = jobs[0].out_dir
                assert out not in attack_dirs or attack_dirs[out] == args, (
                    f"{where}: out_dir {out} holds the shards of `attack.py {' '.join(attack_dirs[out])}` above, "
                    "so this run would be refused; give it an out_dir of its own"
                )
                attack_dirs[out] = args


def test_readme_commands_compose_and_read_checkpoints_written_above():
    commands = readme_commands((ROOT / "README.md").read_text())
    scripts = [program for program, _ in commands]
    assert scripts.count("train.py") >= 5 and scripts.count("attack.py") >= 5 and "make" in scripts
    check_commands(commands)


def test_the_check_catches_a_command_that_would_fail():
    """A fine-tune of another model's checkpoint, a checkpoint no command writes, two attack runs sharing an
    out_dir, an emotion recognizer attacked as the classifier: each is caught."""
    train = ("train.py", ["data=utd_mhad"])
    finetune = ("train.py", ["experiment=utd_hcn_adv", "init_from=runs/utd_mhad_hcn/checkpoints/last.ckpt"])
    with pytest.raises(AssertionError, match="init_from's model"):
        check_commands([train, finetune])
    with pytest.raises(AssertionError, match="is not a checkpoint of a run a command above writes"):
        check_commands([("attack.py", ["ckpt=..."])])
    attack = ("attack.py", ["ckpt=runs/utd_mhad_hcn/checkpoints/last.ckpt"])
    with pytest.raises(AssertionError, match="holds the shards of"):
        check_commands([train, attack, (attack[0], [*attack[1], "limit=64"])])
    emotion = ("train.py", ["experiment=emotion_gait"])
    with pytest.raises(AssertionError, match="is an emotion recognizer"):
        check_commands([emotion, ("attack.py", ["ckpt=runs/emotion_gait/checkpoints/last.ckpt"])])
    text = "```bash\nCKPT=runs/x/checkpoints/last.ckpt  # a note\n.venv/bin/python attack.py -m ckpt=$CKPT a=1,2\n```\n"
    assert readme_commands(text) == [("attack.py", ["-m", "ckpt=runs/x/checkpoints/last.ckpt", "a=1,2"])]
