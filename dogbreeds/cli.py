"""``dogbreeds VERB [key=value ...]``: one console script, thin verbs over the task functions.

Heavy imports (torch, mlflow, boto3) happen inside each verb so ``dogbreeds --help`` is instant and a
config typo is reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from conf.errors import DogbreedsError
from conf.loader import ConfigError, load_config
from conf.schema.choices import DeployTarget
from dogbreeds import logs
from experiments.launch import launch

log = logging.getLogger(__name__)

OVERRIDES_HELP = "Hydra overrides, e.g. model=resnet50 model.lr=3e-4 data.root=s3://bucket/dogImages"


def cmd_config(args) -> None:
    """The config every other verb would run with these overrides, resolved, as YAML (Hydra's ``--cfg job``)."""
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(load_config(args.overrides)), end="")


def cmd_sample_data(args) -> None:
    from lightning_app.sample_data import generate

    counts = generate(Path(args.out), args.classes, args.per_class, args.seed)
    print(f"wrote {sum(counts.values())} images to {args.out} ({counts})")


def cmd_launch(args) -> None:
    """``train`` and ``sweep``: where they run (here or SageMaker jobs) is the ``backend`` config choice."""
    cfg = load_config(args.overrides)  # before importing torch: a typo is reported in a fraction of a second
    if cfg.backend.name == "local":
        logs.route_training_logs()
    for line in launch(cfg, args.verb, args.overrides, args.dry_run):
        print(line)


def cmd_rerun(args) -> None:
    from experiments.rerun import rerun

    logs.route_training_logs()
    for line in rerun(args.run_id, args.overrides, args.tracking_uri):
        print(line)


def cmd_jobs(args) -> None:
    import boto3
    from mlflow import MlflowClient
    from rich.console import Console
    from rich.table import Table

    from experiments.sagemaker_jobs import status as job_status
    from experiments.sagemaker_jobs.submit import JobConfigError
    from lightning_app.tracking import resolve_tracking_uri

    chosen = [o for o in args.overrides if o.startswith("backend=")]
    cfg = load_config([*(() if chosen else ["backend=sagemaker"]), *args.overrides])
    region = cfg.backend.region or boto3.session.Session().region_name
    if not region:
        raise JobConfigError("no AWS region: set backend.region=us-east-1 (or AWS_DEFAULT_REGION)")
    jobs = job_status.describe_jobs(
        boto3.client("sagemaker", region_name=region), cfg.backend.job_prefix, args.limit
    )
    runs = job_status.mlflow_runs(
        MlflowClient(resolve_tracking_uri(cfg.tracking_uri)), cfg.experiment_name, jobs
    )
    table = Table("job", "verb", "status", "instances", "spot", "instance-h", "cost so far", "MLflow run")
    rows = job_status.job_rows(jobs, cfg.backend.prices, runs)
    for row in rows:
        cost = "?" if row.cost_usd is None else f"${row.cost_usd:,.2f}"
        table.add_row(row.name, row.verb, row.status, row.instances, "yes" if row.spot else "no",
                      f"{row.hours:.2f}", cost, row.mlflow_run or "-")  # fmt: skip
    console = Console(width=200)
    console.print(table)
    for row in rows:
        if row.failure:
            console.print(f"{row.name} failed: {row.failure}", markup=False, highlight=False)


def cmd_package(args) -> None:
    from deploy.packaging.builder import build_package

    cfg = load_config(args.overrides)
    out = build_package(args.source, args.out, cfg.tracking_uri, args.model_version)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def cmd_serve(args) -> None:
    from deploy.local_endpoint.process import serve

    cfg = load_config(args.overrides)
    serve(args.source, cfg.serve, cfg.tracking_uri)


def cmd_promote(args) -> None:
    from deploy.promote import promote, summary

    print(summary(promote(load_config(args.overrides), dry_run=args.dry_run, force=args.force)))


