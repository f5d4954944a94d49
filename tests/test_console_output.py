"""What a user sees on the console: one log format, progress per epoch, no library noise."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time

import optuna
import pytest
from helpers.servers import run_cli
from helpers.training import TINY_RUN, run_overrides
from lightning.pytorch.callbacks import Callback
from mlflow import MlflowClient

from conf.loader import load_config
from deploy.packaging.builder import download_run_checkpoint
from lightning_app import tracking
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.epoch_lines import EpochLines, epoch_line
from lightning_app.library_noise import silence_library_noise
from lightning_app.objective import Objective
from lightning_app.train import build_module
from lightning_app.trainer import build_trainer

NOISE = (
    "litlogger",
    "limit_train_batches",
    "limit_val_batches",
    "exists and is not empty",
    "LeafSpec",
    "on_after_batch_transfer",
    "has no artifacts at artifact path",
    "[I 20",  # Optuna's own format
)
ONE_FORMAT = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def quiet_run(cwd, verb: str, *overrides: str) -> tuple[list[str], str]:
    """Run ``dogbreeds VERB`` as a user would: its stderr lines, checked for noise and a second format,
    and its stdout."""
    result = run_cli(verb, *overrides, cwd=cwd, timeout=300)
    lines = result.stderr.splitlines()
    assert [line for line in lines if any(noise in line for noise in NOISE)] == []
    assert [line for line in lines if not ONE_FORMAT.match(line)] == []
    return lines, result.stdout


@pytest.mark.slow
def test_demo_training_prints_one_line_per_epoch_in_one_format_and_no_noise(sample_root, tmp_path):
    lines, _ = quiet_run(
        tmp_path, "train", *run_overrides(TINY_RUN, sample_root, tmp_path, "trainer.max_epochs=2")
    )
    epochs = [line for line in lines if "lightning_app.epoch_lines: epoch " in line]
    assert [line.split("epoch ")[1].split()[0] for line in epochs] == ["1/2", "2/2"]
    assert all("train_loss" in line and "val_acc" in line for line in epochs)


@pytest.mark.slow
def test_a_sweep_keeps_one_format_from_trial_to_trial(sample_root, tmp_path):
    """Once a trial has logged its model, mlflow.pytorch has imported ``pytorch_lightning``, whose loggers
    took over Lightning's messages in a format of their own, litlogger tip included."""
    overrides = run_overrides(TINY_RUN, sample_root, tmp_path, "sweep=demo", "sweep.n_trials=2")
    lines, out = quiet_run(tmp_path, "sweep", *overrides, f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}")
    assert not [line for line in lines if "optuna" in line]  # its trial lines repeat ours
    assert len(re.findall(r"^trial \d (complete, \d\.\d{4}|pruned after \d epoch)", out, re.MULTILINE)) == 2
    assert sum("from scratch (model.weights=null)" in line for line in lines) == 1  # not once per trial


def test_terminal_gets_the_bar_and_anything_else_epoch_lines(make_cfg, tmp_path):
    cfg = make_cfg()
    objective = Objective.of(cfg)
    bar = build_trainer(cfg.trainer, objective, tmp_path, False, interactive=True)
    assert bar.progress_bar_callback is not None
    assert not any(isinstance(c, EpochLines) for c in bar.callbacks)
    lines = build_trainer(cfg.trainer, objective, tmp_path, False, interactive=False)
    assert lines.progress_bar_callback is None
    assert any(isinstance(c, EpochLines) for c in lines.callbacks)
    quiet = load_config(["trainer=demo", "trainer.enable_progress_bar=false"])
    silent = build_trainer(quiet.trainer, objective, tmp_path, False, interactive=False)
    assert silent.progress_bar_callback is None
    assert not any(isinstance(c, EpochLines) for c in silent.callbacks)


class PruneAtSecondEpoch(Callback):
    def on_validation_end(self, trainer, pl_module):
        if trainer.current_epoch == 1 and not trainer.sanity_checking:
            raise optuna.TrialPruned("pruned at epoch 1")


