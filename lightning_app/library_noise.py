"""Library messages that tell a user of this project nothing, silenced one by one at their source.

Each entry names the exact logger or the exact warning text, so every other message of the same
library still gets through (a new Lightning warning about our code shows up as before). Called by
``train`` (every entry point trains through it: CLI, sweep trials, DDP ranks, SageMaker jobs) and by
the CLI's logging setup; idempotent.

Fixed where they arise instead: ``limit_*_batches`` lines (the trainer factory passes no limit when
it is 100%), "Checkpoint directory ... exists and is not empty" on fresh runs (``run.json`` is written
once fitting has started, see ``resume.RunStateWriter``).
"""

from __future__ import annotations

import logging
import re
import warnings

# Logger name -> pattern of the messages dropped from it (matched at the message's start).
# The LitLogger tip, printed on every fit without a LitLogger (Lightning has no switch for it), and the
# TPU/HPU lines of every Trainer: never true here. The GPU line stays: "available: True, used: False" matters.
# Fitting's end at max_epochs (the epoch lines count to it) and the two checkpoint-path lines of testing the
# best checkpoint after every fit (a resume says its own "resuming MLflow run ... from ...").
RANK_ZERO_NOISE = re.compile(
    r"💡 Tip: For seamless cloud logging|(TPU|HPU) available: |`Trainer.fit` stopped: `max_epochs=\d+` reached"
    r"|Restoring states from the checkpoint path at |Loaded model weights from the checkpoint at "
)
SEED_SET = re.compile(r"(\[rank: \d+\] )?Seed set to \d+")  # the seed is a logged param of every run
DROPPED_LOG_MESSAGES = {
    # Two logger names each: once ``mlflow.pytorch`` has imported the ``pytorch_lightning`` twin package,
    # Lightning's messages come from that package's loggers (the shared modules are rebound on import).
    "lightning.pytorch.utilities.rank_zero": RANK_ZERO_NOISE,
    "pytorch_lightning.utilities.rank_zero": RANK_ZERO_NOISE,
    "lightning.fabric.utilities.seed": SEED_SET,
    "lightning_fabric.utilities.seed": SEED_SET,
    # Logging the run's image model: our own PythonModel class is what gets cloudpickled (the caution is
    # about loading pickles from elsewhere), and the input example check is routine.
    "mlflow.pyfunc": re.compile(
        r"Passing a Python object as `python_model` causes it to be serialized|Validating input example"
    ),
    # ``register_model("runs:/ID/model")``: MLflow 3 keeps logged models outside run artifacts and says
    # so on every registration, although it then registers that very model.
    "mlflow.tracking._model_registry.fluent": re.compile(
        r"Run with id \w+ has no artifacts at artifact path '[^']*', registering model based on models:/"
    ),
    # Optuna's line per finished trial and its new-study line: the sweep prints its own (``experiments.
    # progress.trial_line``: the value, the params, the epochs a pruned trial ran, then the study's progress).
    "optuna.study.study": re.compile(r"Trial \d+ finished with values?: "),
    "optuna.study._optimize": re.compile(r"Trial \d+ pruned\. "),
    "optuna.storages._rdb.storage": re.compile(r"A new study created in RDB with name: "),
    # A fresh SQLite store's schema set-up, at every first use of a new mlflow.db (tests, demo, notebooks).
    "mlflow.store.db.utils": re.compile(r"Creating initial MLflow database tables|Updating database tables"),
    # The monitor's start and stop around every standalone run; the system/* metrics are the news.
    "mlflow.system_metrics.system_metrics_monitor": re.compile(
        r"Started monitoring system metrics|Skip logging GPU metrics|Stopping system metrics monitoring"
        r"|Successfully terminated system metrics monitoring"
    ),
}
IGNORED_WARNINGS = (
    # Lightning 2.6's own pytree copy still calls torch's deprecated LeafSpec; nothing for us to change.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # By design: the module decodes (data.decode_device) and normalizes batches around the transfer, on its
    # own device and in its own train/eval mode, whatever the datamodule.
    r"You have overridden `on_(before|after)_batch_transfer` in `LightningModule` but have passed in a",
)
FILTER_NAME = "dogbreeds-library-noise"


class _DropMessages(logging.Filter):
    def __init__(self, pattern: re.Pattern):
        super().__init__(name=FILTER_NAME)
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def silence_library_noise() -> None:
    for logger_name, pattern in DROPPED_LOG_MESSAGES.items():
        logger = logging.getLogger(logger_name)
        if not any(f.name == FILTER_NAME for f in logger.filters):
            logger.addFilter(_DropMessages(pattern))
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