def cmd_teardown(args) -> None:
    cfg = load_config(args.overrides)
    if cfg.deploy.target == DeployTarget.local:
        from deploy.local_endpoint.background import read_state, stop

        if args.dry_run:
            state = read_state(cfg.output_dir)
            print(f"[dry-run] would stop local endpoint pid {state['pid']}" if state else "no local endpoint")
            return
        state = stop(cfg.output_dir)
        print(f"stopped local endpoint pid {state['pid']} ({state['url']})" if state else "no local endpoint")
        return
    from mlflow import MlflowClient

    from deploy.aws.calls import AwsCalls
    from deploy.aws.records import load_records
    from deploy.aws.teardown import teardown
    from lightning_app.tracking import resolve_tracking_uri

    deploy = cfg.deploy
    client = MlflowClient(resolve_tracking_uri(cfg.tracking_uri))
    found = load_records(client, deploy.registered_model, deploy.endpoint_name)
    if not found:
        print(
            f"no deployment records of endpoint {deploy.endpoint_name!r} on model {deploy.registered_model!r} "
            f"at {client.tracking_uri}: nothing promote created to delete (check tracking_uri)"
        )
        return
    calls = AwsCalls(region=deploy.region)
    calls.account_id()  # credentials first, with the hint, before any delete
    result = teardown(calls.client, deploy, found, dry_run=args.dry_run)
    print(
        f"{len(result.deleted)} resource(s) {'would be ' if args.dry_run else ''}deleted, "
        f"{len(result.gone)} already gone, {len(result.refused)} refused (not ours), {len(result.kept)} kept"
    )


def cmd_invoke(args) -> None:
    from deploy import invoke

    cfg = load_config(args.overrides)
    event = invoke.event_for(args.image)
    if cfg.deploy.target == DeployTarget.local:
        from deploy.local_endpoint.background import read_state

        state = read_state(cfg.output_dir)
        if state is None:
            raise invoke.InvocationError(
                f"no local endpoint recorded under {cfg.output_dir}: run dogbreeds promote first"
            )
        response = invoke.invoke_local(event, state["url"], state["endpoint_name"])
    else:
        response = invoke.invoke_lambda(event, cfg.deploy)
    print(invoke.format_predictions(invoke.parse_response(response)))


