"""Does pruning buy its keep? The same search space, sampler seed and trial count, without pruning and
with each pruner, in one run: best validation accuracy reached, training epochs spent, wall time.

Target: a pruned sweep within 1 accuracy point of the unpruned best at <= 50% of its epochs.

    .venv/bin/python benchmarks/sweep_efficiency.py --trials 8 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conf.loader import load_config  # noqa: E402
from experiments.sweep import run_sweep  # noqa: E402
from lightning_app.sample_data import generate  # noqa: E402

PRUNERS = {
    "none": [],
    # Compare each trial with the median of earlier ones from the second epoch on.
    "median": ["+sweep.pruner_args.median={n_startup_trials: 2, n_warmup_steps: 1}"],
    # Rungs at 1 and 3 epochs, a third of the trials promoted at each.
    "successive_halving": ["+sweep.pruner_args.successive_halving={min_resource: 1, reduction_factor: 3}"],
}


def sweep_once(work: Path, data: Path, pruner: str, args) -> dict:
    overrides = [
        "trainer=demo", f"trainer.max_epochs={args.epochs}", f"data.root={data}", "data.image_size=32",
        "data.batch_size=16", "data.num_workers=0", f"output_dir={work / 'outputs'}",
        f"tracking_uri=sqlite:///{work / 'mlflow.db'}", f"sweep.storage=sqlite:///{work / 'optuna.db'}",
        "sweep.space=[{key: model.lr, type: float, low: 0.0003, high: 0.3, log: true}]",
        f"sweep.n_trials={args.trials}", f"sweep.seed={args.seed}", f"sweep.pruner={pruner}",
        f"sweep.study_name=bench-{pruner}", *PRUNERS[pruner],
    ]  # fmt: skip
    started = time.perf_counter()
    result = run_sweep(load_config(overrides))
    seconds = time.perf_counter() - started

    import optuna

    study = optuna.load_study(study_name=f"bench-{pruner}", storage=f"sqlite:///{work / 'optuna.db'}")
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    return {
        "pruner": pruner,
        "best_val_acc": result.best_value,
        "best_params": result.best_params,
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "states": result.states,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    # Validation images = classes x per-class / 4: the accuracy resolution is 100 / that many points.
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=24)
    parser.add_argument("--pruners", nargs="+", default=list(PRUNERS), choices=list(PRUNERS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_efficiency.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        data = Path(tmp) / "data"
        generate(data, num_classes=args.classes, train_per_class=args.per_class, seed=0)
        rows = [
            sweep_once(Path(tmp) / name, data, name, args)
            for name in ["none", *(p for p in args.pruners if p != "none")]
        ]

    baseline = rows[0]
    for row in rows[1:]:
        row["epochs_ratio"] = round(row["epochs"] / baseline["epochs"], 3)
        row["time_ratio"] = round(row["seconds"] / baseline["seconds"], 3)
        row["acc_gap_points"] = round(100 * (baseline["best_val_acc"] - row["best_val_acc"]), 2)
        row["meets_target"] = row["epochs_ratio"] <= 0.5 and row["acc_gap_points"] <= 1.0
    print(
        f"\n{'pruner':<20}{'best val_acc':>14}{'epochs':>8}{'seconds':>9}{'epochs ratio':>14}{'acc gap':>9}"
    )
    for row in rows:
        print(
            f"{row['pruner']:<20}{row['best_val_acc']:>14.4f}{row['epochs']:>8}{row['seconds']:>9.1f}"
            f"{row.get('epochs_ratio', 1.0):>14.3f}{row.get('acc_gap_points', 0.0):>9.2f}"
        )
    report = {
        "benchmark": "sweep_efficiency",
        "machine": f"{platform.processor() or platform.machine()}, CPU only",
        "trials": args.trials,
        "dataset": f"generated, {args.classes} classes x {args.per_class} train images, 32 px",
        "max_epochs": args.epochs,
        "sampler": "tpe",
        "seed": args.seed,
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
