"""Fine-tuning policy as a Lightning callback (what is frozen, and when it thaws).

Built on Lightning's ``BaseFinetuning`` so frozen BatchNorm layers stay in eval mode and thawed
stages join the optimizer as new parameter groups (with their own, usually smaller, learning rate).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import BaseFinetuning

from conf.loader import ConfigError
from conf.schema.choices import FinetunePolicy


class FineTuningPolicy(BaseFinetuning):
    def __init__(
        self,
        policy: FinetunePolicy,
        stages: int = 1,
        unfreeze_at: list[int] | None = None,
        backbone_lr_scale: float = 0.1,
    ):
        super().__init__()
        if policy == FinetunePolicy.last_n and stages < 1:
            raise ConfigError(f"model.finetune.stages must be >= 1 for last_n, got {stages}")
        self.policy = policy
        self.stages = stages
        self.unfreeze_at = sorted(unfreeze_at or [])
        self.backbone_lr_scale = backbone_lr_scale

    def freeze_before_training(self, pl_module) -> None:
        # train_bn=False: BaseFinetuning's default leaves BatchNorm trainable, so a "frozen" backbone would
        # still move its affine weights and running statistics, which small fine-tuning batches corrupt.
        stages = pl_module.backbone_stages
        if self.policy in (FinetunePolicy.head, FinetunePolicy.staged):
            self.freeze(stages, train_bn=False)
        elif self.policy == FinetunePolicy.last_n:
            self.freeze(stages[: max(len(stages) - self.stages, 0)], train_bn=False)

    def finetune_function(self, pl_module, current_epoch: int, optimizer) -> None:
        """Staged: at each epoch in ``unfreeze_at`` the next-deepest frozen stage starts training."""
        if self.policy != FinetunePolicy.staged or current_epoch not in self.unfreeze_at:
            return
        thawed = self.unfreeze_at.index(current_epoch) + 1
        stages = pl_module.backbone_stages
        stage = stages[-thawed] if thawed <= len(stages) else None
        if stage is not None:
            lr = optimizer.param_groups[0]["lr"] * self.backbone_lr_scale
            self.unfreeze_and_add_param_group(stage, optimizer, lr=lr, train_bn=True)
