"""The trainer factory (lightning_app/trainer.py) on a GPU: ``precision=auto`` is bf16-mixed where the GPU
supports it, and training steps run on CUDA under it. The ``gpu`` marker skips it where CUDA is absent."""

from __future__ import annotations

import pytest
import torch

from lightning_app.backbone import head_name
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.train import build_module
from lightning_app.trainer import build_trainer


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

    trainer = build_trainer(cfg.trainer, tmp_path / "checkpoints", logger=False)
    trainer.fit(module, datamodule=datamodule)

    assert trainer.precision == expected_precision
    assert head_outputs and set(head_outputs) == {("cuda", expected_dtype)}
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    after = module.model.state_dict()
    assert any(not torch.equal(before[name], after[name].cpu()) for name in before), "no weight moved"
