"""``dogbreeds predict``: a folder of images (one corrupt) to a CSV, from a package, a run id or the registry;
bad inputs answered with one line."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from helpers.images import distinct_jpegs

from dogbreeds.cli import main


@pytest.fixture
def images(tmp_path):
    """Three distinct JPEGs, two in a nested folder, a corrupt JPEG and a text file that is not
    an image (ignored: not an image suffix)."""
    folder = tmp_path / "to-score"
    (folder / "nested").mkdir(parents=True)
    for i, jpeg in enumerate(distinct_jpegs(3)):
        (folder / ("nested" if i else ".") / f"dog{i}.jpg").write_bytes(jpeg)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def read_rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_a_folder_with_a_corrupt_file(served_package, images, tmp_path, capsys):
    out = tmp_path / "out" / "predictions.csv"
    assert main(["predict", str(served_package), str(images), "--out", str(out), "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    assert "3 image(s) scored, 1 skipped" in captured.out
    assert "WARNING dogbreeds.cli: skipped" in captured.err and "broken.jpg" in captured.err
    rows = read_rows(out)
    assert [row["path"] for row in rows] == ["broken.jpg", "dog0.jpg", "nested/dog1.jpg", "nested/dog2.jpg"]
    broken, *good = rows
    assert broken["error"] and not broken["label_1"]
    for row in good:
        assert row["error"] == ""
        assert row["label_1"] and row["label_2"] and row["label_1"] != row["label_2"]
        assert 1.0 >= float(row["probability_1"]) >= float(row["probability_2"]) >= 0.0
    assert list(rows[0]) == ["path", "error", "label_1", "probability_1", "label_2", "probability_2"]


@pytest.mark.slow
def test_predict_from_a_run_id_and_the_registry_agree(trained_run, served_package, images, tmp_path):
    from mlflow import MlflowClient

    (images / "broken.jpg").unlink()
    tracking = f"tracking_uri={trained_run.tracking_uri}"
    client = MlflowClient(trained_run.tracking_uri)
    name = "predict-test"
    client.create_registered_model(name)
    run_id = trained_run.result.run_id
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", version.version)

    results = {}
    for source in (
        str(served_package),
        run_id,
        f"models:/{name}@champion",
        f"models:/{name}/{version.version}",
    ):
        out = tmp_path / f"{len(results)}.csv"
        assert main(["predict", source, str(images), "--out", str(out), tracking]) == 0
        results[source] = [
            (row["path"], row["label_1"], row["label_2"], row["label_3"]) for row in read_rows(out)
        ]
    first, *others = results.values()
    assert len(first) == 3 and all(other == first for other in others)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["PACKAGE", "MISSING", "--top-k", "1"], "image folder"),
        (["PACKAGE", "EMPTY"], "no images"),
        (["nosuchrun0000", "IMAGES"], "nosuchrun0000"),
        (["models:/nobody@champion", "IMAGES"], "models:/nobody@champion"),
        (["models:/nobody", "IMAGES"], "models:/NAME@ALIAS or models:/NAME/VERSION"),
        (["MISSING.tar.gz", "IMAGES"], "missing.tar.gz"),
    ],
)
def test_bad_inputs_are_one_line(served_package, images, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    places = {
        "PACKAGE": str(served_package),
        "IMAGES": str(images),
        "MISSING": str(tmp_path / "missing"),
        "EMPTY": str(tmp_path / "empty"),
        "MISSING.tar.gz": str(tmp_path / "missing.tar.gz"),
    }
    argv = ["predict", *(places.get(a, a) for a in args), "--out", str(tmp_path / "p.csv")]
    assert main([*argv, f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.splitlines()[-1]  # after MLflow's INFO lines where this test process imported it verbosely
    assert last.startswith("dogbreeds predict: error: ") and message in last
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("top_k", ["0", "-1", "two", "²"])
def test_bad_top_k_is_refused_by_the_parser(served_package, images, capsys, top_k):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(served_package), str(images), f"--top-k={top_k}"])
    assert exit_info.value.code == 2
    assert "--top-k: must be a positive integer" in capsys.readouterr().err


def test_predict_an_s3_prefix(served_package, images, moto_endpoint, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="predict-images")
    for path in images.rglob("*.jpg"):
        s3.upload_file(str(path), "predict-images", f"batch/{path.relative_to(images).as_posix()}")
    shutil.rmtree(images)
    out = tmp_path / "p.csv"
    argv = ["predict", str(served_package), "s3://predict-images/batch", "--out", str(out)]
    assert main([*argv, f"data.cache_dir={tmp_path / 'cache'}"]) == 0
    rows = read_rows(out)
    assert [row["path"] for row in rows] == ["broken.jpg", "dog0.jpg", "nested/dog1.jpg", "nested/dog2.jpg"]
    assert rows[0]["error"] and all(row["label_1"] for row in rows[1:])


@pytest.fixture
def deployed_version(tmp_path):
    """A registered version whose run carries a promote deployment record naming its SageMaker Model (as
    ``apply_and_record`` writes it), tracked in this test's SQLite file."""
    from mlflow import MlflowClient

    from deploy.aws import records

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("transform", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.create_registered_model("dogbreeds")
    version = client.create_model_version("dogbreeds", f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias("dogbreeds", "champion", version)
    step = {"kind": "sagemaker-model", "identity": {"ModelName": "dogbreeds-abc123"}}
    plan = {"endpoint": "dogbreeds", "run_id": run_id, "steps": [step]}
    records.save_record(client, "dogbreeds", version, records.deployment_record(plan, [], records.now()))
    return tracking_uri, run_id


TRANSFORM = ["deploy=sagemaker", "deploy.instance_type=ml.c5.xlarge", "--top-k", "4"]


@pytest.mark.slow
def test_transform_dry_run_prints_the_request(deployed_version, capsys):
    tracking_uri, run_id = deployed_version
    argv = ["predict", "models:/dogbreeds@champion", "s3://in/images", "--out", "s3://out/preds", "--dry-run"]
    assert main([*argv, *TRANSFORM, f"tracking_uri={tracking_uri}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[dry-run] sagemaker create_transform_job\n")
    request = json.loads(out.split("\n", 1)[1])
    assert request["ModelName"] == "dogbreeds-abc123"
    assert request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://in/images"
    assert request["TransformOutput"]["S3OutputPath"] == "s3://out/preds"
    assert request["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1}
    assert request["Environment"] == {"DOGBREEDS_TOP_K": "4"}
    assert {"Key": "run-id", "Value": run_id} in request["Tags"]


@pytest.mark.slow
def test_transform_job_is_created_and_read_back(deployed_version, fresh_aws_account, capsys):
    import boto3

    tracking_uri, run_id = deployed_version
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName="dogbreeds-abc123",
        ExecutionRoleArn=f"arn:aws:iam::{fresh_aws_account}:role/sm",
        PrimaryContainer={
            "Image": "123.dkr.ecr.us-east-1.amazonaws.com/pytorch:2",
            "ModelDataUrl": "s3://m/a",
        },
    )
    argv = ["predict", run_id, "s3://in/images", "--out", "s3://out/preds", *TRANSFORM]
    assert main([*argv, f"tracking_uri={tracking_uri}"]) == 0
    out = capsys.readouterr().out
    name = out.split()[2].rstrip(":")
    job = sagemaker.describe_transform_job(TransformJobName=name)
    assert job["ModelName"] == "dogbreeds-abc123"
    assert job["TransformOutput"]["S3OutputPath"] == "s3://out/preds"
    assert job["TransformResources"]["InstanceType"] == "ml.c5.xlarge"
    assert job["TransformJobArn"] in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["RUN", "s3://in/x", "--out", "predictions.csv"], "must be s3://bucket/prefix"),
        (["otherrun", "s3://in/x", "--out", "s3://o/p"], "run dogbreeds promote deploy=sagemaker first"),
    ],
)
def test_transform_bad_inputs(deployed_version, capsys, args, message):
    tracking_uri, run_id = deployed_version
    argv = ["predict", *(run_id if a == "RUN" else a for a in args), "--dry-run", *TRANSFORM]
    assert main([*argv, f"tracking_uri={tracking_uri}"]) == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_dry_run_without_deploy_sagemaker_is_refused(capsys):
    assert main(["predict", "some-run", "some-folder", "--dry-run"]) == 2
    assert "add deploy=sagemaker" in capsys.readouterr().err
