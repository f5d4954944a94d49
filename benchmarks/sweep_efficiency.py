"""Does pruning buy its keep? The same search space, sampler seeds, trial count and workers, without pruning
and with median, successive halving (Optuna's is asynchronous: ASHA) and Hyperband, in one run.

Task: scikit-learn's handwritten digits (1,797 real 8x8 images, 10 classes) written once as a dogImages
ImageFolder at their native 8 px, split 40/40/20 per class: 717 validation images, so one image is 0.14 of a
point (training compute, not validation, is what the arms differ in).
Space: learning rate, weight decay and optimizer (sgd or adamw), so some trials are clearly bad and a pruner
has something to cut. Each trial: resnet18 from scratch at 8 px, a fixed epoch budget (no early stopping).

Per arm, over the sampler seeds: best validation accuracy (mean and spread), total epochs and their
fraction of the same seed's unpruned sweep, wall time, and the epochs spent (trials in completion order)
until the best so far came within 1 point of that seed's unpruned best. Target, read strictly: the whole
sweep ends within 1 point of the unpruned best having spent <= 1/3 of the unpruned sweep's epochs, on
every seed. (The epochs-to-1-point figure alone is too lenient on an easy task: an early lucky trial meets
it for every arm, the unpruned one included.)

    .venv/bin/python benchmarks/sweep_efficiency.py                      # full: 24 trials x 4 arms x 2 seeds
    .venv/bin/python benchmarks/sweep_efficiency.py --trials 3 --epochs 2 --seeds 0 --workers 1 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# One intra-op thread per trial process: two workers on a small machine, not two OpenMP pools fighting.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from conf.loader import load_config  # noqa: E402
from dogbreeds import logs  # noqa: E402
from experiments.sweep import run_sweep  # noqa: E402

TARGET_EPOCH_FRACTION = 1 / 3
TARGET_GAP_POINTS = 1.0
IMAGE_SIZE = 8  # the digits' own resolution


def pruners(epochs: int) -> dict[str, list[str]]:
    """Each pruner as a researcher would first configure it for an ``epochs``-epoch budget."""
    return {
        "none": [],
        # The median of earlier trials at the same epoch, after 5 trials and 2 epochs of warm-up.
        "median": ["+sweep.pruner_args.median={n_startup_trials: 5, n_warmup_steps: 2}"],
        # ASHA: rungs at 1, 3, 9... epochs, a third of the trials promoted at each.
        "successive_halving": [
            "+sweep.pruner_args.successive_halving={min_resource: 1, reduction_factor: 3}"
        ],
        "hyperband": [
            f"+sweep.pruner_args.hyperband={{min_resource: 1, max_resource: {epochs}, reduction_factor: 3}}"
        ],
    }


def write_digits(out: Path, seed: int = 0) -> dict[str, int]:
    """scikit-learn's digits as ``out/{train,valid,test}/NNN.digit_K/*.png``, 40/40/20 per class."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts = {"train": 0, "valid": 0, "test": 0}
    for label in range(10):
        indices = [i for i, target in enumerate(digits.target) if target == label]
        random.Random(f"{seed}-{label}").shuffle(indices)
        n_train = n_valid = int(0.4 * len(indices))
        splits = {
            "train": indices[:n_train],
            "valid": indices[n_train : n_train + n_valid],
            "test": indices[n_train + n_valid :],
        }
        for split, members in splits.items():
            folder = out / split / f"{label + 1:03d}.digit_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in members:
                pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
                image = Image.fromarray(pixels)
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
                image.convert("RGB").save(folder / f"digit_{i:04d}.png")
            counts[split] += len(members)
    return counts


