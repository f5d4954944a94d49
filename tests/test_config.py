"""The typed schema is the single source of truth: closed choices are checked when the config is
composed, and the YAML group files only say what differs from the schema's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

import conf
from conf.loader import ConfigError, load_config
from conf.schema import Config

CONF_DIR = Path(conf.__file__).parent


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("data.corrupt_images=ignore", "[skip, fail]"),
        ("model.scheduler=linear", "[cosine, step, onecycle, none]"),
        ("backend.name=kubernetes", "[local, sagemaker]"),
        ("deploy.target=kubernetes", "[local, sagemaker]"),
        ("deploy.blue_green.traffic=linear", "[all_at_once, canary]"),
        ("serve.device=tpu", "[auto, cpu, cuda]"),
    ],
)
def test_closed_choices_fail_at_composition_naming_the_allowed_values(override, allowed):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    value = override.split("=")[1]
    assert str(err.value) == (
        f"Error merging override {override}: Invalid value '{value}', expected one of {allowed}"
    )


def test_choices_keep_their_spelling_everywhere_a_string_is_expected():
    cfg = load_config(["model.optimizer=sgd", "sweep.direction=minimize"])
    assert cfg.model.optimizer == "sgd" and f"{cfg.sweep.direction}" == "minimize"
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert plain["model"]["optimizer"] == "sgd" and type(plain["model"]["optimizer"]) is str
    assert list(plain["sweep"]["pruner_args"]) == ["median"]  # enum-typed keys come back as strings too
    assert OmegaConf.to_yaml(cfg).count("optimizer: sgd") == 1


def _same_as_default(value, default) -> list[str]:
    """Keys of ``value`` (a group file's mapping) that repeat the schema's ``default``."""
    repeated = []
    for key, setting in value.items():
        if key not in default:
            continue
        current = default[key]
        if isinstance(setting, dict) and isinstance(current, DictConfig):
            repeated += [f"{key}.{inner}" for inner in _same_as_default(setting, current)]
        elif (
            OmegaConf.is_config(current)
            and OmegaConf.to_container(current) == setting
            or not OmegaConf.is_config(current)
            and current == setting
        ):
            repeated.append(key)
    return repeated


@pytest.mark.parametrize(
    "group_file", sorted(CONF_DIR.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_group_files_set_only_what_differs_from_the_schema(group_file):
    settings = yaml.safe_load(group_file.read_text()) or {}
    defaults = OmegaConf.structured(Config)[group_file.parent.name]
    assert _same_as_default(settings, defaults) == []
    assert group_file.read_text().lstrip().startswith("#") or settings  # an empty file says why it is empty


def test_root_config_only_lists_the_groups():
    root = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    assert list(root) == ["defaults"]
