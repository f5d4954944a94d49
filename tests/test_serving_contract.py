"""One serving contract in both runtimes: our local endpoint and AWS's PyTorch serving stack (TorchServe +
the ``sagemaker-pytorch-inference`` toolkit at the deploy image's versions, through the toolkit's own entry
point) answer the same package with the same predictions, options and status codes.

The AWS stack gets the environment promote gives the SageMaker Model, so the limits reach it the way they
reach the endpoint in AWS. Slow: the first run builds the inference-image environment (cached).
"""

from __future__ import annotations

import json

import pytest
from helpers.images import distinct_jpegs
from helpers.serving_contract import B64, BAD_INPUTS, CUSTOM, GOOD, error_message, invoke

from conf.loader import load_config
from deploy import promote
from deploy.image_stack.environment import ImageEnvError
from deploy.image_stack.inference_image import inference_image, versions
from deploy.image_stack.torchserve import serve
from deploy.local_endpoint.process import start_in_thread
from deploy.packaging.builder import build_package, unpack

pytestmark = pytest.mark.slow
RUNTIMES = ["local", "aws-stack"]
DEPLOY = load_config([]).deploy  # the default deploy image's versions


@pytest.fixture(scope="module")
def runtimes(trained_run, tmp_path_factory):
    """Both runtimes serving the same package, with the same serve limits."""
    try:
        python = inference_image(DEPLOY).build()
    except ImageEnvError as err:
        pytest.fail(f"{err}\n(build it once with: python -m deploy.image_stack)", pytrace=False)
    root = tmp_path_factory.mktemp("contract")
    cfg = load_config(["serve.port=0", "deploy.target=sagemaker", "deploy.instance_type=ml.m5.large"])
    tarball = build_package(trained_run.result.best_checkpoint, root / "model.tar.gz")
    package = unpack(tarball, root / "package")
    local = start_in_thread(package, cfg.serve)
    base = root / "aws"
    base.mkdir()
    try:
        environment = promote.serving_environment(tarball, cfg.serve, cfg.deploy)
        with serve(python, package, base, environment) as url:
            yield {"local": local.url, "aws-stack": url}
    finally:
        local.stop()


def predictions(answer: dict) -> list[tuple[str, float]]:
    return [(p["label"], p["probability"]) for p in answer["predictions"]]


def test_the_stack_runs_the_deploy_images_versions(runtimes):
    import subprocess

    python, image = inference_image(DEPLOY).built_python(), versions(DEPLOY)
    done = subprocess.run(
        [str(python), "-c", "import sys, torch, torchvision; print(sys.version[:4], torch.__version__, torchvision.__version__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    py, torch_version, torchvision_version = done.stdout.split()
    assert (py, torch_version.split("+")[0], torchvision_version.split("+")[0]) == (
        image.python, image.torch, image.torchvision,
    )  # fmt: skip


def test_predictions_equal_the_local_endpoint(runtimes):
    for image in distinct_jpegs(3):
        answers = {name: json.loads(invoke(url, image, "image/jpeg")[1]) for name, url in runtimes.items()}
        local, aws = predictions(answers["local"]), predictions(answers["aws-stack"])
        assert [label for label, _ in aws] == [label for label, _ in local]
        assert [p for _, p in aws] == pytest.approx([p for _, p in local], abs=1e-4)
        assert answers["aws-stack"]["model"] == answers["local"]["model"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_custom_attributes_reach_the_package(runtimes, runtime):
    status, text = invoke(runtimes[runtime], GOOD, "image/jpeg", {CUSTOM: "top_k=2,logits=true"})
    answer = json.loads(text)
    assert status == 200
    assert len(answer["predictions"]) == 2
    assert len(answer["logits"]) > 2  # one per class


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_json_options_and_batches(runtimes, runtime):
    body = json.dumps([{"image": B64, "top_k": 1}, {"image": B64, "logits": True}]).encode()
    status, text = invoke(runtimes[runtime], body, "application/json", {CUSTOM: "top_k=3"})
    first, second = json.loads(text)["results"]
    assert status == 200
    assert (len(first["predictions"]), len(second["predictions"])) == (1, 3)
    assert "logits" not in first and len(second["logits"]) > 3


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_gets_the_same_status_in_both(runtimes, runtime, case):
    body, content_type, headers, status, phrase = BAD_INPUTS[case]
    got_status, text = invoke(runtimes[runtime], body, content_type, headers)
    assert got_status == status, text[:2000]
    if phrase is not None:
        assert phrase in error_message(text)
    assert invoke(runtimes[runtime], GOOD, "image/jpeg")[0] == 200
