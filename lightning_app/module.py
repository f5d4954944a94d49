"""The classifier LightningModule: backbone + new head, torchmetrics, optimizer and schedule from config.

Class names and preprocessing travel inside every checkpoint (``dogbreeds`` key), so a checkpoint alone
is enough to package, serve or evaluate the model: nothing has to be looked up in the training config.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from conf.schema.choices import Optimizer, Scheduler
from conf.schema.training import ModelConfig
from lightning_app import checkpoints
from lightning_app.backbone import backbone_stages, build_backbone, replace_head
from lightning_app.images import normalize_uint8

OPTIMIZERS = {
    Optimizer.adamw: torch.optim.AdamW,
    Optimizer.adam: torch.optim.Adam,
    Optimizer.sgd: torch.optim.SGD,
}

# The typed model config is saved as hyperparameters; Lightning reads it back with weights_only=True.
checkpoints.allow_model_config()


def _accuracy_metrics(num_classes: int) -> MetricCollection:
    metrics = {"acc": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


class BreedClassifier(L.LightningModule):
    def __init__(self, model_cfg: ModelConfig, class_names: list[str], preprocessing: dict):
        """``model_cfg``: the typed ``model`` section (``OmegaConf.to_object(cfg.model)``), saved as a
        hyperparameter so ``load_from_checkpoint`` rebuilds the same module."""
        super().__init__()
        # Saved in checkpoints only: train.py logs the whole config as params, once (Lightning would log
        # these again, as a second, stringified copy of the model section plus the class list).
        self.save_hyperparameters(logger=False)
        self.cfg = model_cfg
        self.class_names = list(class_names)
        self.preprocessing = dict(preprocessing)
        self.model = build_backbone(model_cfg.arch, model_cfg.weights)
        self.head_name = replace_head(self.model, len(class_names), model_cfg.dropout)
        if model_cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Train batches arrive as uint8 (see lightning_app/augment.py) and are normalised here, on the device.
        self.register_buffer(
            "pixel_mean", torch.tensor(preprocessing["mean"]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(preprocessing["std"]).view(1, 3, 1, 1), persistent=False
        )
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=model_cfg.label_smoothing)
        metrics = _accuracy_metrics(len(class_names))
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        # Per-class report of the test split (lightning_app/class_report.py); not saved in checkpoints.
        self.test_confusion = MulticlassConfusionMatrix(len(class_names))

    @property
    def validation_metric_names(self) -> list[str]:
        """What every validation epoch logs: the metrics an objective can monitor."""
        return ["val_loss", *self.val_metrics.keys()]

    @property
    def backbone_stages(self) -> list[nn.Module]:
        return backbone_stages(self.model, self.head_name)

    def configure_model(self) -> None:
        if self.cfg.compile and not isinstance(self.model, torch._dynamo.eval_frame.OptimizedModule):
            self.model = torch.compile(self.model)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        if hasattr(images, "decode"):  # data.decode_device: bytes, decoded and augmented on that device
            images = images.decode(self.training)
        return images, labels

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        if images.dtype == torch.uint8:
            images = normalize_uint8(images, self.pixel_mean, self.pixel_std)
        return images, labels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def _step(self, batch, metrics: MetricCollection, loss_metric: MeanMetric, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.loss_fn(logits, labels)
        if not torch.isfinite(loss):
            # Fail loudly: a NaN run must end as FAILED (and a sweep trial as FAIL), not train on garbage.
            raise FloatingPointError(
                f"{stage} loss is {loss.item()} at epoch {self.current_epoch}; lower model.lr"
            )
        metrics.update(logits.detach(), labels)
        if stage == "test":
            self.test_confusion.update(logits.detach(), labels)
        loss_metric.update(loss.detach(), weight=labels.numel())
        # Metric objects are synchronised across DDP ranks when Lightning computes them at epoch end.
        self.log(f"{stage}_loss", loss_metric, on_step=False, on_epoch=True, prog_bar=stage != "train")
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_metrics, self.train_loss, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_metrics, self.val_loss, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, self.test_metrics, self.test_loss, "test")

    def configure_optimizers(self):
        cfg = self.cfg
        params = [p for p in self.parameters() if p.requires_grad]
        kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if cfg.optimizer == Optimizer.sgd:
            kwargs.update(momentum=cfg.momentum, nesterov=True)
        optimizer = OPTIMIZERS[cfg.optimizer](params, **kwargs)
        scheduler = self._scheduler(optimizer)
        if scheduler is None:
            return optimizer
        interval = "step" if cfg.scheduler == Scheduler.onecycle else "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def _scheduler(self, optimizer):
        cfg, epochs = self.cfg, max(self.trainer.max_epochs or 1, 1)
        if cfg.scheduler == Scheduler.none:
            return None
        if cfg.scheduler == Scheduler.onecycle:
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg.lr, total_steps=int(self.trainer.estimated_stepping_batches)
            )
        if cfg.scheduler == Scheduler.step:
            main = torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.gamma)
        else:
            main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs - cfg.warmup_epochs, 1))
        if not cfg.warmup_epochs:
            return main
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=cfg.warmup_epochs)
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main], [cfg.warmup_epochs])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dogbreeds"] = {
            "arch": self.cfg.arch,
            "class_names": self.class_names,
            "preprocessing": self.preprocessing,
            "head": self.head_name,
        }
