"""One photo, one answer: a timm model's run gives the same top-1 label and probability through
``dogbreeds predict``, the local endpoint and ``mlflow models serve`` of the run's model (within 1e-4), and
through AWS's PyTorch serving stack, at the deploy image's other torch/torchvision (within 5e-3).

The stack's environment has no timm and no package index: the package must carry what it needs, as it
must on an endpoint with network isolation. Slow: it trains a tiny timm model and starts three servers.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess

import pytest
from helpers.servers import free_port, mlflow_models_serve, post
from helpers.training import TINY_RUN, run_overrides
from PIL import Image

from conf.loader import load_config
from deploy import promote
from deploy.image_stack.inference_image import inference_image
from deploy.image_stack.torchserve import serve
from deploy.local_endpoint.process import start_in_thread
from deploy.packaging.builder import build_package, unpack
from dogbreeds.cli import main
from lightning_app.train import train

pytestmark = pytest.mark.slow
skimage_data = pytest.importorskip("skimage.data", reason="the real photo comes from scikit-image")


@pytest.fixture(scope="module")
def timm_run(sample_root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("timm-run")
    overrides = run_overrides(TINY_RUN, sample_root, workdir, "model.arch=timm/test_efficientnet")
    cfg = load_config(overrides)
    return train(cfg), cfg


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> bytes:
    """scikit-image's chelsea (a real photograph of a cat, 451x300) as the JPEG a client would send."""
    out = io.BytesIO()
    Image.fromarray(skimage_data.chelsea()).save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_every_runtime_gives_the_photo_the_same_answer(timm_run, photo, tmp_path):
    result, cfg = timm_run
    package = unpack(build_package(result.best_checkpoint, tmp_path / "model.tar.gz"), tmp_path / "package")
    assert (package / "code" / "timm" / "__init__.py").is_file()
    answers = {}

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "chelsea.jpg").write_bytes(photo)
    table = tmp_path / "predictions.csv"
    argv = ["predict", result.run_id, str(folder), "--out", str(table), "--top-k", "1"]
    assert main([*argv, f"tracking_uri={cfg.tracking_uri}"]) == 0
    with table.open() as rows:
        (row,) = csv.DictReader(rows)
    answers["predict"] = (row["label_1"], float(row["probability_1"]))

    endpoint = start_in_thread(package, load_config(["serve.port=0"]).serve)
    try:
        status, answer = post(f"{endpoint.url}/invocations", photo, "image/jpeg")
    finally:
        endpoint.stop()
    assert status == 200, answer
    answers["local endpoint"] = (answer["predictions"][0]["label"], answer["predictions"][0]["probability"])

    body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(photo).decode()]]}}
    model_uri = f"runs:/{result.run_id}/model"
    with mlflow_models_serve(model_uri, cfg.tracking_uri, tmp_path / "mlflow-serve.log") as url:
        status, answer = post(url, json.dumps(body).encode(), "application/json")
    assert status == 200, answer
    (prediction,) = answer["predictions"]
    answers["mlflow models serve"] = (prediction["labels"][0], prediction["probabilities"][0])

    expected = answers["local endpoint"]
    for runtime, (label, probability) in answers.items():
        assert label == expected[0], f"{runtime} says {label}, the local endpoint {expected[0]}"
        assert probability == pytest.approx(expected[1], abs=1e-4), runtime

    aws_label, aws_probability = served_by_aws_stack(package, tmp_path, photo)
    assert aws_label == expected[0]
    assert aws_probability == pytest.approx(expected[1], abs=5e-3)


def served_by_aws_stack(package, tmp_path, photo: bytes) -> tuple[str, float]:
    cfg = load_config(["deploy.target=sagemaker", "deploy.instance_type=ml.m5.large"])
    python = inference_image(cfg.deploy).build()
    no_timm = subprocess.run([str(python), "-c", "import timm"], capture_output=True)
    assert no_timm.returncode != 0, "the stack has timm of its own: it would not show the package carries it"
    environment = {
        **promote.serving_environment(tmp_path / "model.tar.gz", cfg.serve, cfg.deploy),
        # No package index, as on an endpoint with network isolation: an install at start would fail.
        "PIP_INDEX_URL": f"http://127.0.0.1:{free_port()}/simple",
        "PIP_NO_INDEX": "1",
    }
    base = tmp_path / "aws"
    base.mkdir()
    with serve(python, package, base, environment) as url:
        status, answer = post(f"{url}/invocations", photo, "image/jpeg")
    assert status == 200, answer
    return answer["predictions"][0]["label"], answer["predictions"][0]["probability"]
