"""The trainer factory (lightning_app/trainer.py): what its checkpoints hold, and on a GPU, that
``precision=auto`` is bf16-mixed where the GPU supports it and training steps run on CUDA under it (the
``gpu`` marker skips that one where CUDA is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_app import checkpoints
from lightning_app.backbone import head_name
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.module import BreedClassifier
from lightning_app.objective import Objective
from lightning_app.train import build_module
from lightning_app.trainer import build_trainer

RESUME_STATE = {"optimizer_states", "lr_schedulers", "callbacks"}


def test_the_best_checkpoint_is_weights_only_and_last_ckpt_can_resume(make_cfg, tmp_path):
    """Adam's moments (twice the weights) and callback state go into last.ckpt only, which resume needs;
    the best file, the one tested and logged, loads as a model without them. The epoch that ends fitting
    writes no last.ckpt: the run finishes seconds later, which deletes it."""
    cfg = make_cfg("trainer.max_epochs=3", "data.image_size=32")
    datamodule = DogBreedsDataModule(cfg.data)
    trainer = build_trainer(cfg.trainer, Objective.of(cfg), tmp_path, logger=False)
    trainer.fit(build_module(cfg, datamodule), datamodule=datamodule)

    (best,) = tmp_path.glob("best-*.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([best.name, "last.ckpt"])
    assert trainer.checkpoint_callback.best_model_path == str(best)
    best_state = checkpoints.read(best)
    assert not RESUME_STATE & best_state.keys()
    assert (
        BreedClassifier.load_from_checkpoint(best, map_location="cpu").class_names == datamodule.class_names
    )
    last_state = checkpoints.read(tmp_path / "last.ckpt")
    assert last_state.keys() >= RESUME_STATE and last_state["epoch"] == 1  # of epochs 0, 1, 2
    assert any(key.startswith("RNGStateCheckpoint") for key in last_state["callbacks"])
    assert best.stat().st_size < 0.6 * (tmp_path / "last.ckpt").stat().st_size


class StopAfterSecondEpoch(Callback):
    """Early stopping's effect, deterministically: ``should_stop`` set before checkpoint callbacks run."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = trainer.current_epoch == 1


def test_an_early_stopped_run_keeps_the_last_ckpt_of_the_epoch_before(make_cfg, tmp_path):
    cfg = make_cfg("trainer.max_epochs=5", "data.image_size=32")
    datamodule = DogBreedsDataModule(cfg.data)
    trainer = build_trainer(cfg.trainer, Objective.of(cfg), tmp_path, False, [StopAfterSecondEpoch()])
    trainer.fit(build_module(cfg, datamodule), datamodule=datamodule)
    assert trainer.current_epoch == 2  # stopped after epochs 0 and 1
    assert checkpoints.read(tmp_path / "last.ckpt")["epoch"] == 0


def test_a_one_epoch_run_writes_no_last_ckpt(make_cfg, tmp_path):
    cfg = make_cfg("trainer.max_epochs=1", "data.image_size=32")
    datamodule = DogBreedsDataModule(cfg.data)
    trainer = build_trainer(cfg.trainer, Objective.of(cfg), tmp_path, logger=False)
    trainer.fit(build_module(cfg, datamodule), datamodule=datamodule)
    assert [p.name for p in tmp_path.iterdir()] == [Path(trainer.checkpoint_callback.best_model_path).name]


@pytest.mark.gpu
def test_auto_precision_trains_on_cuda_in_bf16_where_supported(make_cfg, tmp_path):
    # Pre-Ampere GPUs have no bf16: there "auto" must fall back to full precision, not fail.
    bf16 = torch.cuda.is_bf16_supported()
    expected_precision, expected_dtype = (
        ("bf16-mixed", torch.bfloat16) if bf16 else ("32-true", torch.float32)
    )
    cfg = make_cfg(
        "trainer.accelerator=gpu", "trainer.devices=1", "trainer.precision=auto", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "data.image_size=32",
    )  # fmt: skip
    datamodule = DogBreedsDataModule(cfg.data)
    module = build_module(cfg, datamodule)
    before = {name: tensor.clone() for name, tensor in module.model.state_dict().items()}
    head_outputs: list[tuple[str, torch.dtype]] = []
    module.model.get_submodule(head_name(module.model)).register_forward_hook(
        lambda _module, _inputs, output: head_outputs.append((output.device.type, output.dtype))
    )

    trainer = build_trainer(cfg.trainer, Objective.of(cfg), tmp_path / "checkpoints", logger=False)
    trainer.fit(module, datamodule=datamodule)

    assert trainer.precision == expected_precision
    assert head_outputs and set(head_outputs) == {("cuda", expected_dtype)}
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    after = module.model.state_dict()
    assert any(not torch.equal(before[name], after[name].cpu()) for name in before), "no weight moved"
