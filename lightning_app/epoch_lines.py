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
    """Logs ``epoch_line`` at the end of every training epoch (after its validation), from rank 0.

    An epoch stopped after its validation (Optuna's pruning callback raises in ``on_validation_end``) never
    reaches the end of its training epoch: ``on_exception`` logs its validation metrics and what stopped it.
    """

    def __init__(self):
        self.started = 0.0
        self.validated_epoch = self.shown_epoch = -1

    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = time.monotonic()
        self.validated_epoch = self.shown_epoch = -1

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        self.shown_epoch = trainer.current_epoch
        log.info(self._line(trainer, _metrics(trainer)))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if trainer.is_global_zero and self.validated_epoch == trainer.current_epoch != self.shown_epoch:
            # The epoch's train metrics are reduced only at its end: the ones present are the last epoch's.
            metrics = {name: value for name, value in _metrics(trainer).items() if name.startswith("val")}
            log.info(f"{self._line(trainer, metrics)}, stopped by {type(exception).__name__}")

    def _line(self, trainer, metrics: dict[str, float]) -> str:
        elapsed = time.monotonic() - self.started
        return epoch_line(trainer.current_epoch + 1, trainer.max_epochs, metrics, elapsed)


def _metrics(trainer) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in trainer.callback_metrics.items()
        if value.numel() == 1 and not name.endswith("_step")
    }
