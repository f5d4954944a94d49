"""The multi-GPU code path, exercised as DDP over 2 CPU processes (gloo) through the real CLI."""

from __future__ import annotations

import pytest
import torch
from helpers.servers import run_cli
from helpers.training import TINY_RUN, run_overrides
from mlflow import MlflowClient

from conf.loader import load_config
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.module import BreedClassifier

pytestmark = pytest.mark.slow

DDP = [
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.strategy=ddp",
    "data.batch_size=16",  # global: 8 per rank
    "experiment_name=ddp",
]


@pytest.fixture(scope="module")
def ddp_run(sample_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    overrides = run_overrides(TINY_RUN, sample_root, work, *DDP)
    proc = run_cli("train", *overrides, cwd=work, timeout=400)
    return work, MlflowClient(load_config(overrides).tracking_uri), overrides, proc


def test_one_run_and_one_best_checkpoint(ddp_run):
    work, client, _, proc = ddp_run
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "Starting with 2 processes" in proc.stderr + proc.stdout
    (run,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.devices"] == "2" and run.data.params["trainer.strategy"] == "ddp"
    # Rank 1 wrote nothing of its own: one run folder, one checkpoint artifact (the kept best: the
    # run folder's copy is dropped once logged to this SQLite store's local artifacts).
    (run_dir,) = (work / "outputs").iterdir()
    assert run_dir.name == run.info.run_id
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["run.json"]
    assert len(client.list_artifacts(run.info.run_id, "checkpoints")) == 1
    assert f"run {run.info.run_id}: best checkpoint" in proc.stdout
    assert proc.stdout.count("best checkpoint") == 1  # only rank 0 reports


def test_validation_metrics_are_synchronised_across_ranks(ddp_run):
    """The logged val loss/accuracy are over the whole validation set, not rank 0's half of it."""
    work, client, overrides, _ = ddp_run
    (run,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    (checkpoint,) = (work / "mlruns").glob(f"{run.info.run_id}/artifacts/checkpoints/best-*.ckpt")
    model = BreedClassifier.load_from_checkpoint(
        checkpoint, map_location="cpu", weights_only=False
    ).model.eval()
    datamodule = DogBreedsDataModule(load_config(overrides).data)
    datamodule.setup("validate")
    with torch.inference_mode():
        batches = [(model(images), labels) for images, labels in datamodule.val_dataloader()]
    logits = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    correct = (logits.argmax(1) == labels).float()
    assert len(labels) == 16

    (logged_loss,) = client.get_metric_history(run.info.run_id, "val_loss")
    (logged_acc,) = client.get_metric_history(run.info.run_id, "val_acc")
    assert logged_loss.value == pytest.approx(losses.mean().item(), abs=1e-4)
    assert logged_acc.value == pytest.approx(correct.mean().item())
    # DistributedSampler gives rank 0 every other sample; an unsynchronised metric would be this one.
    assert abs(losses[0::2].mean().item() - losses.mean().item()) > 1e-3
