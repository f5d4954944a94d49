"""``dogbreeds invoke IMAGE``: send one image through the Lambda and return its top-k breeds.

Locally the handler from ``lambda/`` runs in this process against the local endpoint (exactly the code
AWS runs, with an unsigned client pointed at localhost); on AWS the deployed function's alias is
invoked. Both return the handler's proxy-shaped response, parsed here.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType

from conf.errors import DogbreedsError
from deploy.aws.lambda_function import LAMBDA_DIR


class InvocationError(DogbreedsError):
    """The image cannot be sent, or the endpoint answered with an error; the message carries its reason."""


def event_for(image: str) -> dict:
    """The original project's direct event: ``{"url": ...}`` for URLs, else the file as base64."""
    if image.startswith(("https://", "http://")):
        return {"url": image}
    path = Path(image).expanduser()
    if not path.is_file():
        raise InvocationError(f"{image} is neither an image file nor an https:// URL")
    return {"image": base64.b64encode(path.read_bytes()).decode()}


def load_handler() -> ModuleType:
    """Import ``lambda/handler.py`` as the top-level module ``handler``, as the Lambda runtime does: the zip's
    root is on its ``sys.path`` (the handler imports its sibling ``safe_fetch``), so local runs exercise
    exactly the code AWS runs."""
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


def invoke_local(event: dict, endpoint_url: str, endpoint_name: str) -> dict:
    handler = load_handler()
    # The handler reads its endpoint from the environment, as on AWS; set it for this call only.
    previous = os.environ.get("ENDPOINT_NAME")
    os.environ["ENDPOINT_NAME"] = endpoint_name
    handler.settings.cache_clear()
    try:
        return handler.handler(event, None, client=local_runtime_client(endpoint_url))
    finally:
        if previous is None:
            os.environ.pop("ENDPOINT_NAME", None)
        else:
            os.environ["ENDPOINT_NAME"] = previous
        handler.settings.cache_clear()


def invoke_lambda(event: dict, deploy) -> dict:
    import boto3
    from botocore.exceptions import NoCredentialsError

    from deploy.aws.lambda_function import function_name

    lam, name = boto3.client("lambda", region_name=deploy.region), function_name(deploy)
    try:
        answer = lam.invoke(
            FunctionName=name, Qualifier=deploy.function.alias, Payload=json.dumps(event).encode()
        )
    except NoCredentialsError as err:
        raise InvocationError(
            f"{err}: configure AWS credentials (aws configure, AWS_PROFILE, or a role)"
        ) from err
    except lam.exceptions.ResourceNotFoundException as err:
        raise InvocationError(
            f"no Lambda {name}:{deploy.function.alias} in {deploy.region}: "
            "run dogbreeds promote deploy=sagemaker first (or set deploy.region / deploy.endpoint_name)"
        ) from err
    payload = json.loads(answer["Payload"].read())
    if "FunctionError" in answer:
        raise InvocationError(f"the Lambda failed: {payload.get('errorMessage', payload)}")
    return payload


def parse_response(response: dict) -> dict:
    """The handler's JSON body; a non-200 becomes an error carrying the handler's own message."""
    body = json.loads(response["body"])
    if response["statusCode"] != 200:
        raise InvocationError(f"HTTP {response['statusCode']}: {body.get('error', body)}")
    return body


def format_predictions(body: dict) -> str:
    return "\n".join(f"{p['probability']:7.2%}  {p['label']}" for p in body["predictions"])
