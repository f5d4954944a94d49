"""promote end to end: a real trained run -> gate -> registry -> local endpoint -> invoke through the handler."""

from __future__ import annotations

import json

import boto3
import mlflow
import pytest
import torch
from helpers.images import b64
from helpers.lambda_events import function_url, http_v2, rest_v1
from helpers.servers import free_port
from helpers.tracking_store import copy_tracking_store, sweep_with_trials
from mlflow import MlflowClient
from PIL import Image

from conf.loader import load_config
from conf.schema.choices import Direction
from deploy import gate, registry
from deploy.gate import PromotionRefused
from deploy.invoke import event_for, invoke_local, parse_response
from deploy.local_endpoint import background
from deploy.promote import promote
from lightning_app import tracking
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.module import BreedClassifier
from lightning_app.objective import Objective
from lightning_app.serving.preprocessing import eval_transform
from lightning_app.tracking import log_image_model


def correctly_classified_image(data_cfg, checkpoint: str, recorded_val_acc: float):
    """A validation image the trained checkpoint (not the serving path under test) gets right.

    The run recorded ``recorded_val_acc`` on this same split, so above zero there is one: the search is
    deterministic, and a run that got none right is a broken fixture, reported as such.
    """
    assert recorded_val_acc > 0, f"the shared run got no validation image right (val_acc={recorded_val_acc})"
    reference = BreedClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    pre = reference.preprocessing
    transform = eval_transform(pre)
    datamodule = DogBreedsDataModule(data_cfg)
    datamodule.setup("validate")
    model = reference.model.eval()
    for path, label in datamodule.splits["valid"].samples:
        with Image.open(path) as image, torch.inference_mode():
            logits = model(transform(image.convert("RGB")).unsqueeze(0))
        if int(logits.argmax()) == label:
            return path, datamodule.class_names[label]
    raise AssertionError(
        f"no validation image classified right, yet the run recorded val_acc={recorded_val_acc}"
    )


@pytest.mark.slow
def test_promote_local_then_invoke_returns_the_right_breed(trained_run, tmp_path, moto_endpoint):
    """The session's trained run, promoted from a copy of its tracking store (registering writes to it)."""
    result = trained_run.result
    overrides = [
        *trained_run.overrides,
        f"tracking_uri={copy_tracking_store(trained_run.tracking_uri, tmp_path)}",
        f"output_dir={tmp_path / 'outputs'}",
        f"deploy.local_port={free_port()}",
        "deploy.endpoint_name=dogs-e2e",
        f"deploy.run_id={result.run_id}",  # a train run, not a sweep trial: promoted only when named
    ]
    cfg = load_config(overrides)
    client = MlflowClient(cfg.tracking_uri)

    refused = cfg.copy()
    refused.deploy.gate_tolerance = -1.0  # no package can pass: the refusal path, with both numbers
    with pytest.raises(PromotionRefused, match=r"reproduces val_acc=\d\.\d{4} .* recorded \d\.\d{4}"):
        promote(refused, echo=lambda _: None)
    registered = [model.name for model in client.search_registered_models()]  # the store is shared
    assert cfg.deploy.registered_model not in registered  # refused before the registry was touched

    promoted = promote(cfg, echo=lambda _: None)
    try:
        assert promoted.run_id == result.run_id
        assert promoted.gate.passed and promoted.gate.images > 0
        champion = client.get_model_version_by_alias("dogbreeds", "champion")
        assert (champion.run_id, str(champion.version)) == (result.run_id, promoted.registration.version)

        path, breed = correctly_classified_image(cfg.data, result.best_checkpoint, result.metrics["val_acc"])
        state = background.read_state(cfg.output_dir)
        body = parse_response(invoke_local(event_for(str(path)), state["url"], state["endpoint_name"]))
        assert body["predictions"][0]["label"] == breed

        # every event format with an image body, through boto3 against the real local endpoint
        data = path.read_bytes()
        for event in (
            {"image": b64(data)},
            rest_v1(json.dumps({"image": b64(data)})),
            rest_v1(b64(data), content_type="image/jpeg", is_base64=True),
            http_v2(b64(data), content_type="application/x-image", is_base64=True),
            function_url(json.dumps({"image": b64(data)})),
            function_url(data, content_type="image/jpeg"),
        ):
            answer = parse_response(invoke_local(event, state["url"], state["endpoint_name"]))
            assert answer["predictions"][0]["label"] == breed
            assert answer["model"]["run_id"] == result.run_id
        too_big = invoke_local({"image": b64(b"x" * (7 * 1024 * 1024))}, state["url"], state["endpoint_name"])
        assert too_big["statusCode"] == 413

        # the handler's error path against the real endpoint: the model rejects a non-image, the server lives on
        bad = invoke_local({"image": "bm90IGFuIGltYWdl"}, state["url"], state["endpoint_name"])
        assert bad["statusCode"] == 400 and "the model rejected the image" in bad["body"]
        again = parse_response(invoke_local(event_for(str(path)), state["url"], state["endpoint_name"]))
        assert again["predictions"][0]["label"] == breed
        from dogbreeds.cli import main

        assert main(["teardown", "--dry-run", f"output_dir={cfg.output_dir}"]) == 0
        assert background.read_state(cfg.output_dir) == state  # a dry run stops nothing
    finally:
        stopped = background.stop(cfg.output_dir)
    assert stopped["run_id"] == result.run_id and background.read_state(cfg.output_dir) is None

    # the same run to SageMaker (moto): the real package goes to S3, the dry run first only prints the plan
    aws = cfg.copy()
    aws.deploy.target, aws.deploy.bucket = "sagemaker", "dogbreeds-e2e"
    aws.deploy.function.provisioned_concurrency = 0  # not in moto (Stubber-tested in test_aws_deploy)
    aws.deploy.autoscaling.measure_seconds = 1.0  # the target is measured: the local stack, briefly
    printed: list[str] = []
    promote(aws, dry_run=True, echo=printed.append)
    assert any("create    endpoint " in line for line in printed)
    assert any(line.startswith("autoscaling target ") and "in the local stack" in line for line in printed)
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []
    promoted_aws = promote(aws, echo=lambda _: None)
    deployed, measured = promoted_aws.deployment, promoted_aws.capacity
    # the measured target reaches the scaling policy, and the version records how it was obtained
    policy = boto3.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    target = policy["ScalingPolicies"][0]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
    assert measured.req_s > 0 and target == measured.target_per_minute
    version = MlflowClient(cfg.tracking_uri).get_model_version_by_alias("dogbreeds", "champion")
    assert float(version.tags["dogbreeds.capacity.target_per_minute"]) == target
    assert version.tags["dogbreeds.capacity.stack"] == "local"
    assert version.tags["dogbreeds.gate.stack"] == "local"
    assert (
        boto3.client("sagemaker").describe_endpoint(EndpointName="dogs-e2e")["EndpointStatus"] == "InService"
    )
    s3_object = boto3.client("s3").get_object(
        Bucket="dogbreeds-e2e", Key=deployed["model_data"].split("/", 3)[3]
    )
    assert s3_object["Body"].read() == promoted.tarball.read_bytes()
    assert deployed["record"].startswith(f"runs:/{result.run_id}/deployments/dogs-e2e/")

    # teardown through the CLI finds the record in the registry and deletes what the promote created
    aws_args = [f"tracking_uri={cfg.tracking_uri}", "deploy=sagemaker", "deploy.endpoint_name=dogs-e2e"]
    assert main(["teardown", *aws_args, "deploy.bucket=dogbreeds-e2e"]) == 0
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []
    assert "dogs-e2e-invoke" not in [
        f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]
    ]


