"""Per-run bookkeeping and disk: our ``train(cfg)`` vs a bare Lightning fit of the same work.

Ours: one ``train()`` call as ``dogbreeds train`` makes it (MLflow run with params, config, per-epoch
metrics and system metrics; best + last checkpoints; test of the best checkpoint; class report; logged
checkpoint and pyfunc model). Baseline: the same ``BreedClassifier`` and ``DogBreedsDataModule``, same
seed and epochs, fitted by a ``Trainer`` with no logger and no checkpointing. Bookkeeping = median of
ours minus median of the baseline. Disk = bytes a finished run leaves in ``output_dir`` plus the MLflow
artifact root (``mlruns/``: run artifacts and logged models), against the weights' size (parameters and
buffers). The MLflow store is warm (created by a first, untimed-in-the-median run): what every trial of a
sweep sees; that first run's cost is reported separately (store creation, lazy imports).
Targets: bookkeeping <= 1.5 s (near 1 s) and disk per finished run <= 2.5x the weights (issue 12).

Rounds alternate ours/baseline so drift from other jobs hits both; medians are reported.
Run: ``.venv/bin/python benchmarks/run_overhead.py`` (JSON in benchmarks/results/run_overhead.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from conf.loader import load_config
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.library_noise import silence_library_noise
from lightning_app.sample_data import generate
from lightning_app.train import build_module, train

RESULTS = Path(__file__).parent / "results" / "run_overhead.json"
TARGET_BOOKKEEPING_S = 1.5
TARGET_DISK_RATIO = 2.5


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def ours(cfg, workdir: Path) -> tuple[float, int]:
    """Seconds of one ``train()`` call and the bytes it left under ``output_dir`` and ``mlruns/``."""
    folders = (workdir / "outputs", workdir / "mlruns")
    before = sum(tree_bytes(f) for f in folders)
    started = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - started
    return seconds, sum(tree_bytes(f) for f in folders) - before


def bare(cfg) -> float:
    """The same seed, module, data and epochs: Lightning alone, nothing logged, nothing saved."""
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    datamodule = DogBreedsDataModule(cfg.data)
    module = build_module(cfg, datamodule)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=cfg.trainer.precision,
        max_epochs=cfg.trainer.max_epochs,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    return time.perf_counter() - started


def weights_bytes(cfg) -> int:
    module = build_module(cfg, DogBreedsDataModule(cfg.data))
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    silence_library_noise()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data_root = workdir / "dogImages"
        generate(data_root, num_classes=args.classes, train_per_class=args.per_class, seed=0)
        cfg = load_config(
            [
                "trainer=demo",
                f"trainer.max_epochs={args.epochs}",
                f"model.arch={args.arch}",
                f"data.root={data_root}",
                f"data.image_size={args.image_size}",
                "data.batch_size=16",
                "data.num_workers=0",
                f"tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
                f"output_dir={workdir / 'outputs'}",
            ]
        )
        weights = weights_bytes(cfg)
        bare(cfg)  # warm-up: imports, page cache
        first_s, first_bytes = ours(cfg, workdir)  # creates the MLflow store
        print(f"first run (fresh store): {first_s:.2f} s, {first_bytes / 1e6:.1f} MB", flush=True)
        times: dict[str, list[float]] = {"ours": [], "bare": []}
        disk: list[int] = []
        for index in range(args.rounds):
            for name in ("ours", "bare") if index % 2 == 0 else ("bare", "ours"):
                if name == "ours":
                    seconds, written = ours(cfg, workdir)
                    times["ours"].append(seconds)
                    disk.append(written)
                else:
                    times["bare"].append(bare(cfg))
            print(
                f"  round {index + 1}: ours {times['ours'][-1]:.2f} s, bare {times['bare'][-1]:.2f} s, "
                f"disk {disk[-1] / 1e6:.1f} MB",
                flush=True,
            )

    ours_s, bare_s = statistics.median(times["ours"]), statistics.median(times["bare"])
    bookkeeping = ours_s - bare_s
    disk_ratio = statistics.median(disk) / weights
    result = {
        "machine": f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), "
        + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
        + f", load average {os.getloadavg()[0]:.1f} at the end",
        "torch": torch.__version__,
        "threads": args.threads,
        "run": f"{args.arch} from scratch, {args.image_size} px, {args.epochs} epochs, generated data "
        f"({args.classes} classes x {args.per_class} train images)",
        "ours_s": times["ours"],
        "bare_s": times["bare"],
        "ours_median_s": round(ours_s, 3),
        "bare_median_s": round(bare_s, 3),
        "ratio": round(ours_s / bare_s, 3),
        "bookkeeping_s": round(bookkeeping, 3),
        "bookkeeping_per_round_s": [
            round(o - b, 3) for o, b in zip(times["ours"], times["bare"], strict=True)
        ],
        "first_run_s": round(first_s, 3),
        "first_run_bookkeeping_s": round(first_s - bare_s, 3),
        "weights_bytes": weights,
        "disk_bytes": disk,
        "first_run_disk_bytes": first_bytes,
        "disk_ratio": round(disk_ratio, 2),
        "targets": {"bookkeeping_s": TARGET_BOOKKEEPING_S, "disk_ratio": TARGET_DISK_RATIO},
        "meets_targets": bookkeeping <= TARGET_BOOKKEEPING_S and disk_ratio <= TARGET_DISK_RATIO,
    }
    print(
        f"ours/bare {result['ratio']:.2f}; bookkeeping {bookkeeping:.2f} s per run "
        f"(target <= {TARGET_BOOKKEEPING_S}), first run {result['first_run_bookkeeping_s']:.2f} s; "
        f"disk {disk_ratio:.2f}x the weights ({weights / 1e6:.1f} MB; target <= {TARGET_DISK_RATIO}x)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
