"""Backbone by name, weights by enum name / local file / offline failure, new head, fine-tuning policies."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import lightning as L
import pytest
import torch
import torchvision
from helpers.servers import free_port
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

from conf.loader import ConfigError, load_config
from conf.schema.choices import FinetunePolicy
from conf.schema.training import ModelConfig
from lightning_app import weights
from lightning_app.backbone import build_backbone, replace_head
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.finetune import FineTuningPolicy
from lightning_app.module import BreedClassifier
from lightning_app.train import build_module
from lightning_app.weights import WeightsUnavailableError


def test_unknown_arch_names_the_catalogue():
    with pytest.raises(ConfigError, match=r"model.arch='resnet19' is not a torchvision.*list_models"):
        build_backbone("resnet19", None)


def test_unknown_weights_enum_lists_the_choices():
    with pytest.raises(ConfigError, match=r"model.weights='IMAGENET1K_V9'.*\['IMAGENET1K_V1', 'DEFAULT'\]"):
        build_backbone("resnet18", "IMAGENET1K_V9")
    with pytest.raises(ConfigError, match="IMAGENET1K_V9"):
        build_backbone("resnet18", "ResNet18_Weights.IMAGENET1K_V9")


@pytest.mark.timeout(60)
def test_offline_weights_fail_fast_and_say_how_to_use_a_local_file(tmp_path, monkeypatch):
    """No network: an empty torch cache and every HTTPS request refused (a proxy port nobody listens on)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as err:
        build_backbone("resnet18", "ResNet18_Weights.IMAGENET1K_V1")
    assert time.monotonic() - started < 30
    message = str(err.value)
    assert "offline" in message
    assert "https://download.pytorch.org/models/resnet18-" in message
    assert "model.weights=/path/to/that/file.pth" in message
    assert not list((tmp_path / "torch-home").rglob("*.pth"))  # no partial file left to be mistaken later


@pytest.mark.timeout(60)
def test_weights_download_is_bounded_without_touching_the_process_socket_timeout(tmp_path, monkeypatch):
    """A proxy that takes the connection and never answers, like a firewall that drops packets: the download
    gives up after DOWNLOAD_TIMEOUT_S, while every other thread's default socket timeout stays what it was."""
    silent = socket.create_server(("127.0.0.1", 0))  # never accept()s: connections queue, nothing answers
    proxy = f"http://127.0.0.1:{silent.getsockname()[1]}"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("https_proxy", proxy)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT_S", 1.0)
    before = socket.getdefaulttimeout()
    seen, done = set(), threading.Event()

    def watch_default_timeout():
        while not done.is_set():
            seen.add(socket.getdefaulttimeout())
            done.wait(0.005)

    watcher = threading.Thread(target=watch_default_timeout)
    watcher.start()
    started = time.monotonic()
    try:
        with pytest.raises(WeightsUnavailableError, match="timed out"):
            build_backbone("resnet18", "ResNet18_Weights.IMAGENET1K_V1")
    finally:
        done.set()
        watcher.join()
        silent.close()
    assert 1.0 <= time.monotonic() - started < 20
    assert seen == {before} and socket.getdefaulttimeout() == before
    assert not list((tmp_path / "torch-home").rglob("*.partial"))


def test_local_weights_file(tmp_path):
    torch.manual_seed(3)
    pretrained = torchvision.models.resnet18()
    path = tmp_path / "resnet18-pretrained.pth"
    torch.save(pretrained.state_dict(), path)

    loaded = build_backbone("resnet18", str(path))
    for name, tensor in pretrained.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    # Through the module: the backbone keeps the file's weights, the 1000-class head becomes a 5-class one.
    cfg = _model_cfg(weights=str(path))
    preprocessing = {"image_size": 48, "resize": 55, "mean": [0.5] * 3, "std": [0.25] * 3}
    module = BreedClassifier(cfg, class_names=list("abcde"), preprocessing=preprocessing)
    assert torch.equal(module.model.layer4[1].conv2.weight, pretrained.layer4[1].conv2.weight)
    assert module.model.fc.out_features == 5


def test_local_weights_errors(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="is not a file"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))
    unrelated = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(WeightsUnavailableError, match="no weights for this architecture"):
        build_backbone("resnet18", str(unrelated))