def test_registry_moves_champion_and_keeps_previous(tmp_path, capfd):
    """Two runs with a logged model each; registering the second moves @champion and sets @previous.
    MLflow's own "already exists. Creating a new version" and "Created version" prints stay off the
    console (promote says it in one line)."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracking.ensure_experiment(client, "registry")
    run_ids = []
    placeholder = tmp_path / "best.ckpt"  # registering never loads the model
    torch.save({}, placeholder)
    for _ in range(2):
        run_id = client.create_run(experiment).info.run_id
        log_image_model(client, run_id, placeholder, {})
        client.set_terminated(run_id)
        run_ids.append(run_id)
    uri_before = mlflow.get_tracking_uri()
    capfd.readouterr()
    first = registry.register_champion(client, "dogs", run_ids[0])
    assert (first.version, first.previous_version) == ("1", None)
    assert mlflow.get_tracking_uri() == uri_before  # the fluent API's global URI is put back
    second = registry.register_champion(client, "dogs", run_ids[1])
    assert (second.version, second.previous_version) == ("2", "1")
    printed = capfd.readouterr()
    assert "already exists" not in printed.err and "Created version" not in printed.err
    again = registry.register_champion(client, "dogs", run_ids[1])  # idempotent: no version 3
    assert (again.version, again.previous_version) == ("2", "1")
    assert len(client.search_model_versions("name = 'dogs'")) == 2
    assert client.get_model_version_by_alias("dogs", "previous").run_id == run_ids[0]


def test_run_selection_takes_a_sweeps_best_trial_and_explains_itself(tmp_path):
    # The client API only: fluent set_experiment/set_tracking_uri would leak into later tests' runs.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    by_acc = Objective("val_acc", Direction.maximize)
    with pytest.raises(registry.RunSelectionError, match="no MLflow experiment named 'pick'"):
        registry.select_run(client, "pick", by_acc)
    experiment_id = tracking.ensure_experiment(client, "pick")
    stray = client.create_run(experiment_id).info.run_id  # a plain `train` run, better than any trial
    client.log_metric(stray, "val_acc", 0.99)
    client.set_terminated(stray)
    with pytest.raises(registry.RunSelectionError, match="no sweep in experiment 'pick'.*deploy.run_id"):
        registry.select_run(client, "pick", by_acc)

    first = sweep_with_trials(client, "pick", "first", {"val_acc": [0.3, 0.95, 0.6]})
    latest = sweep_with_trials(client, "pick", "latest", {"val_acc": [0.3, 0.9, 0.6]})
    best = registry.select_run(client, "pick", by_acc)
    assert best.run_id == latest[1] and "highest of 3 finished trials of sweep 'latest'" in best.reason
    lowest = registry.select_run(client, "pick", Objective("val_acc", Direction.minimize))
    assert lowest.run_id == latest[0] and "lowest of 3" in lowest.reason
    assert registry.select_run(client, "pick", by_acc, sweep="first").run_id == first[1]
    explicit = registry.select_run(client, "pick", by_acc, run_id=stray)
    assert explicit.run_id == stray and "given explicitly" in explicit.reason
    with pytest.raises(registry.RunSelectionError, match="sweep 'nope' in experiment 'pick' has no FINISHED"):
        registry.select_run(client, "pick", by_acc, sweep="nope")
    with pytest.raises(registry.RunSelectionError, match="that logged 'val_loss'.*the latest sweep"):
        registry.select_run(client, "pick", Objective("val_loss", Direction.minimize))
    with pytest.raises(registry.RunSelectionError, match="quotes or backslashes"):
        registry.select_run(client, "pick", by_acc, sweep="it's")
    with pytest.raises(registry.RunSelectionError, match="not found"):
        registry.select_run(client, "pick", by_acc, run_id="0" * 32)


def test_promote_ranks_runs_by_the_project_objective(make_cfg, tmp_path):
    """``sweep.metric``/``sweep.direction`` is the objective promote picks by (there is no deploy.metric)."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    trials = sweep_with_trials(client, "objective", "s", {"val_loss": [0.7, 0.2, 0.5]})
    cfg = make_cfg("sweep.metric=val_loss", "sweep.direction=minimize")
    choice = registry.select_run(client, "objective", Objective.of(cfg))
    assert choice.run_id == trials[1] and "val_loss=0.2000, the lowest of 3" in choice.reason
    assert "metric" not in cfg.deploy and "direction" not in cfg.deploy


