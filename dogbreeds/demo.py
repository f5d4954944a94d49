"""``make demo``: the main job end to end on embedded defaults (SQLite MLflow store in this folder).

Kept as plain calls of the same functions the CLI verbs use, so the demo cannot drift from them.
"""

from __future__ import annotations

from pathlib import Path

from conf.loader import load_config
from lightning_app.sample_data import generate
from lightning_app.train import train

DATA = Path("sample_data")
DEMO_OVERRIDES = ["trainer=demo", f"data.root={DATA}", "experiment_name=dogbreeds-demo"]


def main() -> None:
    if not (DATA / "train").is_dir():
        counts = generate(DATA, num_classes=10, train_per_class=24, seed=0)
        print(f"generated {sum(counts.values())} sample images in {DATA}/")
    result = train(load_config(DEMO_OVERRIDES))
    print("\n=== dogbreeds demo: done ===")
    print(f"MLflow run:       {result.run_id} (experiment dogbreeds-demo)")
    print(f"best checkpoint:  {result.best_checkpoint}")
    print("metrics:          " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(result.metrics.items())))
    print("look at it with:  mlflow ui --backend-store-uri sqlite:///mlflow.db   (http://127.0.0.1:5000)")


if __name__ == "__main__":
    main()