@pytest.mark.parametrize(("arch", "head"), [("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3")])
def test_new_head_for_our_classes(arch, head):
    model = build_backbone(arch, None)
    assert replace_head(model, 7, dropout=0.0) == head
    assert model.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    with_dropout = build_backbone(arch, None)
    replace_head(with_dropout, 7, dropout=0.3)
    assert isinstance(with_dropout.get_submodule(head), torch.nn.Sequential)


def _model_cfg(**changes) -> ModelConfig:
    return dataclasses.replace(OmegaConf.to_object(load_config([]).model), **changes)


# --- fine-tuning policies, observed in a real (tiny) fit ---------------------------------------------


class TrainableStages(Callback):
    """Records, at the start of every epoch (after the policy ran), which resnet stages train."""

    STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")

    def __init__(self):
        self.by_epoch: list[dict] = []

    def on_train_epoch_start(self, trainer, pl_module):
        model = pl_module.model
        trainable = [
            s for s in self.STAGES if all(p.requires_grad for p in model.get_submodule(s).parameters())
        ]
        groups = [(len(g["params"]), g["lr"]) for g in trainer.optimizers[0].param_groups]
        self.by_epoch.append({"trainable": trainable, "groups": groups})


def _fit(make_cfg, policy: FineTuningPolicy, epochs: int):
    cfg = make_cfg("data.image_size=32", "model.scheduler=none", "model.lr=0.01")
    datamodule = DogBreedsDataModule(cfg.data)
    module = build_module(cfg, datamodule)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    recorder = TrainableStages()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[policy, recorder],
    )
    trainer.fit(module, datamodule=datamodule)
    after = module.model.state_dict()
    changed = {name.split(".")[0] for name, value in before.items() if not torch.equal(value, after[name])}
    return recorder.by_epoch, changed


def test_head_policy_trains_only_the_head(make_cfg):
    epochs, changed = _fit(make_cfg, FineTuningPolicy(FinetunePolicy.head), epochs=1)
    assert epochs[0]["trainable"] == ["fc"]
    # Frozen means frozen: no weight moved and no BatchNorm running statistic drifted either.
    assert changed == {"fc"}


def test_last_n_policy_trains_the_last_stages_and_the_head(make_cfg):
    epochs, changed = _fit(make_cfg, FineTuningPolicy(FinetunePolicy.last_n, stages=2), epochs=1)
    assert epochs[0]["trainable"] == ["layer3", "layer4", "fc"]
    assert changed == {"layer3", "layer4", "fc"}


def test_full_policy_trains_everything(make_cfg):
    epochs, changed = _fit(make_cfg, FineTuningPolicy(FinetunePolicy.full), epochs=1)
    assert epochs[0]["trainable"] == list(TrainableStages.STAGES)
    assert changed == set(TrainableStages.STAGES)


def test_staged_policy_thaws_one_stage_at_each_configured_epoch(make_cfg):
    policy = FineTuningPolicy(FinetunePolicy.staged, unfreeze_at=[1, 2], backbone_lr_scale=0.1)
    epochs, changed = _fit(make_cfg, policy, epochs=3)
    assert [e["trainable"] for e in epochs] == [
        ["fc"],
        ["layer4", "fc"],
        ["layer3", "layer4", "fc"],
    ]
    head_group = (2, 0.01)  # fc weight + bias at the configured lr
    assert epochs[0]["groups"] == [head_group]
    # Each thawed stage joins the optimizer as its own group, at the smaller backbone learning rate.
    layer4_params = len(list(torchvision.models.resnet18().layer4.parameters()))
    layer3_params = len(list(torchvision.models.resnet18().layer3.parameters()))
    assert epochs[2]["groups"] == [
        head_group,
        (layer4_params, pytest.approx(0.001)),
        (layer3_params, pytest.approx(0.001)),
    ]
    assert changed == {"layer3", "layer4", "fc"}


def test_last_n_needs_a_stage():
    with pytest.raises(ConfigError, match=r"model.finetune.stages must be >= 1 for last_n, got 0"):
        FineTuningPolicy(FinetunePolicy.last_n, stages=0)
