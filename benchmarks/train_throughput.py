"""Training throughput: our step and our data pipeline, each against a plain baseline in the same run.

1. Step: ``BreedClassifier`` driven by a Lightning ``Trainer`` vs a hand-written PyTorch loop over the same
   model, optimizer, loss and batches. Inputs are pre-decoded tensors in memory, so only the step is timed
   (forward, backward, optimizer, and for ours the metric updates, logging and hooks). Target ratio >= 0.95.
2. Data: ``DogBreedsDataModule``'s train loader (crop first, then the JPEG decoded at the DCT scale the
   crop allows, ``TrainAugment`` on the PIL image, uint8 batches normalised in this process as the module
   does on the device), by default and with ``data.resized_copies=true``, vs ``torchvision.datasets.ImageFolder``
   + the classic PIL transforms (full decode), same output size, same augmentations, same loader settings.
   Data: generated JPEGs in dogImages' mix of sizes (``--sizes photos``, the default: 60% ~500x375, 25%
   800-1280 px, 15% 1600-3264 px photos; ``--sizes typical`` for the ~500x375 ones alone). Target >= 2x.

Rounds alternate the order of the loaders (forward, then reversed) so drift from other jobs hits all of them;
medians are reported and the ratio is of medians from the same run.
Run: ``.venv/bin/python benchmarks/train_throughput.py`` (JSON in benchmarks/results/train_throughput.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torchvision
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms

from conf.loader import load_config
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.device_decode import EncodedBatch
from lightning_app.images import normalize_uint8
from lightning_app.module import BreedClassifier
from lightning_app.sample_data import SIZE_MIXES, generate

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class StepTimer(Callback):
    """Wall time from the first timed batch's start to the last batch's end (warm-up batches excluded)."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.started = self.ended = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ended = time.perf_counter()


def lightning_rate(module: BreedClassifier, loader: DataLoader, warmup: int, steps: int) -> float:
    timer = StepTimer(warmup)
    # The knobs build_trainer sets; its checkpoint/early-stopping callbacks act at epoch end, not per step.
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    return steps * loader.batch_size / (timer.ended - timer.started)


def plain_rate(net: torch.nn.Module, cfg: dict, loader: DataLoader, warmup: int, steps: int) -> float:
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
    net.train()
    started = 0.0
    for index, (images, labels) in enumerate(loader):
        if index == warmup:
            started = time.perf_counter()
        if index == warmup + steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(images), labels).backward()
        optimizer.step()
    return steps * loader.batch_size / (time.perf_counter() - started)


