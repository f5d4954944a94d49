"""A sweep's report as files that open offline: one self-contained HTML page and one PNG per plot.

Why not MLflow's ``log_figure``: it writes plotly figures with ``include_plotlyjs="cdn"``, so the page is
blank without internet (an air-gapped cluster, a laptop on a plane). Here the page carries plotly.js
inline, once for all figures (about 4 MB, instead of once per plot), and every plot also exists as a
static PNG drawn by Optuna's matplotlib backend, which MLflow's artifact viewer shows as an image.

Plots, each only when the study has what it needs:

- ``optimization_history``: objective per trial and the best so far (one completed trial);
- ``learning_curves``: every trial's per-epoch objective overlaid (the values the pruning callback
  reported), pruned trials included: that is where a pruner's decisions show;
- ``parallel_coordinate``: objective against the sampled values (two completed trials); parameters
  sampled on a log scale get log axes (Optuna reads the trials' distributions);
- ``param_importances``: only with two or more searched parameters and three completed trials, since
  one parameter always gets importance 1.0 and fewer trials say nothing.

- ``pareto_front`` (multi-objective studies, ``sweep.objectives``): every completed trial against the
  objectives, the Pareto-optimal ones highlighted.

The objective is named after the sweep's metric (``target_name``) instead of "Objective Value"; in a
multi-objective study the other plots show the metric (the first objective).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)

REPORT_PAGE = "sweep_report.html"
MIN_TRIALS_FOR_IMPORTANCES = 3


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    interactive: Callable  # study -> plotly Figure
    static: Callable  # study -> matplotlib Axes


def plots_for(study: optuna.Study, metric: str) -> list[Plot]:
    """The plots this study can fill, in reading order."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with_curves = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    searched = {name for trial in completed for name in trial.params}
    named = {"target_name": metric}
    plots = []
    if len(study.directions) > 1:
        named["target"] = lambda trial: trial.values[0]
        if completed:
            title = " against ".join(study.metric_names or ()) + ": Pareto front"
            plots.append(_plot("pareto_front", title, target_names=study.metric_names))
    if completed:
        plots.append(_plot("optimization_history", f"{metric} per trial", **named))
    if with_curves:
        # Optuna names the function after the values, ours after what they are (axes set in write_report).
        title = f"{metric} per epoch, all trials"
        plots.append(_plot("learning_curves", title, function="intermediate_values"))
    if len(completed) >= 2 and searched:
        plots.append(_plot("parallel_coordinate", f"{metric} against the sampled values", **named))
    if len(completed) >= MIN_TRIALS_FOR_IMPORTANCES and len(searched) >= 2:
        plots.append(_plot("param_importances", f"parameter importances for {metric}", **named))
    return plots


def _plot(name: str, title: str, function: str | None = None, **kwargs) -> Plot:
    """Optuna's ``plot_<function>`` (default: ``name``) in both backends, which share names and arguments."""
    from optuna import visualization as plotly_plots
    from optuna.visualization import matplotlib as static_plots

    function = f"plot_{function or name}"
    return Plot(
        name,
        title,
        lambda study: getattr(plotly_plots, function)(study, **kwargs),
        lambda study: getattr(static_plots, function)(study, **kwargs),
    )


def write_report(study: optuna.Study, metric: str, out_dir: Path) -> list[Path]:
    """Write ``sweep_report.html`` and ``<plot>.png`` files into ``out_dir``; returns the files written.

    A plot Optuna refuses for this study's values (e.g. importances when no parameter varied) is left
    out with a warning instead of failing the sweep, whose trials are done by now.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir.mkdir(parents=True, exist_ok=True)
    sections, written = [], []
    for plot in plots_for(study, metric):
        try:
            with warnings.catch_warnings():  # Optuna labels its matplotlib backend experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # A parameter with one value among completed trials: matplotlib widens its axis itself.
                warnings.filterwarnings("ignore", message="Attempting to set identical low and high ylims")
                figure = plot.interactive(study)
                axes = plot.static(study)
        except (ValueError, RuntimeError) as err:
            log.warning("sweep report: skipped the %s plot: %s", plot.name, err)
            continue
        static_figure = _figure_of(axes)
        static_figure.axes[0].set_title(plot.title)
        if plot.name == "learning_curves":  # Optuna labels them "Step" and "Intermediate Value"
            static_figure.axes[0].set(xlabel="epoch", ylabel=metric)
            static_figure.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 0.5
            figure.update_layout(xaxis_title="epoch", yaxis_title=metric)
        png = out_dir / f"{plot.name}.png"
        static_figure.savefig(png, dpi=100, bbox_inches="tight")
        plt.close(static_figure)
        written.append(png)
        figure.update_layout(title=plot.title)
        sections.append(figure.to_html(full_html=False, include_plotlyjs=not sections))
    if sections:
        page = out_dir / REPORT_PAGE
        page.write_text(_page(study.study_name, sections), encoding="utf-8")
        written.insert(0, page)
    return written


def _figure_of(axes):
    """Optuna's matplotlib plots return one Axes or an array of them; all share one Figure."""
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure


def _page(study_name: str, sections: list[str]) -> str:
    body = "\n".join(f"<section>{section}</section>" for section in sections)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>sweep {study_name}</title></head>\n<body><h1>sweep {study_name}</h1>\n{body}\n</body></html>\n"
    )
