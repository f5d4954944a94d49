"""The CLI's logging: one handler, one format, for our packages and every library underneath.

Left alone, each library brings its own: Lightning a bare handler on ``lightning.pytorch`` when it is
imported before anything else logs, MLflow a timestamped one on ``mlflow``, Optuna ``[I date]`` lines on
``optuna``; which of them a line got depended on import order, so a sweep changed format from its second
trial on. Here they all propagate to one root handler: our packages at INFO, libraries at their own
level (Lightning and Optuna say INFO, MLflow inherits WARNING from the root, hiding its table-creation
chatter). Library messages that say nothing to our users are dropped in ``lightning_app.library_noise``.
"""

from __future__ import annotations

import logging
import os
import sys

from lightning_app.library_noise import silence_library_noise

HANDLER_NAME = "dogbreeds-cli"
FORMAT = "%(levelname)s %(name)s: %(message)s"
OUR_PACKAGES = ("dogbreeds", "lightning_app", "experiments", "deploy")
# ``pytorch_lightning``/``lightning_fabric``: the standalone twins, which mlflow.pytorch imports.
LIBRARIES_WITH_OWN_HANDLERS = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "pytorch_lightning",
    "lightning_fabric",
    "mlflow",
)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not to the one of the first call: a
    test's captured stderr is closed after it, a notebook redirects it."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _ignored) -> None:
        pass


def log_to_stderr(verbosity: int = 0) -> None:
    """Route every log line through one stderr handler. Replaces the handler of an earlier call rather
    than adding one more, so calling ``main`` repeatedly in one process (tests, notebooks) does not
    duplicate lines.

    ``verbosity`` is the CLI's ``-q`` (-1: warnings and errors only, from every logger, whatever level a
    library sets on its own, hence on the handler) or ``-v`` (1: our packages' DEBUG lines too)."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # read when mlflow is first imported
    handler = _CurrentStderr()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.WARNING if verbosity < 0 else logging.NOTSET)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # Imported before this call (the demo, a benchmark), MLflow set itself to INFO beside its own handler.
    logging.getLogger("mlflow").setLevel(logging.NOTSET)
    for package in OUR_PACKAGES:
        logging.getLogger(package).setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    _drop_library_handlers()  # of libraries imported already (a test process, a notebook)
    silence_library_noise()


def route_training_logs() -> None:
    """For ``train`` and ``sweep``: Lightning installs handlers when imported and Optuna on first use, so
    import them and take those out. Not in ``log_to_stderr``, which every verb runs: importing Lightning
    (and torch) takes seconds, ``dogbreeds --help`` none."""
    import lightning  # noqa: F401
    import optuna
    import pytorch_lightning  # noqa: F401  mlflow.pytorch imports it when logging the first model

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    _drop_library_handlers()


def _drop_library_handlers() -> None:
    for library in LIBRARIES_WITH_OWN_HANDLERS:
        logger = logging.getLogger(library)
        for own in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(own)
        logger.propagate = True
