"""``make demo``: sample data -> sweep -> promote (local endpoint) -> invoke, on embedded defaults.

Everything runs on this machine: SQLite MLflow store and Optuna storage in this folder, the local endpoint
as a background process (stopped at the end), the Lambda handler in process.

Kept as plain calls of the same functions the CLI verbs use, so the demo cannot drift from them.
"""

from __future__ import annotations

from pathlib import Path

from conf.loader import load_config
from deploy.champion import WorseThanChampion
from deploy.invoke import event_for, format_predictions, invoke_local, parse_response
from deploy.local_endpoint import background
from deploy.promote import promote, summary
from dogbreeds import logs
from experiments.sweep import run_sweep
from lightning_app.layout import class_name
from lightning_app.sample_data import generate

DATA = Path("sample_data")
DEMO_OVERRIDES = ["trainer=demo", f"data.root={DATA}", "experiment_name=dogbreeds-demo"]


def main() -> None:
    logs.log_to_stderr()  # the CLI's one log format and noise filters: the demo is most users' first look
    logs.route_training_logs()
    if not (DATA / "train").is_dir():
        counts = generate(DATA, num_classes=10, train_per_class=24, seed=0)
        print(f"generated {sum(counts.values())} sample images in {DATA}/")
    cfg = load_config([*DEMO_OVERRIDES, "sweep=demo", "deploy=local"])
    sweep = run_sweep(cfg)
    cfg.deploy.sweep = sweep.study_name  # this run's sweep: its best trial is the candidate
    try:
        promoted = promote(cfg)
        print(summary(promoted))
        served = f"run {promoted.run_id} (promoted)"
    except WorseThanChampion as refused:
        # A re-run of the demo whose new sweep did worse: the champion keeps serving, as it should.
        kept = refused.champion
        print(f"\nnot promoted: {refused}")
        background.start(kept.tarball, cfg.deploy, cfg.output_dir, kept.run_id)
        served = f"run {kept.run_id} (@champion, version {kept.version}: kept)"
    # One validation image through the Lambda handler (run locally) -> local endpoint -> serving code.
    image = sorted((DATA / "valid").glob("*/*"))[0]
    state = background.read_state(cfg.output_dir)
    try:
        body = parse_response(invoke_local(event_for(str(image)), state["url"], state["endpoint_name"]))
    finally:
        background.stop(cfg.output_dir)
    print("\n=== dogbreeds demo: done ===")
    print(
        f"sweep:            {sweep.study_name}, best {cfg.sweep.metric}={sweep.best_value:.3f} (run {sweep.best_run_id})"
    )
    print(f"served:           {served} -> local endpoint (stopped again after this request)")
    print(f"image:            {image} (true breed: {class_name(image.parent.name)})")
    print("prediction:\n" + format_predictions(body))
    print("look at it with:  mlflow ui --backend-store-uri sqlite:///mlflow.db   (http://127.0.0.1:5000)")


if __name__ == "__main__":
    main()
