"""The configs under configs/: every experiment composes and builds (data module, system, callbacks; no
training), every attack entry is a spec its class takes, and the callbacks' attacks come from the attack
group, switched with one override, with the settings adversarial training and robust validation always had."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lightning_skel.attacks import build_attack
from lightning_skel.attacks.spec import ATTACK_KWARG_NUMBERS, AttackSpec
from lightning_skel.callbacks import AdversarialTraining, ClassificationFigures, RobustValidation
from lightning_skel.data.readers import READERS
from lightning_skel.models.emotion import EmotionNet
from lightning_skel.run import build_callbacks, build_datamodule, build_system
from lightning_skel.utils import check_number_types
from tests.conftest import DATA
from tests.helpers import CONFIGS

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIGS) / "experiment").glob("*.yaml"))
ATTACK_CONFIGS = sorted(p.stem for p in (Path(CONFIGS) / "attack").glob("*.yaml"))
CALLBACK_CONFIGS = sorted(p.stem for p in (Path(CONFIGS) / "callbacks").glob("*.yaml"))


def train_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the module: each real data set is converted once for all its experiments."""
    return tmp_path_factory.mktemp("cache")


def small_data(cfg: DictConfig) -> list[str]:
    """Overrides that keep an experiment's data small: a generated set stays tiny, and a data set whose
    source files are absent (the full NTU RGB+D) becomes a tiny generated set of its reader's layout."""
    data = cfg.data
    if data.get("synthetic"):
        return ["data.synthetic.num_per_class=2"]
    source = data.get("source")
    if source and not Path(source.src).exists():
        layout = READERS.get(source.format).layout
        return [
            "data.source=null",
            f"data.synthetic={{num_per_class: 2, frames: 24, seed: 0, layout: {layout}}}",
        ]
    return []


@pytest.mark.parametrize("spec", [*EXPERIMENTS, "emotion_gait model=emotion_slim"])
def test_every_experiment_composes_and_builds(spec, tmp_path, cache_dir):
    """Each configs/experiment/*.yaml composes, and its data module, system and callbacks are built from it
    as train.py builds them; the CPU-sized models run on a batch of its data."""
    experiment, *extra = spec.split()
    base = [f"experiment={experiment}", f"out_dir={tmp_path}", f"paths.cache_dir={cache_dir}",
            f"paths.data_dir={DATA}", "data.num_workers=0", *extra]  # fmt: skip
    cfg = train_config([*base, *small_data(train_config(base))])
    assert cfg.out_dir == str(tmp_path)
    assert cfg.trainer.accelerator == ("gpu" if experiment.startswith("ntu60") else "cpu")
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    system = build_system(cfg, dm)
    callbacks = build_callbacks(cfg, tmp_path)
    kinds = {type(c) for c in callbacks}
    assert (AdversarialTraining in kinds) == bool(cfg.callbacks.adv_training)
    assert (RobustValidation in kinds) == bool(cfg.callbacks.robust_validation)
    assert (ClassificationFigures in kinds) == bool(cfg.callbacks.figures)
    net = system.classifier.net
    if cfg.model.name == "sgn":  # the frames the network sees: the window, or the pipeline's segments
        pipeline = system.classifier.pipeline
        assert net.num_frames >= (cfg.data.window if pipeline is None else pipeline.seg)
    if extra == ["model=emotion_slim"]:  # the slim recognizer: STEP's network at a fraction of its size
        assert cfg.model.kwargs.channels == 16 and cfg.model.kwargs.temporal_kernel == 9
        step = EmotionNet(dm.num_classes, net.layout)  # the defaults: STEP's size
        assert sum(p.numel() for p in net.parameters()) < 0.1 * sum(p.numel() for p in step.parameters())
    if cfg.trainer.accelerator == "cpu":  # the CPU-sized models run on the data's window
        x, _, lengths = dm.datasets["train"].batch(np.arange(2))
        x, _ = dm.window_batch(x, lengths, train=False)
        with torch.no_grad():
            assert system.eval()(x).shape == (len(x), dm.num_classes)


@pytest.mark.parametrize("name", CALLBACK_CONFIGS)
def test_every_callbacks_config_builds(name, tmp_path):
    cfg = train_config([f"callbacks={name}", f"out_dir={tmp_path}"])
    callbacks = build_callbacks(cfg, tmp_path)
    # the run's two checkpoints, then one callback per entry that is not null
    built = [k for k, v in cfg.callbacks.items() if k != "checkpoint" and v is not None]
    assert len(callbacks) == 2 + len(built)


def test_a_callback_without_target_is_refused(tmp_path):
    cfg = train_config([f"out_dir={tmp_path}", "callbacks.early_stopping={monitor: val/acc}"])
    with pytest.raises(
        ValueError, match=r"callbacks.early_stopping: a callback is a config with the _target_"
    ):
        build_callbacks(cfg, tmp_path)


