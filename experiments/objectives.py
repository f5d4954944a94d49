"""Deploy-aware sweeps: the validation metric and what the trained network costs to serve, as one study.

``sweep.objectives=[val_acc, latency_ms]`` makes the study multi-objective: Optuna keeps the Pareto
front (no trial on it is both less accurate and slower than another), and ``promote`` later picks the
most accurate trial under ``deploy.max_latency_ms``. The metric keeps ``sweep.direction`` and stays what
every run checkpoints and stops early on; costs are minimized. Each cost is measured on the network the
trial kept (its best checkpoint) and logged as a metric of its run, under the objective's name, so
``promote`` can filter runs without the study. Empty ``sweep.objectives``: the single-objective sweep of
``sweep.metric``, unchanged.

Pruning: Optuna refuses ``trial.report`` in multi-objective studies (a pruner compares one number per
step), so multi-objective trials train without the pruning callback and the study uses no pruner.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from conf.schema.choices import Metric, SweepObjective
from lightning_app import latency
from lightning_app.objective import Objective

COSTS = (SweepObjective.latency_ms, SweepObjective.params)
FRONT_FILES = ("pareto_front.csv", "pareto_front.json")


@dataclass(frozen=True)
class SweepObjectives:
    """The study's objectives, in order: names, and the Optuna direction of each."""

    metric: Objective
    names: tuple[str, ...]

    @classmethod
    def of(cls, cfg: DictConfig) -> SweepObjectives:
        metric = Objective.of(cfg)
        names = tuple(str(name) for name in cfg.sweep.objectives) or (metric.metric,)
        return cls(metric, names)

    @property
    def multi(self) -> bool:
        return len(self.names) > 1

    @property
    def directions(self) -> list[str]:
        return [
            self.metric.optuna_direction if name == self.metric.metric else "minimize" for name in self.names
        ]

    @property
    def costs(self) -> list[str]:
        return [name for name in self.names if name in COSTS]

    def problems(self) -> list[str]:
        """What is wrong with ``sweep.objectives`` (an empty list when nothing is)."""
        if not self.multi and self.names == (self.metric.metric,):
            return []
        found = []
        duplicates = sorted({name for name in self.names if self.names.count(name) > 1})
        if duplicates:
            found.append(f"{', '.join(duplicates)} listed twice")
        if self.metric.metric not in self.names:
            found.append(
                f"must include sweep.metric={self.metric.metric}, the metric every trial checkpoints and "
                "stops early on (set sweep.metric to the metric you list)"
            )
        others = sorted({name for name in self.names if name in set(Metric) and name != self.metric.metric})
        if others:
            found.append(f"{', '.join(others)}: only one validation metric (sweep.metric) per study")
        if not self.costs:
            found.append(f"add a serving cost to compare against: one of {', '.join(COSTS)}")
        return found

    def values(self, metrics: dict[str, float]) -> list[float]:
        """The trial's objective values, in order, from its metrics and measured costs."""
        return [metrics[name] for name in self.names]


def measure_costs(names: list[str], checkpoint: str, image_size: int) -> dict[str, float]:
    """The named costs of the network saved in ``checkpoint`` (see ``lightning_app.latency``)."""
    network = latency.network_from_checkpoint(checkpoint)
    measured = {}
    if SweepObjective.params in names:
        measured[SweepObjective.params.value] = float(latency.parameter_count(network))
    if SweepObjective.latency_ms in names:
        measured[SweepObjective.latency_ms.value] = latency.cpu_latency_ms(network, image_size)
    return measured


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best trial by the first objective (the metric): for multi-objective studies, the most
    accurate trial, which is always on the Pareto front; None before any trial completes."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return None
    if len(study.directions) == 1:
        return study.best_trial
    pick = max if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(
        completed, key=lambda trial: (trial.values[0], -trial.number if pick is max else trial.number)
    )


def front_rows(study: optuna.Study) -> list[dict]:
    """One row per Pareto-optimal trial: number, MLflow run, each objective's value, the sampled params."""
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    rows = []
    for trial in sorted(study.best_trials, key=lambda t: t.number):
        row = {"trial": trial.number, "mlflow_run_id": trial.user_attrs.get("mlflow_run_id", "")}
        row.update(zip(names, trial.values, strict=True))
        row.update({f"params.{key}": value for key, value in trial.params.items()})
        rows.append(row)
    return rows


def write_front(study: optuna.Study, out_dir: Path) -> list[Path]:
    """The front as ``pareto_front.csv`` (spreadsheets, the MLflow viewer) and ``pareto_front.json``."""
    rows = front_rows(study)
    if not rows:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    table, document = (out_dir / name for name in FRONT_FILES)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    document.write_text(
        json.dumps({"study": study.study_name, "objectives": study.metric_names, "front": rows}, indent=2)
    )
    return [table, document]
