"""``deploy.gate_stack=container``: the gate serves the package in the deploy image's own stack (its Python,
torch 2.6 / torchvision 0.21, TorchServe under AWS's toolkit), so a package that loads here but not
there is refused before any AWS call, with the versions named. The stack tests are slow: TorchServe
starts per package."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import torch

from conf.loader import ConfigError, load_config
from deploy import capacity, gate, gate_stack, promote
from deploy.image_stack import inference_image, torchserve
from deploy.packaging.builder import build_package, unpack, write_tarball


@pytest.fixture(scope="module")
def container_cfg():
    cfg = load_config(["deploy.gate_stack=container"])
    if inference_image.inference_image(cfg.deploy).built_python() is None:
        pytest.fail("the inference-image stack is not built: python -m deploy.image_stack", pytrace=False)
    return cfg


@pytest.fixture(scope="module")
def candidate(trained_run, tmp_path_factory):
    """The trained run's package and the validation split the gate scores it on."""
    root = tmp_path_factory.mktemp("gate-stack")
    tarball = build_package(trained_run.result.best_checkpoint, root / "model.tar.gz")
    samples = gate.gate_samples(load_config(trained_run.overrides).data)
    return tarball, samples


def weights_only_newer_torch_reads(tarball, out):
    """The same package with one tensor stored as float8_e8m0fnu: a dtype torch 2.7 introduced (a real
    low-precision weights format), which this environment's torch loads and the image's 2.6 cannot."""
    package = unpack(tarball, out.parent / "unpacked")
    state = torch.load(package / "model.pt", weights_only=True)
    name = next(key for key, tensor in state.items() if tensor.is_floating_point())
    state[name] = state[name].to(torch.float8_e8m0fnu)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    metadata = json.loads((package / "metadata.json").read_text())
    files = {str(p.relative_to(package)): p.read_bytes() for p in package.rglob("*") if p.is_file()}
    files["model.pt"] = buffer.getvalue()
    metadata["weights"]["sha256"] = hashlib.sha256(files["model.pt"]).hexdigest()
    files["metadata.json"] = json.dumps(metadata).encode()
    return write_tarball(out, files)


@pytest.mark.slow
def test_the_image_stack_scores_a_package_as_the_local_stack_does(container_cfg, candidate):
    tarball, samples = candidate
    environment = promote.measuring_environment(tarball, container_cfg)
    assert environment["OMP_NUM_THREADS"] and environment["SAGEMAKER_TS_BATCH_SIZE"] == "1"
    in_image = gate_stack.scorer(container_cfg.deploy, environment)(tarball, samples)
    assert in_image == gate.package_accuracy(tarball, samples)
    tags = gate_stack.stack_tags(container_cfg.deploy)
    assert tags == {"stack": "container", "torch": "2.6.0", "torchvision": "0.21.0"}


@pytest.mark.slow
def test_the_gate_refuses_a_package_the_image_cannot_load(container_cfg, candidate, tmp_path):
    tarball, samples = candidate
    newer = weights_only_newer_torch_reads(tarball, tmp_path / "model.tar.gz")
    assert gate.package_accuracy(newer, samples) >= 0  # this environment's torch loads it
    score = gate_stack.scorer(container_cfg.deploy, promote.measuring_environment(newer, container_cfg))
    with pytest.raises(gate.PromotionRefused) as refused:
        gate.check(newer, samples, recorded=1.0, tolerance=1.0, score=score)
    message = str(refused.value)
    assert (
        "does not load in the deploy image's stack (torch 2.6.0 / torchvision 0.21.0, Python 3.12)" in message
    )
    assert "float8_e8m0fnu" in message and "not deploying" in message


@pytest.mark.slow
def test_the_capacity_of_the_image_stack_becomes_the_scaling_target(container_cfg, candidate):
    tarball, samples = candidate
    cfg = load_config(
        [
            "deploy.gate_stack=container", "deploy.instance_type=ml.c5.xlarge",
            "deploy.autoscaling.measure_seconds=2", "deploy.autoscaling.measure_concurrency=2",
        ]
    )  # fmt: skip
    measured = promote.measure_capacity(
        tarball, samples[0][0], cfg, promote.measuring_environment(tarball, cfg)
    )
    assert measured.stack == "container" and measured.instance_vcpus == 4 and measured.req_s > 0
    expected = measured.req_s * 4 / capacity.host_vcpus() * 0.7 * 60
    assert measured.target_per_minute == pytest.approx(expected, abs=0.06)
    assert measured.tags()["dogbreeds.capacity.stack"] == "container"


def test_the_stack_that_is_not_built_is_named_with_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("DOGBREEDS_INFERENCE_IMAGE_ENV", str(tmp_path / "absent"))
    with pytest.raises(gate_stack.torchserve.StackUnavailable, match=r"python -m deploy.image_stack"):
        gate_stack.python_of(load_config(["deploy.gate_stack=container"]).deploy)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("deploy.autoscaling.headroom=0", r"headroom must be in \(0, 1\]"),
        ("deploy.autoscaling.target_invocations_per_instance=-5", "must be > 0"),
        ("deploy.autoscaling.measure_concurrency=0", "measure_concurrency must be >= 1"),
    ],
)
def test_bad_capacity_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        capacity.check_settings(load_config([override]).deploy.autoscaling)


def test_an_unknown_gate_stack_is_refused():
    with pytest.raises(ConfigError, match="gate_stack"):
        load_config(["deploy.gate_stack=docker"])


@pytest.mark.slow
def test_a_container_gated_sagemaker_promote_serves_the_candidate_once(
    container_cfg, trained_run, tmp_path, monkeypatch
):
    """The gate and the capacity measurement share one TorchServe (its start is most of their time)."""
    starts = []
    real_serve = torchserve.serve

    def counted_serve(*args, **kwargs):
        starts.append(args[1])  # the package folder
        return real_serve(*args, **kwargs)

    monkeypatch.setattr(torchserve, "serve", counted_serve)
    overrides = [
        *trained_run.overrides,
        f"output_dir={tmp_path}",
        f"deploy.run_id={trained_run.result.run_id}",
    ]
    overrides += ["deploy=sagemaker", "deploy.gate_stack=container", "deploy.assume_absent=true"]
    overrides += [
        "deploy.bucket=b",
        "deploy.registered_model=dogs-once",
        "deploy.autoscaling.measure_seconds=1",
    ]
    printed = []
    promoted = promote.promote(load_config(overrides), dry_run=True, echo=printed.append)
    assert promoted.gate.passed and promoted.capacity.stack == "container" and promoted.capacity.req_s > 0
    assert len(starts) == 1  # no champion yet under this name: the candidate only, served once
    assert any("gate passed" in line and "container stack" in line for line in printed)
