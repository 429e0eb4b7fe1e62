"""Every config group with a registry: the registry's names are the YAML file names in conf/<group>/, every
YAML composes with Hydra, and unknown names fail with the list of valid ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from coreset_interp.data import get_dataset, list_datasets
from coreset_interp.interpreters import get_interpreter, list_interpreters
from coreset_interp.models import get_model, list_models
from coreset_interp.selectors import get_selector, list_selectors
from coreset_interp.trackers import get_logger, list_loggers

CONF = Path(__file__).resolve().parents[1] / "conf"

REGISTRIES: dict[str, Callable[[], list[str]]] = {
    "selector": list_selectors,
    "interpreter": list_interpreters,
    "model": list_models,
    "dataset": list_datasets,
    "logger": list_loggers,
}


def _yaml_names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _choices() -> list[tuple[str, str]]:
    groups = [*REGISTRIES, "ratio", "metric"]
    return [(g, name) for g in groups for name in _yaml_names(g)]


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_registry_names_are_the_yaml_names(group: str) -> None:
    yamls = _yaml_names(group)
    assert yamls, f"conf/{group}/ has no YAML"
    registered = set(REGISTRIES[group]())
    assert registered == set(yamls)
    for stem in yamls:
        body = yaml.safe_load((CONF / group / f"{stem}.yaml").read_text()) or {}
        # The YAML's `name` is what the runner looks up (no second key such as the old model `arch`).
        assert "arch" not in body
        assert body.get("name", stem) == stem


@pytest.mark.parametrize(("group", "name"), _choices(), ids=[f"{g}={n}" for g, n in _choices()])
def test_every_yaml_composes(group: str, name: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=[f"{group}={name}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices[group] == name
    node = cfg[group]
    if group in REGISTRIES:
        assert node.name == name
    if group == "ratio":
        percents = list(node.percents)
        assert percents and all(isinstance(p, int) and 0 < p <= 100 for p in percents)


def test_default_job_is_the_embedded_default(make_config) -> None:
    cfg = make_config(["logger=wandb"])
    assert cfg["model"]["name"] == "resnet18" and cfg["model"]["weights"] == "train"
    assert cfg["model"]["stem"] == "small"
    assert cfg["dataset"]["name"] == "digits"
    assert cfg["selector"]["name"] == "moderate"
    assert cfg["interpreter"]["name"] == "ice"
    assert cfg["ratio"]["percents"] == [5, 10, 20, 30, 40, 50, 95]
    assert cfg["metric"]["alpha"] == 0.5
    assert cfg["logger"]["name"] == "wandb"


def test_ratio_presets() -> None:
    def percents(name: str) -> list[int]:
        return yaml.safe_load((CONF / "ratio" / f"{name}.yaml").read_text())["percents"]

    assert percents("paper") == [5, 10, 20, 30, 40, 50, 95]
    assert percents("table1") == [10, 20, 30, 40, 50]
    assert percents("grid") == list(range(5, 100, 5))


def test_wandb_mode_comes_from_the_environment(make_config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert make_config(["logger=wandb"])["logger"]["mode"] == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    assert make_config(["logger=wandb"])["logger"]["mode"] == "offline"


def test_cache_dir_is_a_top_level_override(make_config, tmp_path: Path) -> None:
    assert make_config([f"cache_dir={tmp_path}"])["cache_dir"] == str(tmp_path)


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown selector 'nope'; choose one of: .*moderate.*random"):
        get_selector("nope")
    with pytest.raises(ValueError, match=r"unknown interpreter 'nope'; choose one of: .*ice"):
        get_interpreter("nope")
    datasets = "digits, fashion_mnist, imagefolder, imagenet"
    with pytest.raises(ValueError, match=rf"unknown dataset 'nope'; choose one of: {datasets}"):
        get_dataset("nope")
    with pytest.raises(ValueError, match=r"unknown logger 'nope'; choose one of: none, wandb"):
        get_logger("nope")
    with pytest.raises(ValueError, match=r"unknown model 'nope'; choose one of: resnet18, resnet50, vgg19$"):
        get_model("nope", weights="random", stem="small")


def test_unknown_yaml_choice_is_a_hydra_error() -> None:
    with (
        initialize_config_dir(config_dir=str(CONF), version_base=None),
        pytest.raises(MissingConfigException, match="selector/nope"),
    ):
        compose(config_name="config", overrides=["selector=nope"])


def test_dataset_presets_state_only_what_other_groups_read() -> None:
    # conf/dataset_defaults/<dataset>.yaml is the one place a dataset states its model's default weights,
    # stem and training budget and its activation dtype: one preset per dataset, no other keys.
    from coreset_interp.models.train import TRAIN_FIELDS

    presets = _yaml_names("dataset_defaults")
    assert presets == _yaml_names("dataset")
    for stem in presets:
        body = yaml.safe_load((CONF / "dataset_defaults" / f"{stem}.yaml").read_text())
        assert set(body) <= {"weights", "stem", "activation_dtype", "train"}, stem
        assert set(body.get("train") or {}) <= set(TRAIN_FIELDS), stem
    for stem in _yaml_names("dataset"):
        body = yaml.safe_load((CONF / "dataset" / f"{stem}.yaml").read_text())
        assert not {"model_weights", "stem", "activation_dtype"} & set(body), stem
        assert not [k for k in body if k.startswith("train_") and k != "train_dir"], stem