def step_benchmark(data_root: Path, args) -> dict:
    cfg = load_config(
        [
            f"data.root={data_root}",
            f"data.image_size={args.step_image_size}",
            f"model.arch={args.arch}",
            "data.num_workers=0",
        ]
    )
    datamodule = DogBreedsDataModule(cfg.data)
    datamodule.setup("fit")
    # Real images, decoded once with the eval transform and kept in memory: the timed loop decodes nothing.
    decoded = list(datamodule.val_dataloader()) + list(datamodule.test_dataloader())
    images = torch.cat([b[0] for b in decoded])
    labels = torch.cat([b[1] for b in decoded])
    needed = args.batch_size * (args.warmup + args.steps)
    repeat = -(-needed // len(images))
    dataset = TensorDataset(images.repeat(repeat, 1, 1, 1)[:needed], labels.repeat(repeat)[:needed])
    loader = DataLoader(dataset, batch_size=args.batch_size)

    model_cfg = OmegaConf.to_object(cfg.model)
    torch.manual_seed(0)
    module = BreedClassifier(model_cfg, datamodule.class_names, datamodule.preprocessing)
    initial = copy.deepcopy(module.model.state_dict())
    ours, plain = [], []
    for repeat_index in range(args.repeats):
        module.model.load_state_dict(initial)
        net = copy.deepcopy(module.model)
        for name in ("ours", "plain") if repeat_index % 2 == 0 else ("plain", "ours"):
            if name == "ours":
                ours.append(lightning_rate(module, loader, args.warmup, args.steps))
            else:
                plain.append(plain_rate(net, model_cfg, loader, args.warmup, args.steps))
        print(
            f"  step repeat {repeat_index + 1}: ours {ours[-1]:.1f} img/s, plain {plain[-1]:.1f} img/s",
            flush=True,
        )
    return _summary(ours, plain, target=0.95) | {
        "arch": args.arch,
        "image_size": args.step_image_size,
        "batch_size": args.batch_size,
        "timed_steps_per_repeat": args.steps,
    }


def naive_loader(data_root: Path, image_size: int, augment, batch_size: int, workers: int) -> DataLoader:
    """The tutorial pipeline: ImageFolder's PIL loader (full decode), classic transforms, same augmentations."""
    steps = [transforms.RandomResizedCrop(image_size, scale=tuple(augment.random_resized_crop_scale))]
    if augment.horizontal_flip:
        steps.append(transforms.RandomHorizontalFlip())
    if augment.rotation_degrees:
        steps.append(transforms.RandomRotation(augment.rotation_degrees))
    if augment.color_jitter:
        steps.append(transforms.ColorJitter(augment.color_jitter, augment.color_jitter, augment.color_jitter))
    steps += [transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    dataset = torchvision.datasets.ImageFolder(str(data_root / "train"), transform=transforms.Compose(steps))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def epoch_rate(loader: DataLoader) -> float:
    """Images/s delivered as normalised float batches: ours normalises its uint8 batches here, as
    ``BreedClassifier.on_after_batch_transfer`` does, so that cost is counted."""
    started, count = time.perf_counter(), 0
    for images, _ in loader:
        if isinstance(images, EncodedBatch):  # data.decode_device: decoded + augmented on the device here
            images = images.decode(train=True)
        if images.dtype == torch.uint8:
            images = normalize_uint8(images, MEAN.to(images.device), STD.to(images.device))
        count += len(images)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - started)


def data_benchmark(data_root: Path, image_size: int, cache_dir: Path, args) -> dict:
    """Default loader, loader with ``data.resized_copies=true`` (copies made before timing), naive loader."""
    overrides = [
        f"data.root={data_root}",
        f"data.image_size={image_size}",
        f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}",
        f"data.cache_dir={cache_dir}",
    ]
    cfg = load_config(overrides)
    datamodule = DogBreedsDataModule(cfg.data)
    datamodule.setup("fit")
    with_copies = DogBreedsDataModule(load_config([*overrides, "data.resized_copies=true"]).data)
    started = time.perf_counter()
    with_copies.setup("fit")  # writes the copies: once per dataset version and size
    copies_build_s = time.perf_counter() - started
    loaders = {
        "ours": datamodule.train_dataloader(),
        "copies": with_copies.train_dataloader(),
        "naive": naive_loader(data_root, image_size, cfg.data.augment, args.batch_size, args.workers),
    }
    if (
        args.decode_device
    ):  # workers read bytes only; decode + augment on the device (lightning_app/device_decode.py)
        on_device = DogBreedsDataModule(
            load_config([*overrides, f"data.decode_device={args.decode_device}"]).data
        )
        on_device.setup("fit")
        loaders["device"] = on_device.train_dataloader()
    for loader in loaders.values():  # warm-up epoch: worker start-up, page cache
        epoch_rate(loader)
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for repeat_index in range(args.repeats):
        order = list(loaders) if repeat_index % 2 == 0 else list(reversed(loaders))
        for name in order:
            rates[name].append(epoch_rate(loaders[name]))
        print(
            f"  data {image_size}px repeat {repeat_index + 1}: "
            + ", ".join(f"{name} {values[-1]:.1f} img/s" for name, values in rates.items()),
            flush=True,
        )
    copies = _summary(rates["copies"], rates["naive"], target=2.0)
    device = {}
    if args.decode_device:
        on_device = _summary(rates["device"], rates["naive"], target=2.0)
        device = {"decode_device": {"device": args.decode_device}
                  | {k: on_device[k] for k in ("ours_img_s", "ours_median_img_s", "ratio")}}  # fmt: skip
    return (
        _summary(rates["ours"], rates["naive"], target=2.0)
        | device
        | {
            "resized_copies": {
                k: copies[k] for k in ("ours_img_s", "ours_median_img_s", "ratio", "meets_target")
            }
            | {"build_s": round(copies_build_s, 2)},
            "image_size": image_size,
            "batch_size": args.batch_size,
            "num_workers": args.workers,
            "images_per_epoch": len(loaders["ours"]) * args.batch_size,
        }
    )


def _summary(ours: list[float], baseline: list[float], target: float) -> dict:
    ratio = statistics.median(ours) / statistics.median(baseline)
    return {
        "ours_img_s": ours,
        "baseline_img_s": baseline,
        "ours_median_img_s": round(statistics.median(ours), 2),
        "baseline_median_img_s": round(statistics.median(baseline), 2),
        "ratio": round(ratio, 3),
        "target": target,
        "meets_target": ratio >= target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--step-image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument(
        "--data-sizes", default="64,224", help="output sizes for the data pipeline comparison"
    )
    parser.add_argument("--workers", type=int, default=2)
    # One intra-op thread: on a shared 2-core machine OpenMP spin-waiting makes multi-thread timings swing 10x.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=48)
    parser.add_argument(
        "--sizes", choices=list(SIZE_MIXES), default="photos", help="generated JPEG sizes (see docstring)"
    )
    parser.add_argument("--data-only", action="store_true", help="skip the step comparison")
    parser.add_argument(
        "--decode-device",
        choices=["cpu", "cuda"],
        help="also time data.decode_device=DEVICE (bytes-only workers)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        data_root = Path(tmp) / "dogImages"
        generate(data_root, args.classes, args.per_class, seed=0, sizes=args.sizes)
        step = None
        if not args.data_only:
            print(
                f"step: {args.arch} {args.step_image_size}px batch {args.batch_size}, {args.repeats} repeats"
            )
            step = step_benchmark(data_root, args)
            print(f"step ratio ours/plain: {step['ratio']:.3f} (target >= 0.95)")
        data = []
        for size in (int(s) for s in args.data_sizes.split(",")):
            data.append(data_benchmark(data_root, size, Path(tmp) / "cache", args))
            device = data[-1].get("decode_device")
            print(
                f"data {size}px ratio ours/naive: {data[-1]['ratio']:.2f}, with data.resized_copies=true: "
                f"{data[-1]['resized_copies']['ratio']:.2f}"
                + (f", with data.decode_device={device['device']}: {device['ratio']:.2f}" if device else "")
                + " (target >= 2)"
            )

    result = {
        "machine": f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), "
        + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"),
        "decode_device": args.decode_device,
        "torch": torch.__version__,
        "threads": args.threads,
        "dataset": f"generated, {args.classes} classes x {args.per_class} train JPEGs, "
        f"sizes {args.sizes}: {SIZE_MIXES[args.sizes]} (cumulative share, width range, height range)",
        "step": step,
        "data_pipeline": data,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
