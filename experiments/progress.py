"""What a researcher watches during a sweep: counts by state, the best value and params so far, and
at the end one row per trial. Everything is read from the study storage, so the same view works for
one in-process worker, N local workers, or workers spread over machines.
"""

from __future__ import annotations

import time
from collections import Counter

import optuna
from optuna.exceptions import StorageInternalError
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from experiments.objectives import best_trial

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def counts(study: optuna.Study) -> Counter:
    return Counter(trial.state.name for trial in study.get_trials(deepcopy=False))


def progress_line(study: optuna.Study, n_trials: int | None) -> str:
    by_state = counts(study)
    finished = by_state["COMPLETE"] + by_state["PRUNED"]
    target = f"/{n_trials}" if n_trials else ""
    parts = [f"{finished}{target} done"] + [f"{by_state[s]} {s.lower()}" for s in STATES if by_state[s]]
    best = best_trial(study)
    if best is not None:
        parts.append(f"best {_values(best)} (trial {best.number}: {_params(best)})")
    return f"[{study.study_name}] " + ", ".join(parts)


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    """What one finished trial did: its value and params, or how many epochs it ran before it was pruned."""
    if trial.state == TrialState.COMPLETE:
        outcome = f"complete, {_values(trial)}"
    elif trial.state == TrialState.PRUNED:
        outcome = f"pruned after {len(trial.intermediate_values)} epoch(s)"
    else:
        outcome = trial.state.name.lower()
    return f"trial {trial.number} {outcome} ({_params(trial)})"


def progress_table(study: optuna.Study, n_trials: int | None) -> Table:
    by_state = counts(study)
    table = Table(title=f"sweep {study.study_name}", show_header=True)
    for column in ("done", *(s.lower() for s in STATES), "best value", "best params"):
        table.add_column(column)
    best = best_trial(study)
    done = by_state["COMPLETE"] + by_state["PRUNED"]
    table.add_row(
        f"{done}/{n_trials}" if n_trials else str(done),
        *(str(by_state[s]) for s in STATES),
        _values(best) if best else "-",
        _params(best) if best else "-",
    )
    return table


def summary_table(study: optuna.Study) -> Table:
    table = Table(title=f"study {study.study_name}: {len(study.trials)} trials")
    for column in ("#", "state", "value", "epochs", "seconds", "params", "note"):
        table.add_column(column)
    best = best_trial(study)
    for trial in study.get_trials(deepcopy=False):
        seconds = (
            f"{(trial.datetime_complete - trial.datetime_start).total_seconds():.0f}"
            if trial.datetime_complete and trial.datetime_start
            else "-"
        )
        note = "best" if best is not None and trial.number == best.number else ""
        if trial.state == TrialState.FAIL:
            note = trial.user_attrs.get("fail_reason", "")[-80:]
        table.add_row(
            str(trial.number),
            trial.state.name,
            _values(trial),
            str(len(trial.intermediate_values) or trial.user_attrs.get("epochs", "-")),
            seconds,
            _params(trial),
            note,
        )
    return table


def watch(study: optuna.Study, n_trials: int | None, still_running, console: Console, every_s: float = 2.0):
    """Redraw the progress table until ``still_running()`` is false (local workers train meanwhile)."""
    with Live(progress_table(study, n_trials), console=console, refresh_per_second=1) as live:
        while still_running():
            time.sleep(every_s)
            _refresh(live, study, n_trials)
        _refresh(live, study, n_trials)


def _refresh(live: Live, study: optuna.Study, n_trials: int | None) -> None:
    """A storage outage longer than the retry window skips a redraw; it never stops the workers."""
    try:
        live.update(progress_table(study, n_trials))
    except (StorageInternalError, SQLAlchemyError) as err:
        live.console.log(f"progress not refreshed: the study storage is unreachable ({type(err).__name__})")


def _params(trial: optuna.trial.FrozenTrial) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())


def _values(trial: optuna.trial.FrozenTrial) -> str:
    """``0.9123``, or ``0.9123 / 4.21`` for the objectives of a multi-objective study."""
    return (
        " / ".join(f"{value:.4g}" if abs(value) >= 1e4 else f"{value:.4f}" for value in trial.values or [])
        or "-"
    )
