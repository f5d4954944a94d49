"""Compose the typed config from ``conf/`` plus command-line overrides.

Hydra's compose API (rather than ``@hydra.main``) keeps the working directory and logging untouched
and lets one console script serve many verbs. Composition errors become ``ConfigError`` with Hydra's
message, which names the offending key or group option.
"""

from __future__ import annotations

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf import schema


class ConfigError(ValueError):
    """An override or config file does not fit the schema; the message names the key."""


def load_config(overrides: list[str] = (), config_name: str = "config") -> DictConfig:
    schema.register()
    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err).strip()) from err
    OmegaConf.set_readonly(cfg, False)
    return cfg
