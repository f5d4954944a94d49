"""One concise line per epoch, for output that is not a terminal (log files, CI, SageMaker job logs).

Lightning's progress bar redraws one line many times a second: in a terminal that is the right thing,
in a log it is thousands of carriage-return fragments, and with the bar off a trial printed nothing
until it ended. ``build_trainer`` picks the bar for a terminal and this callback otherwise.
"""

from __future__ import annotations

import logging
import time

from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


def epoch_line(epoch: int, max_epochs: int, metrics: dict[str, float], elapsed_s: float) -> str:
    """``epoch 2/4  train_loss 0.4820  train_acc 0.8281  val_loss 1.2649  val_acc 0.6250  (12.3 s)``."""
    shown = [f"{name} {value:.4f}" for name, value in sorted(metrics.items(), key=_train_then_val)]
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    return f"epoch {epoch}{total}  " + "  ".join(shown) + f"  ({elapsed_s:.1f} s)"


def _train_then_val(item: tuple[str, float]) -> tuple[bool, str]:
    return (not item[0].startswith("train"), item[0])


class EpochLines(Callback):
    """Logs ``epoch_line`` at the end of every training epoch (after its validation), from rank 0."""

    def __init__(self):
        self.started = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if value.numel() == 1 and not name.endswith("_step")
        }
        elapsed = time.monotonic() - self.started
        log.info(epoch_line(trainer.current_epoch + 1, trainer.max_epochs, metrics, elapsed))
