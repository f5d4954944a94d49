"""Build a Lightning Trainer from the ``trainer`` config section.

The same factory serves a laptop CPU run, one GPU, DDP over every GPU of a machine, and multi-node
DDP under torchrun/SageMaker (Lightning reads world size and ranks from that environment).
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from conf.loader import ConfigError
from lightning_app.epoch_lines import EpochLines
from lightning_app.objective import Objective
from lightning_app.resume import LAST_CHECKPOINT
from lightning_app.rng_state import RNGStateCheckpoint


def check_hardware(cfg) -> None:
    """A GPU choice on a machine without one fails here, before any MLflow run exists, saying what to use.

    Lightning would refuse it too, but only when the Trainer is built: after the run was created, which
    then stays RUNNING and empty, and with a traceback instead of the fix.
    """
    if str(cfg.accelerator) not in ("gpu", "cuda"):
        return
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wanted = cfg.devices if isinstance(cfg.devices, int) and cfg.devices > 0 else 1
    if available < wanted:
        raise ConfigError(
            f"trainer.accelerator={cfg.accelerator} with trainer.devices={cfg.devices}, but this machine has "
            f"{available} CUDA GPU(s): use trainer.accelerator=cpu (or trainer=default), or for DDP over CPU "
            "processes trainer.accelerator=cpu trainer.devices=2 trainer.strategy=ddp"
        )


def resolve_precision(precision: str) -> str:
    """``auto``: bf16-mixed on GPUs with bf16 support (Ampere+), full precision elsewhere."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


class ResumeCheckpoint(ModelCheckpoint):
    """``last.ckpt``, written at every epoch end except the one that ends fitting (``max_epochs`` reached,
    or early stopping, which Lightning runs before checkpoint callbacks). From there the run is seconds
    from finishing, and a finished run deletes the file (``resume.mark_finished``): in a short sweep trial
    that write (weights and Adam's moments, three times the best file) was the largest bookkeeping cost
    (benchmarks/run_overhead.py). An interruption in those seconds resumes from the epoch before."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not _fitting_ends(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not _fitting_ends(trainer):
            super().on_validation_end(trainer, pl_module)


def _fitting_ends(trainer: L.Trainer) -> bool:
    return trainer.should_stop or (
        trainer.max_epochs is not None
        and trainer.max_epochs >= 0
        and trainer.current_epoch + 1 >= trainer.max_epochs
    )


def checkpoint_callbacks(checkpoint_dir: Path, objective: Objective) -> list[ModelCheckpoint]:
    """The best epoch by the objective, weights only (what gets tested and logged to MLflow), and
    ``last.ckpt`` with everything ``resume=true`` continues from (optimizer, schedulers, loops, callbacks).

    Two callbacks, because Lightning's ``save_weights_only`` applies to every file of one callback: the
    best file without Adam's moments is a third of the size and of the write time. The best one comes
    first: it is ``trainer.checkpoint_callback``.
    """
    metric = objective.metric
    best = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename=f"best-epoch{{epoch:02d}}-{metric}{{{metric}:.4f}}",
        auto_insert_metric_name=False,
        monitor=metric,
        mode=objective.lightning_mode,
        save_top_k=1,
        save_weights_only=True,
    )
    # No monitor, top 1: rewritten at each epoch end but the last (save_last alone would wait for a top-k save).
    last = ResumeCheckpoint(
        dirpath=checkpoint_dir,
        filename=Path(LAST_CHECKPOINT).stem,
        save_top_k=1,
        enable_version_counter=False,
    )
    return [best, last]


def build_trainer(
    cfg,
    objective: Objective,
    checkpoint_dir: Path,
    logger,
    extra_callbacks: list[Callback] = (),
    interactive: bool | None = None,
) -> L.Trainer:
    """``cfg`` is the ``trainer`` config section; checkpointing and early stopping follow ``objective``.

    Progress (``cfg.enable_progress_bar``): Lightning's bar when ``interactive`` (default: stderr is a
    terminal), one line per epoch otherwise (``EpochLines``).
    """
    if interactive is None:
        interactive = sys.stderr.isatty()
    show_bar = cfg.enable_progress_bar and interactive
    callbacks: list[Callback] = [
        *checkpoint_callbacks(checkpoint_dir, objective),
        RNGStateCheckpoint(),
        *extra_callbacks,
    ]
    if cfg.enable_progress_bar and not interactive:
        callbacks.append(EpochLines())
    if cfg.early_stopping_patience:
        callbacks.append(
            EarlyStopping(
                monitor=objective.metric, mode=objective.lightning_mode, patience=cfg.early_stopping_patience
            )
        )
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=resolve_precision(cfg.precision),
        max_epochs=cfg.max_epochs,
        deterministic=cfg.deterministic,
        log_every_n_steps=cfg.log_every_n_steps,
        limit_train_batches=_limit(cfg.limit_train_batches),
        limit_val_batches=_limit(cfg.limit_val_batches),
        gradient_clip_val=cfg.gradient_clip_val,
        enable_progress_bar=show_bar,
        enable_model_summary=False,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=str(checkpoint_dir.parent),
    )


def _limit(fraction: float) -> float | None:
    """All batches is Lightning's default: passing 1.0 explicitly makes it print a line saying so."""
    return None if fraction == 1.0 else fraction


def leave_process_group() -> None:
    """Under DDP: wait for every rank, then tear down the process group, before this process exits.

    Lightning creates the ``torch.distributed`` group and leaves it to interpreter exit. A rank that ends
    first (rank 0 is still logging the model) then destroys gloo's threads at exit and can abort
    ("terminate called without an active exception", exit -6), which makes torchrun kill the whole job.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
