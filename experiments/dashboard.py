"""``dogbreeds dashboard``: optuna-dashboard on the study storage ``dogbreeds sweep`` writes to.

The same storage the sweep uses (``sweep.storage``, else ``optuna.db`` in the working directory, through
``build_storage``), so every study of this project is there, live while workers run. A missing SQLite
file is refused instead of created: an empty dashboard would only hide a wrong working directory.
"""

from __future__ import annotations

import signal
from pathlib import Path

from omegaconf import DictConfig

from experiments import sweep_tracking
from experiments.study_setup import SweepConfigError, build_storage, storage_url


def checked_storage(sweep: DictConfig):
    url = storage_url(sweep)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise SweepConfigError(
            f"no study storage at {url}: run dogbreeds sweep here first, or pass sweep.storage=<its URL>"
        )
    return build_storage(sweep)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt  # bottle's server loop ends on it, releases the port and returns


def serve_dashboard(sweep: DictConfig, host: str, port: int, echo=print) -> None:
    """Blocks until SIGINT (Ctrl-C) or SIGTERM. Both are set here: a process started in the background
    by a shell inherits SIGINT ignored, and SIGTERM would otherwise end it without a word."""
    from optuna_dashboard import run_server  # deferred: only this verb needs it

    storage = checked_storage(sweep)
    echo(f"optuna-dashboard on http://{host}:{port}/ (storage {sweep_tracking.public_storage_url(storage_url(sweep))}); "
         "Ctrl-C stops it")  # fmt: skip
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run_server(storage, host=host, port=port)  # returns when interrupted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    echo("dashboard stopped")
