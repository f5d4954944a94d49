"""model.tar.gz: built from a real training run, checked against the checkpoint it came from, and driven
the way SageMaker's inference toolkit drives ``code/inference.py``."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from helpers.images import b64
from PIL import ExifTags, Image
from torchvision.transforms import v2

from deploy.local_endpoint.server import load_serving_module
from deploy.packaging.builder import PackageError, build_package, unpack
from lightning_app.checkpoints import network_state_dict
from lightning_app.images import load_rgb
from lightning_app.module import BreedClassifier
from lightning_app.serving.preprocessing import eval_transform

SERVING_DIR = Path(__file__).resolve().parent.parent / "lightning_app" / "serving"
STDLIB = set(sys.stdlib_module_names)


@pytest.fixture(scope="module")
def package(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("package")
    tarball = build_package(
        trained_run.result.run_id,
        root / "model.tar.gz",
        tracking_uri=trained_run.tracking_uri,
        model_version="7",
    )
    return tarball, unpack(tarball, root / "unpacked")


def test_tarball_layout_and_metadata(trained_run, package):
    result = trained_run.result
    tarball, folder = package
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == [
            "code/image_decode.py",
            "code/inference.py",
            "code/limits.py",
            "code/preprocessing.py",
            "code/request_codec.py",
            "code/safe_fetch.py",
            "metadata.json",
            "model.pt",
        ]
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["arch"] == "resnet18"
    assert metadata["class_names"] == sorted(metadata["class_names"]) and len(metadata["class_names"]) == 4
    assert metadata["preprocessing"] == {"image_size": 32, "resize": 37, "mean": [0.485, 0.456, 0.406],
                                         "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"}  # fmt: skip
    assert metadata["source"]["run_id"] == result.run_id
    assert metadata["model_version"] == "7"
    assert metadata["metrics"]["val_acc"] == pytest.approx(result.metrics["val_acc"])
    assert metadata["weights"]["sha256"] == hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    # Serving code is copied verbatim; the weights are plain tensors (weights_only loading works).
    for name in ("inference.py", "request_codec.py", "image_decode.py", "limits.py", "safe_fetch.py"):
        assert (folder / "code" / name).read_bytes() == (SERVING_DIR / name).read_bytes()
    state = torch.load(folder / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_packaged_model_gives_the_checkpoint_top_k(trained_run, package, sample_root):
    result = trained_run.result
    _, folder = package
    serving = load_serving_module(folder)
    model = serving.load_model(folder, serving.ServingSettings(top_k=3), device="cpu")
    reference = BreedClassifier.load_from_checkpoint(
        result.best_checkpoint, map_location="cpu", weights_only=False
    )
    reference.eval()
    pre = reference.preprocessing
    transform = eval_transform(pre)
    paths = sorted((sample_root / "test").rglob("*.jpg"))[:8]
    with torch.inference_mode():
        expected = reference(torch.stack([transform(load_rgb(p, pre["resize"])) for p in paths]))
    request = serving.decode_request(
        json.dumps([{"image": b64(p.read_bytes())} for p in paths]), "application/json", model
    )
    prediction = serving.predict_many([request], model)[0]
    torch.testing.assert_close(prediction.logits, expected, rtol=1e-4, atol=1e-4)
    answer = json.loads(serving.encode_response(prediction, "application/json"))
    for result_row, logits in zip(answer["results"], expected, strict=True):
        assert [p["index"] for p in result_row["predictions"]] == logits.topk(3).indices.tolist()


def test_inference_py_driven_like_the_sagemaker_toolkit(package, sample_root, tmp_path):
    """A fresh interpreter with only code/ on the path, environment settings, the four functions in order."""
    _, folder = package
    image = sorted((sample_root / "test").rglob("*.jpg"))[0]
    script = f"""
import json, inference
model = inference.model_fn({str(folder)!r})
data = inference.input_fn(open({str(image)!r}, "rb").read(), "image/jpeg")
body, content_type = inference.output_fn(inference.predict_fn(data, model), "*/*")
try:
    inference.input_fn(b"not an image", "image/jpeg")
except inference.RequestError as err:
    print(json.dumps({{"body": json.loads(body), "type": content_type, "error": [err.status, str(err)]}}))
