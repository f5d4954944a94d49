"""Compose the typed config from ``conf/`` plus command-line overrides.

Hydra's compose API (rather than ``@hydra.main``) keeps the working directory and logging untouched
and lets one console script serve many verbs. Composition errors become ``ConfigError`` with Hydra's
message, which names the offending key or group option.
"""

from __future__ import annotations

import dataclasses
import difflib

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, OmegaConfBaseException

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
        raise ConfigError(_describe(err)) from err
    OmegaConf.set_readonly(cfg, False)
    return cfg


def _describe(err: Exception) -> str:
    """Hydra's headline plus the schema's reason, which Hydra keeps only in ``__cause__``.

    Hydra alone says "Could not override 'model.lrr'. To append to your config use +model.lrr=..." (an
    append would be silently ignored) or "Error merging override data.batch_size=big" (no reason why).
    """
    cause = err.__cause__
    if not isinstance(cause, OmegaConfBaseException):
        return str(err).strip()
    message = f"{str(err).strip().splitlines()[0].rstrip('.')}: {str(cause).splitlines()[0]}"
    if isinstance(cause, ConfigAttributeError) and dataclasses.is_dataclass(cause.object_type):
        valid = [f.name for f in dataclasses.fields(cause.object_type)]
        unknown = (cause.full_key or "").rsplit(".", 1)[-1]
        close = difflib.get_close_matches(unknown, valid, n=1)
        message += f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return message
