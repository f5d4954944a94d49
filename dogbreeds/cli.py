"""``dogbreeds VERB [key=value ...]``: one console script, thin verbs over the task functions.

Heavy imports (torch, mlflow, boto3) happen inside each verb so ``dogbreeds --help`` is instant and a
config typo is reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from conf.loader import ConfigError, load_config

OVERRIDES_HELP = "Hydra overrides, e.g. model=resnet50 model.lr=3e-4 data.root=s3://bucket/dogImages"


def cmd_sample_data(args) -> None:
    from lightning_app.sample_data import generate

    counts = generate(Path(args.out), args.classes, args.per_class, args.seed)
    print(f"wrote {sum(counts.values())} images to {args.out} ({counts})")


def cmd_train(args) -> None:
    from lightning_app.train import train

    result = train(load_config(args.overrides))
    if result.run_id:
        print(f"run {result.run_id}: best checkpoint {result.best_checkpoint}")
        for name in sorted(result.metrics):
            print(f"  {name} = {result.metrics[name]:.4f}")


def cmd_sweep(args) -> None:
    from experiments.sweep import run_sweep

    run_sweep(load_config(args.overrides), args.overrides)


def cmd_package(args) -> None:
    from deploy.package import build_package

    cfg = load_config(args.overrides)
    out = build_package(args.source, args.out, cfg.tracking_uri, args.model_version)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def cmd_serve(args) -> None:
    from deploy.endpoint import serve

    cfg = load_config(args.overrides)
    serve(args.source, cfg.serve, cfg.tracking_uri)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dogbreeds", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    sample = verbs.add_parser("sample-data", help="write a small generated dataset in the dogImages layout")
    sample.add_argument("out", help="output folder")
    sample.add_argument("--classes", type=int, default=10)
    sample.add_argument("--per-class", type=int, default=24, help="train images per class")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_sample_data)

    train = verbs.add_parser("train", help="fine-tune one model, tracked as one MLflow run")
    train.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    train.set_defaults(func=cmd_train)

    sweep = verbs.add_parser("sweep", help="Optuna study of train runs, nested under one MLflow parent run")
    sweep.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " sweep=default sweep.n_trials=40")
    sweep.set_defaults(func=cmd_sweep)

    package = verbs.add_parser("package", help="build model.tar.gz for SageMaker from a run id or checkpoint")
    package.add_argument("source", help="MLflow run id (its checkpoints/ artifact) or a Lightning .ckpt path")
    package.add_argument("--out", default="model.tar.gz", help="output tarball (default: model.tar.gz)")
    package.add_argument("--model-version", help="version string recorded in metadata.json and responses")
    package.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. tracking_uri=http://mlflow:5000")
    package.set_defaults(func=cmd_package)

    serve = verbs.add_parser("serve", help="local endpoint speaking the SageMaker container + runtime API")
    serve.add_argument("source", help="model.tar.gz, an unpacked package folder, or an MLflow run id")
    serve.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. serve.port=8081")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for package in ("dogbreeds", "lightning_app", "experiments", "deploy"):
        logging.getLogger(package).addHandler(handler)
        logging.getLogger(package).setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"dogbreeds {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