"""
    env = {"PYTHONPATH": str(folder / "code"), "DOGBREEDS_TOP_K": "2", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["type"] == "application/json"
    assert len(answer["body"]["predictions"]) == 2  # DOGBREEDS_TOP_K from the model's environment
    assert answer["body"]["model"]["version"] == "7"
    assert answer["error"][0] == 400 and "not a decodable image" in answer["error"][1]


def _sideways(upright: Image.Image, fmt: str, orientation: int | None) -> bytes:
    """``upright`` stored turned a quarter, as a camera held sideways does, with or without the EXIF tag
    (orientation 6: "rotate 90 degrees clockwise to display") that says how to turn it back."""
    exif = Image.Exif()
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buffer, fmt, exif=exif, quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_rotated_image_predicts_like_the_upright_one_in_training_and_serving(
    package, sample_root, fmt, tmp_path
):
    _, folder = package
    serving = load_serving_module(folder)
    model = serving.load_model(folder, serving.ServingSettings(), device="cpu")
    path = sorted((sample_root / "test").rglob("*.jpg"))[0]
    upright = Image.open(path).convert("RGB").resize((96, 64))
    buffer = io.BytesIO()
    upright.save(buffer, fmt, quality=95)

    def logits(data: bytes) -> torch.Tensor:
        request = serving.decode_request(data, f"image/{fmt.lower()}", model)
        return serving.predict_many([request], model)[0].logits

    expected = logits(buffer.getvalue())
    scale = (
        expected.abs().max()
    )  # differences relative to the logits' scale: a logit near 0 has no relative error
    tolerance = 1e-5 if fmt == "PNG" else 0.01  # a JPEG of the turned pixels is re-quantised
    turned = logits(_sideways(upright, fmt, 6))
    assert (turned - expected).abs().max() / scale < tolerance
    ignored = logits(_sideways(upright, fmt, None))  # the turn matters: ignoring the tag changes the answer
    assert (ignored - expected).abs().max() / scale > 5 * tolerance
    stored = tmp_path / f"sideways.{fmt.lower()}"
    stored.write_bytes(_sideways(upright, fmt, 6))
    training_view = v2.functional.pil_to_tensor(
        load_rgb(stored, None)
    ).float()  # training turns it the same way
    upright_view = v2.functional.pil_to_tensor(
        Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    ).float()
    assert training_view.shape == upright_view.shape
    assert (training_view - upright_view).abs().mean() < (0.01 if fmt == "PNG" else 3.0)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        # timm: only for timm models, whose packages carry it (code/timm/).
        (
            "inference.py",
            {"torch", "torchvision", "timm", "safe_fetch", "request_codec", "limits", "preprocessing"},
        ),
        ("preprocessing.py", {"torch", "torchvision"}),
        ("request_codec.py", {"torch", "PIL", "safe_fetch", "image_decode", "limits", "inference"}),
        ("image_decode.py", {"PIL", "limits", "inference"}),  # no torch: decoding threads do no tensor work
        ("limits.py", {"sagemaker_inference"}),
        ("safe_fetch.py", set()),  # also shipped in the Lambda zip: standard library only
    ],
)
def test_serving_code_imports_only_what_its_runtimes_have(name, allowed):
    tree = ast.parse((SERVING_DIR / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots = {node.module.split(".")[0]}
        else:
            continue
        assert roots <= STDLIB | allowed, f"{name} imports {roots - STDLIB - allowed}"


def test_checkpoint_path_package_is_reproducible(trained_run, tmp_path):
    result = trained_run.result
    first = build_package(result.best_checkpoint, tmp_path / "a.tar.gz")
    second = build_package(result.best_checkpoint, tmp_path / "b.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        metadata = json.loads(tar.extractfile("metadata.json").read())
    assert metadata["source"]["run_id"] is None and metadata["metrics"] == {}


def test_tampered_weights_are_refused(package, tmp_path):
    tarball, _ = package
    folder = unpack(tarball, tmp_path / "tampered")
    weights = folder / "model.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    serving = load_serving_module(folder)
    with pytest.raises(ValueError, match="sha256"):
        serving.load_model(folder, serving.ServingSettings())


def test_dropout_head_is_stored_as_a_plain_linear():
    checkpoint = {
        "dogbreeds": {"head": "fc"},
        "state_dict": {
            "model.conv1.weight": torch.ones(1),
            "model.fc.1.weight": torch.ones(2),
            "model.fc.1.bias": torch.zeros(2),
            "train_metrics.acc.tp": torch.ones(1),
        },
    }
    assert sorted(network_state_dict(checkpoint)) == ["conv1.weight", "fc.bias", "fc.weight"]


def test_bad_sources_give_clear_errors(trained_run, tmp_path):
    uri = trained_run.tracking_uri
    with pytest.raises(PackageError, match="does not exist"):
        build_package(tmp_path / "missing.ckpt", tmp_path / "m.tar.gz")
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(PackageError, match="not a readable PyTorch checkpoint"):
        build_package(not_a_checkpoint, tmp_path / "m.tar.gz")
    with pytest.raises(PackageError, match="cannot read run 'no-such-run'"):
        build_package("no-such-run", tmp_path / "m.tar.gz", tracking_uri=uri)
    not_a_tarball = tmp_path / "model.tar.gz"
    not_a_tarball.write_bytes(b"garbage")
    with pytest.raises(PackageError, match="not a readable model.tar.gz"):
        unpack(not_a_tarball, tmp_path / "out")
    assert not (tmp_path / "m.tar.gz").exists()


def test_cli_package_reports_bad_source(tmp_path):
    from dogbreeds.cli import main

    assert main(["package", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "m.tar.gz")]) == 2
