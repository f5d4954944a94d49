"""Run the deployed Lambda handler in this process, unchanged, against any SageMaker Runtime endpoint.

``lambda`` is a Python keyword and the folder is shipped as a zip whose root is on the Lambda's
``sys.path`` (``handler.py`` imports its sibling ``safe_fetch``). Loading it the same way here, with the
folder on ``sys.path``, means local runs exercise exactly the code that AWS runs.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"


def load_handler() -> ModuleType:
    """Import ``lambda/handler.py`` as the top-level module ``handler``, as the Lambda runtime does."""
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))
    return importlib.import_module("handler")


def local_runtime_client(endpoint_url: str, region: str = "us-east-1", read_timeout: float = 30.0):
    """A ``sagemaker-runtime`` client for the local endpoint: unsigned, since it needs no AWS credentials."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(
        signature_version=UNSIGNED,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
    )
    return boto3.client("sagemaker-runtime", endpoint_url=endpoint_url, region_name=region, config=config)