def test_gate_reference_is_val_acc_at_the_epoch_the_objective_was_best(tmp_path):
    """The checkpoint kept is the objective's best epoch: val_acc there, not the run's best val_acc."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(tracking.ensure_experiment(client, "gate")).info.run_id
    #          step:   9     19    29    39
    val_loss = [0.90, 0.40, 0.55, 0.40]  # best at step 19 (the tie at 39 did not replace the checkpoint)
    val_acc = [0.30, 0.60, 0.80, 0.70]  # best at step 29
    for index, (loss, acc) in enumerate(zip(val_loss, val_acc, strict=True)):
        client.log_metric(run_id, "val_loss", loss, step=index * 10 + 9)
        client.log_metric(run_id, "val_acc", acc, step=index * 10 + 9)
    by_loss = Objective("val_loss", Direction.minimize)
    assert registry.recorded_at_best_epoch(client, run_id, by_loss, "val_acc") == 0.60
    by_acc = Objective("val_acc", Direction.maximize)
    assert registry.recorded_at_best_epoch(client, run_id, by_acc, "val_acc") == 0.80
    with pytest.raises(registry.RunSelectionError, match="no 'val_acc_top5' history"):
        registry.recorded_at_best_epoch(
            client, run_id, Objective("val_acc_top5", Direction.maximize), "val_acc"
        )
    with pytest.raises(registry.RunSelectionError, match="logged no 'test_acc' at step 19"):
        registry.recorded_at_best_epoch(client, run_id, by_loss, "test_acc")


def test_gate_refuses_when_no_validation_image_is_readable(make_cfg, tmp_path):
    root = tmp_path / "data"
    for split in ("train", "valid"):
        (root / split / "001.Akita").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "train" / "001.Akita" / "a.jpg")
    (root / "valid" / "001.Akita" / "cut.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    cfg = make_cfg(f"data.root={root}")
    with pytest.raises(PromotionRefused, match="no validation images"):
        gate.gate_samples(cfg.data)


def test_cli_verbs_explain_bad_requests(tmp_path, capsys):
    from dogbreeds.cli import main

    image = tmp_path / "dog.jpg"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["invoke", str(tmp_path / "missing.jpg"), f"output_dir={tmp_path}"]) == 2
    assert "neither an image file nor an https:// URL" in capsys.readouterr().err
    assert main(["invoke", str(image), f"output_dir={tmp_path}"]) == 2
    assert "run dogbreeds promote first" in capsys.readouterr().err
    assert main(["promote", "deploy.target=kubernetes"]) == 2
    assert "deploy.target=kubernetes: Invalid value 'kubernetes', expected one of [local, sagemaker]" in (
        capsys.readouterr().err
    )
    assert main(["teardown", f"output_dir={tmp_path}"]) == 0
    assert "no local endpoint" in capsys.readouterr().out