def start_mlflow(work: Path) -> tuple[subprocess.Popen, str]:
    """Workers > 1 need an ``mlflow server`` (the sweep refuses a SQLite store for concurrent writers)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
        "--artifacts-destination", str(work / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    raise RuntimeError("mlflow server did not start within 120 s")


def sweep_once(work: Path, data: Path, tracking_uri: str, arm: str, seed: int, args) -> dict:
    import optuna

    study_name = f"bench-{arm}-seed{seed}"
    storage = f"sqlite:///{work / 'optuna.db'}"
    overrides = [
        "trainer=demo", f"trainer.max_epochs={args.epochs}", "trainer.early_stopping_patience=null",
        f"data.root={data}", f"data.image_size={IMAGE_SIZE}", "data.resize_ratio=1.0", "data.batch_size=64",
        "data.num_workers=0", "data.augment.horizontal_flip=false", "data.augment.color_jitter=0",
        "data.augment.random_resized_crop_scale=[0.8, 1.0]", f"output_dir={work / 'outputs'}",
        f"tracking_uri={tracking_uri}", f"experiment_name=bench-{arm}", f"sweep.storage={storage}",
        "sweep.space=[{key: model.lr, type: float, low: 0.0001, high: 0.5, log: true},"
        " {key: model.weight_decay, type: float, low: 0.000001, high: 0.01, log: true},"
        " {key: model.optimizer, type: categorical, choices: [sgd, adamw]}]",
        f"sweep.n_trials={args.trials}", f"sweep.seed={seed}", f"sweep.pruner={arm}",
        f"sweep.workers={args.workers}", f"sweep.study_name={study_name}", *pruners(args.epochs)[arm],
    ]  # fmt: skip
    started = time.perf_counter()
    run_sweep(load_config(overrides), overrides)
    seconds = time.perf_counter() - started

    study = optuna.load_study(study_name=study_name, storage=storage)
    finished = sorted(
        (t for t in study.trials if t.datetime_complete and t.intermediate_values),
        key=lambda t: t.datetime_complete,
    )[: args.trials]  # two workers may finish one trial past n_trials: compare arms on equal trial counts
    # (epochs spent so far, best accuracy so far) after each trial, in the order trials ended.
    curve, spent, best = [], 0, 0.0
    for trial in finished:
        spent += len(trial.intermediate_values)
        if trial.value is not None:
            best = max(best, trial.value)
        curve.append((spent, best))
    return {
        "arm": arm,
        "seed": seed,
        "best_val_acc": best,
        "epochs": spent,
        "seconds": round(seconds, 1),
        "states": {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED", "FAIL")},
        "curve": curve,
    }


def epochs_to_within(curve: list, reference: float, points: float = TARGET_GAP_POINTS) -> int | None:
    """Epochs spent when the best so far first came within ``points`` of ``reference``; None if never."""
    return next((spent for spent, best in curve if best >= reference - points / 100), None)


def summarize(rows: list[dict]) -> list[dict]:
    """One line per arm over the seeds, against each seed's unpruned sweep."""
    unpruned = {row["seed"]: row for row in rows if row["arm"] == "none"}
    arms = []
    for arm in dict.fromkeys(row["arm"] for row in rows):
        mine = [row for row in rows if row["arm"] == arm]
        fractions, spent = [], []
        for row in mine:
            reference = unpruned[row["seed"]]
            needed = epochs_to_within(row["curve"], reference["best_val_acc"])
            row["epochs_to_within_1pt"] = needed
            fractions.append(None if needed is None else needed / reference["epochs"])
            spent.append(row["epochs"] / reference["epochs"])
        accs = [row["best_val_acc"] for row in mine]
        reached = [f for f in fractions if f is not None]
        gaps = [100 * (unpruned[r["seed"]]["best_val_acc"] - r["best_val_acc"]) for r in mine]
        arms.append(
            {
                "arm": arm,
                "seeds": len(mine),
                "best_val_acc_mean": round(statistics.mean(accs), 4),
                "best_val_acc_spread": round(max(accs) - min(accs), 4),
                "gap_points_mean": round(statistics.mean(gaps), 2),
                "epochs_mean": round(statistics.mean(r["epochs"] for r in mine), 1),
                "seconds_mean": round(statistics.mean(r["seconds"] for r in mine), 1),
                "epochs_to_within_1pt_mean": round(
                    statistics.mean(r["epochs_to_within_1pt"] for r in mine), 1
                )
                if len(reached) == len(mine)
                else None,
                "fraction_of_unpruned_epochs_max": round(max(reached), 3) if reached else None,
                "epochs_fraction_of_unpruned_max": round(max(spent), 3),
                "meets_target": max(gaps) <= TARGET_GAP_POINTS and max(spent) <= TARGET_EPOCH_FRACTION,
            }
        )
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    arms = list(pruners(1))
    parser.add_argument("--arms", nargs="+", default=arms, choices=arms)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_efficiency.json"))
    args = parser.parse_args()
    logs.log_to_stderr()  # the CLI's one log format and noise filters (Optuna's own "[I date]" lines)
    logs.route_training_logs()

    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        work = Path(tmp)
        counts = write_digits(work / "data")
        server, tracking_uri = (None, f"sqlite:///{work / 'mlflow.db'}")
        if args.workers > 1:
            server, tracking_uri = start_mlflow(work)
        try:
            rows = [
                sweep_once(work, work / "data", tracking_uri, arm, seed, args)
                for seed in args.seeds
                for arm in ["none", *(a for a in args.arms if a != "none")]
            ]
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
    summary = summarize(rows)

    print(
        f"\n{'arm':<20}{'best val_acc':>16}{'gap pts':>9}{'epochs':>8}{'frac':>7}{'to 1pt':>8}{'frac':>7}{'s':>8}  target"
    )
    for arm in summary:
        fraction = arm["fraction_of_unpruned_epochs_max"]
        print(
            f"{arm['arm']:<20}{arm['best_val_acc_mean']:>9.4f} ±{arm['best_val_acc_spread']:<5.3f}"
            f"{arm['gap_points_mean']:>9.2f}{arm['epochs_mean']:>8}{arm['epochs_fraction_of_unpruned_max']:>7}"
            f"{arm['epochs_to_within_1pt_mean'] or '-':>8}"
            f"{fraction if fraction is not None else '-':>7}{arm['seconds_mean']:>8}  {arm['meets_target']}"
        )
    report = {
        "benchmark": "sweep_efficiency",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only",
        "dataset": f"scikit-learn digits at {IMAGE_SIZE} px, {counts} images per split",
        "trials": args.trials,
        "max_epochs": args.epochs,
        "workers": args.workers,
        "sampler": "tpe",
        "seeds": args.seeds,
        "target": f"best within {TARGET_GAP_POINTS} point of the unpruned best, having spent <= "
        f"{TARGET_EPOCH_FRACTION:.3f} of its epochs, every seed",
        "summary": summary,
        "runs": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
