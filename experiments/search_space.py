"""Parse and check ``sweep.space`` before any training starts.

Each entry names a config key and an Optuna distribution over it. A sweep that fails on trial 17
because of a typo in its space wastes hours, so everything that can be known up front is checked here:
the key exists and is a single value (not a whole section), the distribution is valid (Optuna's own
checks: low <= high, log ranges above 0, non-empty choices), and every bound or choice fits the key's
type in the schema. Errors name the entry, e.g. ``sweep.space[1] (model.lrr): ...``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import optuna
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf.errors import DogbreedsError
from conf.schema.choices import ParamType

CATEGORICAL_VALUE_TYPES = (type(None), bool, int, float, str)
_ABSENT = object()


class SearchSpaceError(DogbreedsError):
    """A ``sweep.space`` entry cannot be searched; the message names the entry and what to change."""


@dataclass(frozen=True)
class SearchParam:
    key: str
    distribution: optuna.distributions.BaseDistribution

    def suggest(self, trial: optuna.trial.Trial):
        """Ask the trial for a value; the Optuna parameter name is the config key."""
        dist = self.distribution
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            return trial.suggest_categorical(self.key, dist.choices)
        if isinstance(dist, optuna.distributions.IntDistribution):
            return trial.suggest_int(self.key, dist.low, dist.high, step=dist.step, log=dist.log)
        return trial.suggest_float(self.key, dist.low, dist.high, step=dist.step, log=dist.log)


def parse_space(cfg: DictConfig) -> list[SearchParam]:
    """``cfg`` is the whole composed config: keys are checked against it."""
    entries = cfg.sweep.space
    if not entries:
        raise SearchSpaceError(
            "sweep.space is empty: list at least one key to search, e.g. "
            "'sweep.space=[{key: model.lr, type: float, low: 0.001, high: 0.1, log: true}]'"
        )
    params, seen = [], set()
    for index, entry in enumerate(entries):
        where = f"sweep.space[{index}] ({entry.key or 'no key'})"
        try:
            param = _parse_entry(cfg, entry)
        except (SearchSpaceError, ValueError, TypeError) as err:
            raise SearchSpaceError(f"{where}: {err}") from err
        if param.key in seen:
            raise SearchSpaceError(f"{where}: {param.key} is searched twice; keep one entry")
        seen.add(param.key)
        params.append(param)
    return params


def apply_params(cfg: DictConfig, values: dict[str, object]) -> DictConfig:
    """A copy of ``cfg`` with each sampled ``{key: value}`` set (the schema checks each value's type)."""
    trial_cfg = copy.deepcopy(cfg)
    for key, value in values.items():
        OmegaConf.update(trial_cfg, key, value, merge=False)
    return trial_cfg


def _parse_entry(cfg: DictConfig, entry) -> SearchParam:
    key = entry.key
    if not key:
        raise SearchSpaceError("no key: set key to the config key to search, e.g. key: model.lr")
    if key.split(".")[0] == "sweep":
        raise SearchSpaceError("the sweep section itself cannot be searched")
    current = OmegaConf.select(cfg, key, default=_ABSENT)
    if current is _ABSENT:
        raise SearchSpaceError(f"unknown config key {key}; see conf/schema/ for the keys that exist")
    if OmegaConf.is_config(current):
        raise SearchSpaceError(f"{key} is a config section, not a value; search one of its keys")
    distribution = _distribution(entry)
    _check_fits_schema(cfg, key, _extreme_values(distribution))
    return SearchParam(key, distribution)


def _distribution(entry) -> optuna.distributions.BaseDistribution:
    if entry.type == ParamType.categorical:
        if entry.low is not None or entry.high is not None or entry.log or entry.step is not None:
            raise SearchSpaceError("categorical takes only choices (no low/high/log/step)")
        choices = list(entry.choices or [])
        for choice in choices:
            if not isinstance(choice, CATEGORICAL_VALUE_TYPES):
                raise SearchSpaceError(
                    f"choice {choice!r} is a {type(choice).__name__}; choices must be numbers, strings, "
                    "booleans or null"
                )
        return optuna.distributions.CategoricalDistribution(choices)
    if entry.choices is not None:
        raise SearchSpaceError(f"{entry.type} takes low/high, not choices; use type: categorical for a list")
    if entry.low is None or entry.high is None:
        raise SearchSpaceError(f"{entry.type} needs both low and high")
    if entry.type == ParamType.int:
        bounds = (entry.low, entry.high, entry.step if entry.step is not None else 1)
        if any(value != int(value) for value in bounds):
            raise SearchSpaceError(f"int low/high/step must be whole numbers (got {bounds})")
        low, high, step = (int(value) for value in bounds)
        return optuna.distributions.IntDistribution(low, high, log=entry.log, step=step)
    return optuna.distributions.FloatDistribution(entry.low, entry.high, log=entry.log, step=entry.step)


def _extreme_values(distribution) -> list[object]:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def _check_fits_schema(cfg: DictConfig, key: str, values: list[object]) -> None:
    for value in values:
        try:
            apply_params(cfg, {key: value})
        except OmegaConfBaseException as err:
            message = str(err).splitlines()[0]
            raise SearchSpaceError(f"value {value!r} does not fit {key}: {message}") from err
