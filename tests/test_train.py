"""``train(cfg)`` end to end on generated data: it learns, and the run records what it should.

One real training run (module scope) serves every test here: 4 classes x 32 images, 48 px, resnet18 from
scratch, 4 epochs on CPU, one corrupt image in train/ (the default skip policy), tracked in SQLite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.training import FAST_OVERRIDES, run_overrides
from mlflow import MlflowClient

from conf.loader import load_config
from conf.schema.choices import FinetunePolicy, Optimizer
from conf.schema.training import ModelConfig
from lightning_app import layout
from lightning_app.backbone import build_backbone
from lightning_app.module import BreedClassifier
from lightning_app.objective import Objective
from lightning_app.sample_data import generate
from lightning_app.train import train
from lightning_app.trainer import build_trainer

CLASSES = ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"]
EPOCHS = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("learnable")
    # 32 per class: 8 validation images per class make "clearly above chance" a robust statement.
    generate(root, num_classes=4, train_per_class=32, seed=0)
    (root / "train" / "003.Airedale_terrier" / "download_failed.jpg").write_bytes(b"<html>404</html>")
    work = tmp_path_factory.mktemp("learnable-run")
    cfg = load_config(
        run_overrides(FAST_OVERRIDES, root, work, f"trainer.max_epochs={EPOCHS}", "experiment_name=learns")
    )
    result = train(cfg)
    return result, MlflowClient(cfg.tracking_uri), root


def test_training_learns(run):
    result, client, _ = run
    chance = 1 / len(CLASSES)
    assert result.epochs == EPOCHS
    assert result.metrics["val_acc"] >= chance + 0.35, result.metrics
    assert result.metrics["test_acc"] >= chance + 0.25, result.metrics
    losses = [m.value for m in client.get_metric_history(result.run_id, "train_loss")]
    assert len(losses) == EPOCHS and losses[-1] < 0.8 * losses[0]


def test_one_run_with_config_metrics_and_provenance(run):
    result, client, root = run
    experiment = client.get_experiment_by_name("learns")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [result.run_id]
    recorded = runs[0]
    assert recorded.info.status == "FINISHED"
    params = recorded.data.params
    assert params["model.arch"] == "resnet18"
    assert params["data.image_size"] == "48"
    assert params["model.finetune.policy"] == "full"
    assert params["data.root"] == str(root)
    metrics = recorded.data.metrics
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"):
        assert name in metrics, name
    assert len(client.get_metric_history(result.run_id, "val_acc")) == EPOCHS
    # The corrupt file was skipped (data.corrupt_images=skip), counted, and logged.
    assert metrics["skipped_images"] == 1
    tags = recorded.data.tags
    assert tags["dataset_fingerprint"] == layout.fingerprint(root)
    assert tags["dataset_root"] == str(root)
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "unknown"
    assert tags["host"] and tags["device"].startswith("cpu")


def test_best_checkpoint_carries_classes_and_preprocessing(run):
    result, client, _ = run
    best = [p for p in Path(result.best_checkpoint).parent.glob("*.ckpt") if p.name.startswith("best-")]
    assert [str(p) for p in best] == [result.best_checkpoint]
    checkpoint = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)
    assert checkpoint["dogbreeds"] == {
        "arch": "resnet18",
        "class_names": CLASSES,
        "preprocessing": {
            "image_size": 48,
            "resize": 55,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "interpolation": "bilinear",
        },
        "head": "fc",
    }
    artifacts = [a.path for a in client.list_artifacts(result.run_id, "checkpoints")]
    assert artifacts == [f"checkpoints/{Path(result.best_checkpoint).name}"]
    assert "model/MLmodel" in [a.path for a in client.list_artifacts(result.run_id, "model")]


def test_a_finished_run_keeps_weights_not_resume_state(run):
    """The best checkpoint has no optimizer state (Adam's moments double the weights) and still loads;
    with a SQLite store's local artifacts the logged file is the kept one, and the run's output folder
    keeps only run.json (last.ckpt is needed only to continue an unfinished run)."""
    result, client, _ = run
    kept = Path(result.best_checkpoint)
    run_dir = client.get_run(result.run_id).info.artifact_uri.removeprefix("file://")
    assert kept == Path(run_dir) / "checkpoints" / kept.name
    work = Path(client.tracking_uri.removeprefix("sqlite:///")).parent
    assert [p.name for p in (work / "outputs" / result.run_id / "checkpoints").iterdir()] == ["run.json"]
    state = torch.load(kept, map_location="cpu", weights_only=True)
    assert not {"optimizer_states", "lr_schedulers", "callbacks"} & state.keys()
    assert BreedClassifier.load_from_checkpoint(kept, map_location="cpu").class_names == CLASSES


def test_checkpoint_of_a_run_is_a_local_weights_file(run):
    """Fine-tune from an earlier run: its backbone loads, its 4-class head is left for the new head."""
    result, _, _ = run
    state = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model = build_backbone("resnet18", str(result.best_checkpoint))
    assert torch.equal(model.layer4[0].conv1.weight, state["model.layer4.0.conv1.weight"])
    assert torch.equal(model.bn1.running_mean, state["model.bn1.running_mean"])
    assert model.fc.out_features == 1000  # untouched: replace_head sizes it for the new classes


def test_checkpoint_loads_back_with_its_typed_model_config(run):
    """Lightning's default (weights_only) loading rebuilds the ModelConfig saved as hyperparameters."""
    result, _, _ = run
    best = BreedClassifier.load_from_checkpoint(result.best_checkpoint, map_location="cpu")
    assert isinstance(best.cfg, ModelConfig) and best.cfg.arch == "resnet18"
    assert best.cfg.optimizer is Optimizer.adamw and best.cfg.finetune.policy is FinetunePolicy.full


def test_the_objective_decides_the_checkpoint_and_early_stopping(make_cfg, tmp_path):
    """sweep.metric=val_loss, minimize: the kept checkpoint is the epoch of the lowest val_loss."""
    cfg = make_cfg(
        "sweep.metric=val_loss",
        "sweep.direction=minimize",
        "trainer.max_epochs=3",
        "trainer.early_stopping_patience=5",
        "data.image_size=32",
        "model.lr=0.02",  # a jumpy loss: the best epoch is not simply the last one
    )
    result = train(cfg)
    client = MlflowClient(cfg.tracking_uri)
    losses = client.get_metric_history(result.run_id, "val_loss")
    assert len(losses) == 3
    lowest = min(losses, key=lambda point: point.value)
    epoch_at = {p.step: int(p.value) for p in client.get_metric_history(result.run_id, "epoch")}
    checkpoint = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == epoch_at[lowest.step]
    assert (
        Path(result.best_checkpoint).name
        == f"best-epoch{epoch_at[lowest.step]:02d}-val_loss{lowest.value:.4f}.ckpt"
    )
    stopping = build_trainer(cfg.trainer, Objective.of(cfg), tmp_path, logger=False).early_stopping_callback
    assert (stopping.monitor, stopping.mode) == ("val_loss", "min")
