"""Where the gates serve a package (``deploy.gate_stack``): in this process, or in the deploy image's stack.

``local`` runs the package's serving code here, at this environment's torch/torchvision: fast, nothing
to set up. ``container`` runs it the way the SageMaker endpoint will: the image's Python, torch and
torchvision, TorchServe and AWS's inference toolkit (``deploy/image_stack``), with the Model's own
environment. A package the image cannot load (a weights format or architecture only the newer versions
have) is then refused before any AWS call, naming the versions, instead of failing on the endpoint.
Both the candidate and the champion are scored by the same stack, so the comparison stays fair.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

from conf.schema.choices import GateStack
from deploy import gate
from deploy.image_stack import inference_image, torchserve
from deploy.local_endpoint import process
from deploy.packaging import IMAGE_TYPE
from deploy.packaging.builder import unpack

Samples = list[tuple[Path, str]]


def python_of(deploy_cfg) -> Path:
    """The built inference-image environment's python; refuses with how to build it."""
    python = inference_image.inference_image(deploy_cfg).built_python()
    if python is None:
        raise torchserve.StackUnavailable(
            f"deploy.gate_stack=container serves the package in the deploy image's stack "
            f"({inference_image.describe(deploy_cfg)}), which is not built here: build it once with "
            f"`python -m deploy.image_stack` (minutes, a few GB), or use deploy.gate_stack=local"
        )
    return python


@contextlib.contextmanager
def served_in_image(tarball: Path, deploy_cfg, environment: dict[str, str]):
    """The package served by TorchServe under the toolkit at the image's versions; yields its URL."""
    python = python_of(deploy_cfg)
    with tempfile.TemporaryDirectory(prefix="dogbreeds-stack-") as tmp:
        package_dir = unpack(tarball, Path(tmp) / "package")
        try:
            torchserve.load_check(python, package_dir, environment)
        except torchserve.StackFailed as failed:
            raise gate.PromotionRefused(
                f"the package does not load in the deploy image's stack "
                f"({inference_image.describe(deploy_cfg)}): {failed}; not deploying"
            ) from None
        base = Path(tmp) / "base"
        base.mkdir()
        with torchserve.serve(python, package_dir, base, environment) as url:
            yield url


def http_accuracy(url: str, samples: Samples) -> float:
    """Share of ``samples`` whose top label the served endpoint gets right, one request per image; an image
    the serving code refuses (a 4xx) counts as wrong, as in ``gate.package_accuracy``."""
    correct = 0
    for path, expected in samples:
        request = urllib.request.Request(
            f"{url}/invocations", data=path.read_bytes(),
            headers={"Content-Type": IMAGE_TYPE, "Accept": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                correct += json.loads(response.read())["predictions"][0]["label"] == expected
        except urllib.error.HTTPError as refused:
            if not 400 <= refused.code < 500:
                raise
    return correct / len(samples)


def scorer(deploy_cfg, environment: dict[str, str]) -> Callable[[Path, Samples], float]:
    """``score(tarball, samples) -> accuracy`` in the configured stack."""
    if deploy_cfg.gate_stack == GateStack.local:
        return gate.package_accuracy

    def in_image(tarball: Path, samples: Samples) -> float:
        with served_in_image(tarball, deploy_cfg, environment) as url:
            return http_accuracy(url, samples)

    return in_image


def stack_tags(deploy_cfg) -> dict[str, str]:
    """Which stack scored the packages, and its versions: recorded on the model version."""
    if deploy_cfg.gate_stack == GateStack.local:
        versions = torch.__version__.split("+")[0], torchvision.__version__.split("+")[0]
    else:
        image = inference_image.versions(deploy_cfg)
        versions = image.torch, image.torchvision
    return {"stack": str(deploy_cfg.gate_stack), "torch": versions[0], "torchvision": versions[1]}


@contextlib.contextmanager
def served(tarball: Path, deploy_cfg, environment: dict[str, str]):
    """The package behind an HTTP URL in the configured stack (for measuring it): the image's TorchServe
    stack, or our local endpoint as a separate process (so the measuring clients do not share its GIL)."""
    if deploy_cfg.gate_stack == GateStack.container:
        with served_in_image(tarball, deploy_cfg, environment) as url:
            yield url
        return
    port = torchserve.free_port()
    with tempfile.TemporaryDirectory(prefix="dogbreeds-measure-") as tmp:
        proc = process.launch(str(tarball), [], Path(tmp) / "endpoint.log", port)
        url = f"http://127.0.0.1:{port}"
        try:
            process.wait_until_ready(url, alive=lambda: proc.poll() is None)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=60)
