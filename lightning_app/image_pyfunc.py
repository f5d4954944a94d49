"""The run's MLflow model: a pyfunc that takes image bytes and answers breeds, so the registry serves images.

``mlflow models serve -m runs:/<id>/model`` (or ``models:/dogbreeds/<v>``) answers JSON such as
``{"dataframe_split": {"columns": ["image"], "data": [["<base64 JPEG>"]]}}`` with each image's top-k labels
and probabilities. Preprocessing is the run's own eval transform (``images.eval_transform`` with the
checkpoint's ``preprocessing``), the one validation and test used; the SageMaker package applies the same
steps in its own serving code. The model's only artifact is the run's weights-only checkpoint, loaded with
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
    """DataFrame with an ``image`` column -> DataFrame with ``labels`` and ``probabilities`` (top-k, best first)."""

    def load_context(self, context) -> None:
        from lightning_app.images import eval_transform
        from lightning_app.module import BreedClassifier

        module = BreedClassifier.load_from_checkpoint(context.artifacts[CHECKPOINT_KEY], map_location="cpu")
        self.net = module.model.eval()
        self.class_names = module.class_names
        prep = module.preprocessing
        self.transform = eval_transform(
            prep["image_size"], prep["resize"] / prep["image_size"], prep["mean"], prep["std"]
        )

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        import torch
        from PIL import Image, ImageOps

        if IMAGE_COLUMN not in model_input.columns:
            raise ValueError(f"expected a column {IMAGE_COLUMN!r}, got {list(model_input.columns)}")
        top_k = min(int((params or {}).get("top_k", DEFAULT_TOP_K)), len(self.class_names))
        tensors = []
        for value in model_input[IMAGE_COLUMN]:
            with Image.open(io.BytesIO(image_bytes(value))) as img:
                rgb = ImageOps.exif_transpose(img.convert("RGB"))
            tensors.append(self.transform(rgb))
        with torch.inference_mode():
            probs = torch.softmax(self.net(torch.stack(tensors)), dim=1)
        best = probs.topk(top_k, dim=1)
        return pd.DataFrame(
            {
                "labels": [[self.class_names[i] for i in row] for row in best.indices.tolist()],
                "probabilities": [[round(p, 6) for p in row] for row in best.values.tolist()],
            }
        )


def example_jpeg(size: int = 64) -> bytes:
    """A small grey JPEG: the logged input example (and what the signature is inferred from)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(out, format="JPEG")
    return out.getvalue()
