"""Compose the typed config from ``conf/`` plus command-line overrides.

Hydra's compose API (rather than ``@hydra.main``) keeps the working directory and logging untouched
and lets one console script serve many verbs. Composition errors become ``ConfigError`` with Hydra's
message, which names the offending key or group option.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from conf import schema
from conf.errors import DogbreedsError
from conf.image_versions import check_images


class ConfigError(DogbreedsError):
    """A config value is wrong: it does not fit the schema, or the schema allows it but it cannot work
    here (an unknown architecture, a batch that does not divide across processes); the message names
    the key."""


def load_config(overrides: list[str] = (), config_name: str = "config") -> DictConfig:
    schema.register()
    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_describe(err)) from err
    check_images(cfg)  # the SageMaker images' torch/Python against this code, before any work
    OmegaConf.set_readonly(cfg, False)
    return cfg


def _describe(err: Exception) -> str:
    """Hydra's headline plus the schema's reason, which Hydra keeps only in the exception's causes.

    Hydra alone says "Could not override 'model.lrr'. To append to your config use +model.lrr=..." (an
    append would be silently ignored), "Error merging override data.batch_size=big" (no reason why), or,
    for a bad value in a group file, "In 'model/x': ValidationError raised while composing config:"
    followed by a multi-line dump; every case becomes one line that names the key and the allowed values.
    """
    cause = _omegaconf_cause(err)
    if cause is None:
        return str(err).strip()
    headline = str(err).strip().splitlines()[0].rstrip(".:")
    # OmegaConf leaves its template unfilled on some paths ("Key '$KEY' is incompatible ..."); the headline
    # names the override, so the placeholder is dropped rather than shown.
    reason = re.sub(r" '\$[A-Z_]+'", "", str(cause).splitlines()[0])
    if cause is not err.__cause__:  # a group file: "In 'model/x': ValidationError raised while ..."
        headline = f"{headline.split(': ', 1)[0]}: {cause.full_key}"
    message = f"{headline}: {reason}"
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and dataclasses.is_dataclass(
        cause.object_type
    ):
        valid = [f.name for f in dataclasses.fields(cause.object_type)]
        unknown = (cause.full_key or "").rsplit(".", 1)[-1]
        close = difflib.get_close_matches(unknown, valid, n=1)
        message += f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return message


def _omegaconf_cause(err: BaseException) -> OmegaConfBaseException | None:
    """The schema's exception behind Hydra's: raised ``from`` it, or while handling it."""
    cause = err.__cause__ or err.__context__
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__ or cause.__context__
    return cause
