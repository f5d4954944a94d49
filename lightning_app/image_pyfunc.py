"""The run's MLflow model: a pyfunc that takes image bytes and answers breeds, so the registry serves images.

``mlflow models serve -m runs:/<id>/model`` (or ``models:/dogbreeds/<v>``) answers JSON such as
``{"dataframe_split": {"columns": ["image"], "data": [["<base64 JPEG>"]]}}`` with each image's top-k labels
and probabilities. Decode, preprocessing and forward are the serving core's (``lightning_app/serving``) with
the checkpoint's ``preprocessing``: the eval transform validation and test used, and the very code the
SageMaker package and the endpoints run. The model's only artifact is the run's weights-only checkpoint, loaded with
``weights_only`` (no arbitrary unpickling).
"""

from __future__ import annotations

import base64
import binascii
import io

import mlflow.pyfunc
import pandas as pd

IMAGE_COLUMN = "image"
CHECKPOINT_KEY = "checkpoint"
DEFAULT_TOP_K = 5


def image_bytes(value) -> bytes:
    """Raw bytes, or a base64 string of them (what JSON can carry); anything else is refused clearly."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as err:
            raise ValueError(f"column {IMAGE_COLUMN!r}: a string must be base64 image bytes ({err})") from err
    raise ValueError(f"column {IMAGE_COLUMN!r}: expected image bytes or base64, got {type(value).__name__}")


class ImageClassifierModel(mlflow.pyfunc.PythonModel):
    """DataFrame with an ``image`` column -> DataFrame with ``labels`` and ``probabilities`` (top-k, best first).

    Built on the serving core (``lightning_app/serving``), as the package and every endpoint are: the same
    network builder, the same decode (limits, EXIF orientation, DCT scale) and the same eval transform, so
    a photo gets the same probabilities here as from ``dogbreeds predict`` or an endpoint."""

    def load_context(self, context) -> None:
        import torch

        from lightning_app import checkpoints
        from lightning_app.serving import inference

        checkpoint = checkpoints.read(context.artifacts[CHECKPOINT_KEY])
        info = checkpoint["dogbreeds"]
        network = inference.build_network(info["arch"], len(info["class_names"]))
        network.load_state_dict(checkpoints.network_state_dict(checkpoint))
        network.eval()
        metadata = {key: info[key] for key in ("arch", "class_names", "preprocessing")}
        transform = inference.eval_transform(info["preprocessing"])
        settings = inference.ServingSettings()
        self.model = inference.Model(network, metadata, transform, torch.device("cpu"), settings)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        import torch

        from lightning_app.serving import inference

        if IMAGE_COLUMN not in model_input.columns:
            raise ValueError(f"expected a column {IMAGE_COLUMN!r}, got {list(model_input.columns)}")
        top_k = min(int((params or {}).get("top_k", DEFAULT_TOP_K)), len(self.model.class_names))
        try:
            images = [inference.decode_image(image_bytes(v), self.model) for v in model_input[IMAGE_COLUMN]]
        except inference.RequestError as err:
            raise ValueError(f"column {IMAGE_COLUMN!r}: {err.message}") from None
        (prediction,) = inference.predict_many([inference.Request(images)], self.model)
        best = torch.softmax(prediction.logits, dim=1).topk(top_k, dim=1)
        names = self.model.class_names
        return pd.DataFrame(
            {
                "labels": [[names[i] for i in row] for row in best.indices.tolist()],
                "probabilities": [[round(p, 6) for p in row] for row in best.values.tolist()],
            }
        )


def example_jpeg(size: int = 64) -> bytes:
    """A small grey JPEG: the logged input example (and what the signature is inferred from)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(out, format="JPEG")
    return out.getvalue()