def attack_entry(name: str) -> dict:
    """The ``attack`` group's entry ``name`` as attack.py composes it."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("attack", overrides=["ckpt=x.ckpt", f"attack={name}"])
    return OmegaConf.to_container(cfg.attack, resolve=True)


@pytest.mark.parametrize("name", ATTACK_CONFIGS)
def test_every_attack_config_is_a_spec_its_class_takes(name):
    spec = AttackSpec.parse(attack_entry(name), "attack", name)
    attack = spec.build(nn.Linear(1, 1), "ntu25")
    assert attack.name == spec.name and attack.targeted is False


def numbers_in(tree: dict, prefix: str = "") -> list[str]:
    """The dotted keys of ``tree`` (nested tables too) whose values are numbers."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += numbers_in(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(f"{prefix}{key}")
    return out


@pytest.mark.parametrize("name", ATTACK_CONFIGS)
def test_every_number_of_an_attack_config_is_checked(name):
    """Each number an attack entry holds is a key of the config-level number check (ATTACK_KWARG_NUMBERS),
    so that a string typed there (attack.n_queries=abc) is refused before any work, naming the key."""
    entry = attack_entry(name)
    numbers = numbers_in(entry)
    assert numbers, f"{name} holds no number"
    assert set(numbers) <= set(check_number_types(name, entry, ATTACK_KWARG_NUMBERS))
    typed = OmegaConf.create(entry)
    for key in numbers:
        OmegaConf.update(typed, key, "abc")
    with pytest.raises(ValueError, match=f"{name}: invalid setting") as e:
        check_number_types(name, OmegaConf.to_container(typed), ATTACK_KWARG_NUMBERS)
    assert [k for k in numbers if f"{k} must be " not in str(e.value)] == []


def settings(obj) -> dict:
    """What an attack was built with: its public numbers, strings, switches and tables, and those of the
    modules it holds (ADMM's distance and its terms), without the model and the layout."""
    out = {}
    for key, value in vars(obj).items():
        if key.startswith("_") or key in ("model", "layout", "training"):
            continue
        if isinstance(value, (bool, int, float, str, type(None))):
            out[key] = value
        elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
            out[key] = dict(value)
        elif isinstance(value, nn.Module):
            out[key] = settings(value)
    for key, child in obj.named_children() if isinstance(obj, nn.Module) else ():
        out[key] = settings(child)
    return out


# The attacks' settings as the callbacks configs gave them before they were composed from the attack group:
# each class's defaults plus these (configs/callbacks/adv_training.yaml's attack_kwargs and attacks).
BEFORE = {
    "adv_training": ("admm", {"max_iter": 10, "lr": 0.003, "c_growth": 1.5, "patience": 1}),
    "robust_validation.admm": ("admm", {"max_iter": 20, "c_growth": 1.5}),
    "robust_validation.autoattack": ("autoattack", {"eps": 0.02, "version": "standard"}),
}


def test_callback_attacks_compose_to_the_settings_they_always_had():
    """Composed from the attack group with the callbacks config's overrides on top, each attack reaches its
    constructor with the values it had when the callbacks config held its own kwargs over the class's
    defaults: the same attack, built."""
    cfg = OmegaConf.to_container(train_config(["callbacks=adv_training"]).callbacks, resolve=True)
    composed = {
        "adv_training": cfg["adv_training"]["attack"],
        **{f"robust_validation.{k}": v for k, v in cfg["robust_validation"]["attacks"].items()},
    }
    assert set(composed) == set(BEFORE)
    model = nn.Linear(1, 1)
    for where, (name, kwargs) in BEFORE.items():
        spec = AttackSpec.parse(composed[where], where)
        assert spec.name == name and {k: spec.kwargs[k] for k in kwargs} == kwargs
        # the attack built from the composed spec is the one the class's defaults plus those kwargs built
        assert settings(spec.build(model, "ntu25")) == settings(
            build_attack(name, model, "ntu25", **kwargs)
        ), where
    # the callbacks built from the config hold those specs
    built = {
        type(c).__name__: c for c in build_callbacks(train_config(["callbacks=adv_training"]), Path("."))
    }
    assert built["AdversarialTraining"].attack_spec == AttackSpec.parse(composed["adv_training"])
    assert built["RobustValidation"].specs == {
        k: AttackSpec.parse(composed[f"robust_validation.{k}"]) for k in ("admm", "autoattack")
    }


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        (["callbacks=adv_training", "attack@callbacks.adv_training.attack=pgd"], ("adv_training", "attack")),
        (
            ["experiment=utd_hcn_adv", "attack@callbacks.adv_training.attack=ifgsm"],
            ("adv_training", "attack"),
        ),
        (
            ["callbacks=adv_training", "attack@callbacks.robust_validation.attacks.autoattack=pgd"],
            ("robust_validation", "attacks", "autoattack"),
        ),
    ],
)
def test_one_override_switches_a_callbacks_attack(overrides, where):
    """``attack@callbacks.<place>=<entry>`` puts the attack group's entry in place of the callbacks
    config's choice: exactly that entry, none of the other attack's settings left behind."""
    node = OmegaConf.to_container(train_config(overrides).callbacks, resolve=True)
    for key in where:
        node = node[key]
    chosen = overrides[-1].split("=")[-1]
    assert node == attack_entry(chosen)
    AttackSpec.parse(node, ".".join(where))  # every setting is one its class takes
