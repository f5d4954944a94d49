"""The project's objective: one validation metric and whether higher or lower is better.

``sweep.metric``/``sweep.direction`` decide which epoch's checkpoint a run keeps, when it stops early,
what a sweep optimizes, which run ``promote`` picks and which epoch the promotion gate compares with.
This is the one place that says how the direction reads in each tool's vocabulary, so those can never
disagree (e.g. a sweep minimizing val_loss whose runs kept their highest-val_acc checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from conf.schema.choices import Direction

T = TypeVar("T")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Direction

    @classmethod
    def of(cls, cfg) -> Objective:
        """The objective of a composed config (its ``sweep`` section)."""
        return cls(str(cfg.sweep.metric), Direction(cfg.sweep.direction))

    @property
    def maximize(self) -> bool:
        return self.direction is Direction.maximize

    @property
    def lightning_mode(self) -> str:
        """``mode`` of ModelCheckpoint and EarlyStopping."""
        return "max" if self.maximize else "min"

    @property
    def optuna_direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    @property
    def mlflow_order(self) -> str:
        """Sort order of ``metrics.<metric>`` in ``MlflowClient.search_runs``: the best run first."""
        return "DESC" if self.maximize else "ASC"

    @property
    def best_word(self) -> str:
        return "highest" if self.maximize else "lowest"

    def best(self, items: Iterable[T], value: Callable[[T], float]) -> T:
        """The item with the best value; the earliest one on ties, like ModelCheckpoint, which replaces
        its best checkpoint only on a strict improvement."""
        return (max if self.maximize else min)(items, key=value)
