"""The Lambda in front of the endpoint: its names, its settings and the zip of ``lambda/``.

The zip is reproducible (sorted entries, fixed timestamps), so an unchanged handler has an unchanged
CodeSha256 and the plan can tell "code unchanged" from the digest alone, before anything is sent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

# The handler folder as deployed (``lambda`` is a keyword, so it is a folder, not a package).
LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
HANDLER = "handler.handler"


def function_name(deploy) -> str:
    return deploy.function.name or f"{deploy.endpoint_name}-invoke"


def role_name(deploy) -> str:
    return f"{function_name(deploy)}-role"[:64]


def build_zip(source: Path = LAMBDA_DIR) -> bytes:
    """The ``*.py`` files of ``source`` at the zip root; a symlink (``safe_fetch.py``) is stored as its content."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.glob("*.py")):
            info = zipfile.ZipInfo(path.name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def code_sha256(zip_bytes: bytes) -> str:
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def settings(deploy, role_arn: str) -> dict:
    """Everything ``update_function_configuration`` sets, in the shape ``get_function`` reports it back."""
    fn = deploy.function
    return {
        "Role": role_arn,
        "Handler": HANDLER,
        "Runtime": fn.runtime,
        "Timeout": fn.timeout_s,
        "MemorySize": fn.memory_mb,
        "Environment": {
            "Variables": {"ENDPOINT_NAME": deploy.endpoint_name, "MAX_IMAGE_BYTES": str(fn.max_image_bytes)}
        },
    }