def test_an_epoch_pruned_after_validation_still_gets_its_line(make_cfg, tmp_path, caplog):
    cfg = make_cfg("trainer.max_epochs=3")
    datamodule = DogBreedsDataModule(cfg.data)
    trainer = build_trainer(cfg.trainer, Objective.of(cfg), tmp_path, False, [PruneAtSecondEpoch()], False)
    with caplog.at_level(logging.INFO, "lightning_app.epoch_lines"), pytest.raises(optuna.TrialPruned):
        trainer.fit(build_module(cfg, datamodule), datamodule=datamodule)
    lines = [r.getMessage() for r in caplog.records if r.name == "lightning_app.epoch_lines"]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3"]
    assert "train_loss" in lines[0] and "val_acc" in lines[0]
    assert "train_loss" not in lines[1] and "val_acc" in lines[1]  # train metrics: not reduced yet
    assert lines[1].endswith("stopped by TrialPruned")


def test_epoch_line_reads_train_then_val():
    line = epoch_line(2, 4, {"val_acc": 0.625, "train_loss": 0.48201, "val_loss": 1.2649}, 12.34)
    assert line == "epoch 2/4  train_loss 0.4820  val_acc 0.6250  val_loss 1.2649  (12.3 s)"


def test_only_the_named_library_messages_are_dropped(caplog):
    silence_library_noise()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    registry = logging.getLogger("mlflow.tracking._model_registry.fluent")
    with caplog.at_level(logging.INFO):
        rank_zero.info("💡 Tip: For seamless cloud logging, try installing [litlogger](https://pypi.org/)")
        rank_zero.info("GPU available: True (cuda), used: False")
        registry.warning(
            "Run with id 0123abc has no artifacts at artifact path 'model', "
            "registering model based on models:/m-42 instead"
        )
        registry.warning("Run with id 0123abc is deleted")
    assert [r.getMessage() for r in caplog.records] == [
        "GPU available: True (cuda), used: False",
        "Run with id 0123abc is deleted",
    ]
    silence_library_noise()  # idempotent: still one filter per logger
    assert len(rank_zero.filters) == len(registry.filters) == 1


def test_a_fresh_store_and_system_metrics_log_nothing(caplog, tmp_path):
    """A new SQLite store announces its schema set-up, the system-metrics monitor its start and stop."""
    silence_library_noise()
    with caplog.at_level(logging.INFO):
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        run_id = client.create_run(tracking.ensure_experiment(client, "quiet")).info.run_id
        with tracking.system_metrics(run_id, client.tracking_uri, enabled=True, interval=0.1):
            time.sleep(0.5)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("mlflow")] == []
    assert any(key.startswith("system/") for key in client.get_run(run_id).data.metrics)  # it did run


def test_artifact_downloads_draw_no_progress_bar(capfd, tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(tracking.ensure_experiment(client, "quiet")).info.run_id
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"weights")
    client.log_artifact(run_id, str(checkpoint), tracking.CHECKPOINT_ARTIFACT)
    capfd.readouterr()
    downloaded, _ = download_run_checkpoint(run_id, client.tracking_uri, tmp_path / "download")
    assert downloaded.read_bytes() == b"weights"
    assert "Downloading artifacts" not in capfd.readouterr().err
    assert tracking.PROGRESS_BAR_ENV not in os.environ  # put back as it was


def test_log_to_stderr_takes_mlflow_back_to_warning_when_it_was_imported_first():
    """``make demo`` imports MLflow before setting up logs: MLflow then sets itself to INFO."""
    probe = (
        "import logging, mlflow; from dogbreeds import logs; before = logging.getLogger('mlflow').level; "
        "logs.log_to_stderr(); print(before, logging.getLogger('mlflow').getEffectiveLevel())"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_CONFIGURE_LOGGING"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == [str(logging.INFO), str(logging.WARNING)]