def positive_int(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def cmd_predict(args) -> None:
    """Score a folder (or s3:// prefix) of images with a run's or the registry's model, to a CSV; with
    ``deploy=sagemaker``, as a Batch Transform job on the Model promote deployed."""
    cfg = load_config(args.overrides)
    if cfg.deploy.target == DeployTarget.sagemaker:
        from deploy.aws.batch_transform import submit

        print(submit(cfg, args.model, args.images, args.out, args.top_k, args.dry_run))
        return
    if args.dry_run:
        raise ConfigError("--dry-run prints the SageMaker Batch Transform request: add deploy=sagemaker")
    import tempfile

    from rich.progress import track  # deferred with the torch import below: --help stays instant

    from deploy import batch_predict

    root, files = batch_predict.image_files(args.images, cfg.data.cache_dir)
    with tempfile.TemporaryDirectory(prefix="dogbreeds-predict-") as tmp:
        serving, model = batch_predict.load_package_model(
            batch_predict.model_package(args.model, Path(tmp), cfg.tracking_uri)
        )
        top_k = min(args.top_k, len(model.class_names))
        scored = batch_predict.score_files(serving, model, files, top_k, args.batch_size)
        shown = track(scored, total=len(files), description="predicting", disable=not sys.stderr.isatty())
        counts = batch_predict.write_csv(Path(args.out), root, _reported(shown), top_k)
    print(f"wrote {args.out}: {counts['scored']} image(s) scored, {counts['failed']} skipped")


def _reported(scored):
    """Each skipped file, one warning as it happens (shown with -q too); the CSV's error column says it again."""
    for item in scored:
        if item.error:
            log.warning("skipped %s: %s", item.path, item.error)
        yield item


def cmd_dashboard(args) -> None:
    from experiments.dashboard import serve_dashboard

    serve_dashboard(
        load_config(args.overrides).sweep, args.host, args.port, echo=lambda line: print(line, flush=True)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dogbreeds", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    config = verbs.add_parser("config", help="print the resolved config for these overrides, as YAML")
    config.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    config.set_defaults(func=cmd_config)

    sample = verbs.add_parser("sample-data", help="write a small generated dataset in the dogImages layout")
    sample.add_argument("out", help="output folder")
    sample.add_argument("--classes", type=int, default=10)
    sample.add_argument("--per-class", type=int, default=24, help="train images per class")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_sample_data)

    train = verbs.add_parser("train", help="fine-tune one model, tracked as one MLflow run")
    train.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    train.add_argument("--dry-run", action="store_true", help="backend=sagemaker: print the job definitions")
    train.set_defaults(func=cmd_launch)

    rerun = verbs.add_parser("rerun", help="train again here from a run's recorded config (key=value on top)")
    rerun.add_argument("run_id", help="MLflow run id of a training run")
    rerun.add_argument("overrides", nargs="*", help="key=value changes, e.g. trainer.max_epochs=3")
    rerun.add_argument(
        "--tracking-uri", help="MLflow store of the run (default: $MLFLOW_TRACKING_URI, ./mlflow.db)"
    )
    rerun.set_defaults(func=cmd_rerun)

    sweep = verbs.add_parser("sweep", help="Optuna study of train runs, nested under one MLflow parent run")
    sweep.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " sweep=default sweep.n_trials=40")
    sweep.add_argument("--dry-run", action="store_true", help="backend=sagemaker: print the job definitions")
    sweep.set_defaults(func=cmd_launch)

    jobs = verbs.add_parser(
        "jobs", help="this project's SageMaker training jobs: status, cost so far, MLflow run"
    )
    jobs.add_argument(
        "overrides", nargs="*", help="backend.region=... backend.job_prefix=... tracking_uri=..."
    )
    jobs.add_argument("--limit", type=int, default=50)
    jobs.set_defaults(func=cmd_jobs)

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

    promote = verbs.add_parser(
        "promote", help="gate the best sweep trial against @champion, register it @champion, deploy it"
    )
    promote.add_argument(
        "--dry-run",
        action="store_true",
        help="print the deployment plan (create/update/unchanged per resource), change nothing; "
        "with deploy.assume_absent=true no AWS credentials are needed",
    )
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote even when the candidate scores worse than @champion (tagged forced on the version)",
    )
    promote.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. deploy=sagemaker deploy.bucket=b"
    )
    promote.set_defaults(func=cmd_promote)

    teardown = verbs.add_parser(
        "teardown", help="delete what promotes deployed (found by their records in the model registry)"
    )
    teardown.add_argument(
        "--dry-run", action="store_true", help="print what would be deleted, change nothing"
    )
    teardown.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. deploy=sagemaker deploy.delete_s3=true"
    )
    teardown.set_defaults(func=cmd_teardown)

    invoke = verbs.add_parser(
        "invoke", help="send an image through the Lambda handler, print the top-k breeds"
    )
    invoke.add_argument("image", help="image file or https:// URL")
    invoke.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. deploy=sagemaker")
    invoke.set_defaults(func=cmd_invoke)

    predict = verbs.add_parser(
        "predict", help="top-k breeds of every image under a folder or s3:// prefix, to CSV"
    )
    predict.add_argument(
        "model",
        help="MLflow run id, models:/NAME@ALIAS, models:/NAME/VERSION, model.tar.gz or a package folder",
    )
    predict.add_argument("images", help="folder of images (searched recursively) or s3://bucket/prefix")
    predict.add_argument(
        "--out",
        default="predictions.csv",
        help="CSV to write (default: predictions.csv); deploy=sagemaker: the s3:// output prefix",
    )
    predict.add_argument("--top-k", type=positive_int, default=3, help="labels per image (default: 3)")
    predict.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    predict.add_argument(
        "--dry-run", action="store_true", help="deploy=sagemaker: print the CreateTransformJob request"
    )
    predict.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. tracking_uri=http://mlflow:5000")
    predict.set_defaults(func=cmd_predict)

    dashboard = verbs.add_parser("dashboard", help="optuna-dashboard on the sweep's study storage")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=positive_int, default=8081, help="port (default: 8081)")
    dashboard.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. sweep.storage=postgresql://..."
    )
    dashboard.set_defaults(func=cmd_dashboard)

    for verb in verbs.choices.values():
        add_verbosity(verb)
    return parser


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` on every verb, after the verb (``dogbreeds train -q ...``), where users type them."""
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
                          help="also show debug lines of dogbreeds' own modules")  # fmt: skip
    loudness.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                          help="show warnings and errors only")  # fmt: skip


def parse_args(argv: list[str] | None):
    """Overrides may stand before and after flags (``promote deploy=sagemaker --dry-run deploy.bucket=b``).

    argparse gives a ``nargs="*"`` positional only the run before the first flag; the rest comes back as
    unknown arguments, which are overrides too unless they look like flags.
    """
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    flags = [arg for arg in rest if arg.startswith("-")]
    if flags or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(flags or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    return args


def main(argv: list[str] | None = None) -> int:
    """A mistake the user can fix (``DogbreedsError``) is one line and exit code 2; anything else is a
    bug and propagates with its traceback."""
    args = parse_args(argv)
    logs.log_to_stderr(args.verbosity)
    try:
        args.func(args)
    except DogbreedsError as err:
        print(f"dogbreeds {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
