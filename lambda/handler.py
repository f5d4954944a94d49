"""AWS Lambda entry point: one image in, the endpoint's top-k breeds out.

Accepts the original project's direct event ``{"url": ...}``, ``{"image": <base64>}``, and the proxy
events of API Gateway REST (v1), HTTP API (v2) and Function URLs (same shape as v2), whose body is that
JSON or the raw image bytes. Always answers a proxy-shaped response, so the same function works behind
any of those front doors and when invoked directly.

Only the standard library and boto3's botocore (both in the stock Python runtime): the deployment is a plain zip.
The SageMaker Runtime client is created once per execution environment and reused, so warm invocations
skip client construction; callers (tests, ``dogbreeds invoke`` locally) may inject their own client.
Errors are mapped to explicit statuses with messages a caller can act on; details go to the logs only.
URLs are fetched by ``safe_fetch.py``, the same file the model package ships (its docstring says why it is
copied rather than imported); here every public host is allowed, since the caller picks the image.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import logging
import os
from dataclasses import dataclass

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from safe_fetch import FetchError, FetchRules, fetch

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

# SageMaker real-time endpoints accept at most 6 MB per request: refuse bigger images before calling.
DEFAULT_MAX_IMAGE_BYTES = 6 * 1024 * 1024
IMAGE_CONTENT_TYPE = "application/x-image"
RAW_IMAGE_TYPES = ("application/x-image", "application/octet-stream")
CONNECT_TIMEOUT_S = 2
MIN_READ_TIMEOUT_S = 2
RESPONSE_MARGIN_S = 1.0  # left for logging and returning the response before the function timeout
USAGE = 'send JSON {"url": "https://..."} or {"image": "<base64>"}, or the image bytes with an image/* content type'


class BadRequest(Exception):
    """The event cannot be served as sent; ``status`` is 400, 413 or 415."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HandlerSettings:
    endpoint_name: str
    max_image_bytes: int
    fetch_timeout_s: float
    invoke_timeout_s: float


@functools.cache
def settings() -> HandlerSettings:
    """Read the function's environment once (it cannot change within an execution environment)."""
    return HandlerSettings(
        endpoint_name=os.environ.get("ENDPOINT_NAME", ""),
        max_image_bytes=int(os.environ.get("MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES)),
        fetch_timeout_s=float(os.environ.get("FETCH_TIMEOUT_S", 5)),
        invoke_timeout_s=float(os.environ.get("INVOKE_TIMEOUT_S", 20)),
    )


def default_fetch_rules() -> FetchRules:
    """Any host whose addresses are all public; the CA bundle is loaded on the first URL event only."""
    return FetchRules(("*",), max_bytes=settings().max_image_bytes, timeout_s=settings().fetch_timeout_s)


@functools.cache
def _botocore_session():
    # botocore's session is what boto3.client() wraps; importing it directly skips boto3's s3transfer
    # import, about a third of the cold import time (benchmarks/lambda_handler.py).
    return botocore.session.get_session()


@functools.cache
def runtime_client(read_timeout_s: int, attempts: int):
    """A SageMaker Runtime client per time budget, built on first use and reused by warm invocations.

    botocore fixes timeouts when a client is built, so a budget is rounded to whole seconds and each
    (read timeout, attempts) pair gets one client: a few per execution environment at most.
    """
    timeouts = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    return _botocore_session().create_client("sagemaker-runtime", config=timeouts)


def remaining_s(context, config: HandlerSettings) -> float:
    """Seconds this invocation may still spend before it must answer: the function's own remaining time
    (as the Lambda context reports it) less a margin for the response, or the configured budget locally."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return config.fetch_timeout_s + config.invoke_timeout_s
    return context.get_remaining_time_in_millis() / 1000 - RESPONSE_MARGIN_S


def invoke_budget(remaining: float, config: HandlerSettings) -> tuple[int, int] | None:
    """(read timeout, attempts) whose worst case (connect + read, per attempt) fits ``remaining``; None when
    not even one short attempt fits. Two attempts when both fit at the configured read timeout."""
    read = min(config.invoke_timeout_s, remaining - CONNECT_TIMEOUT_S)
    if read < MIN_READ_TIMEOUT_S:
        return None
    attempts = 2 if 2 * (CONNECT_TIMEOUT_S + read) <= remaining else 1
    return int(read), attempts


def respond(status: int, payload: dict) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(payload),
        "isBase64Encoded": False,
    }


def _is_proxy_event(event: dict) -> bool:
    return "requestContext" in event or "httpMethod" in event or "routeKey" in event


def _decode_base64(text: str, what: str, limit: int) -> bytes:
    if len(text) * 3 // 4 > limit + 3:  # refuse before decoding: the decoded size is known up front
        raise BadRequest(f"{what} is over the limit of {limit} bytes", status=413)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRequest(f"{what} is not valid base64") from err


def _from_json_payload(payload, limit: int) -> tuple[bytes | None, str | None]:
    """Return (image bytes, url) from ``{"image": ...}`` or ``{"url": ...}``; exactly one must be given."""
    if not isinstance(payload, dict):
        raise BadRequest(f"the request must be a JSON object: {USAGE}")
    has_image, has_url = "image" in payload, "url" in payload
    if has_image == has_url:
        raise BadRequest(f'give exactly one of "image" or "url": {USAGE}')
    if has_url:
        if not isinstance(payload["url"], str):
            raise BadRequest('"url" must be a string')
        return None, payload["url"]
    if not isinstance(payload["image"], str):
        raise BadRequest('"image" must be a base64 string')
    return _decode_base64(payload["image"], '"image"', limit), None


def _mapping(event: dict, key: str) -> dict:
    value = event.get(key) or {}
    if not isinstance(value, dict):
        raise BadRequest(f"the proxy event's {key} must be an object, not {type(value).__name__}")
    return value


def _from_proxy_event(event: dict, limit: int) -> tuple[bytes | None, str | None]:
    headers = {str(k).lower(): str(v) for k, v in _mapping(event, "headers").items()}
    query = _mapping(event, "queryStringParameters")
    body = event.get("body")
    if not body:
        if isinstance(query.get("url"), str):
            return None, query["url"]
        raise BadRequest(f"the request has no body: {USAGE}")
    if not isinstance(body, str):
        raise BadRequest("the proxy event body must be a string")
    raw = _decode_base64(body, "the request body", limit) if event.get("isBase64Encoded") else body.encode()
    content_type = headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if content_type.startswith("image/") or content_type in RAW_IMAGE_TYPES:
        if len(raw) > limit:
            raise BadRequest(f"the image is over the limit of {limit} bytes", status=413)
        return raw, None
    if content_type != "application/json":
        raise BadRequest(f"unsupported content type {content_type!r}: {USAGE}", status=415)
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"the request body is not valid JSON: {USAGE}") from err
    except RecursionError as err:
        raise BadRequest("the request body is nested too deeply") from err
    return _from_json_payload(payload, limit)


def image_from_event(
    event, config: HandlerSettings, fetch_rules: FetchRules | None = None, fetch_budget_s: float | None = None
) -> bytes:
    """The image bytes the event asks about, fetched safely when it names a URL."""
    if not isinstance(event, dict):
        raise BadRequest(f"the event must be a JSON object: {USAGE}")
    limit = config.max_image_bytes
    if _is_proxy_event(event):
        image, url = _from_proxy_event(event, limit)
    else:
        image, url = _from_json_payload(event, limit)
    if url is not None:
        rules = fetch_rules or default_fetch_rules()
        if fetch_budget_s is not None and fetch_budget_s < rules.timeout_s:
            rules = dataclasses.replace(rules, timeout_s=max(fetch_budget_s, 0.1))
        try:
            image = fetch(url, rules)
        except FetchError as err:
            raise BadRequest(str(err), status=err.status) from err
    if not image:
        raise BadRequest("the image is empty")
    return image


def _model_error_response(err: ClientError) -> dict:
    """A model that rejected the input (4xx from the container) is the caller's to fix; anything else is ours."""
    original_status = err.response.get("OriginalStatusCode")
    if isinstance(original_status, int) and 400 <= original_status < 500:
        try:
            reason = json.loads(err.response.get("OriginalMessage") or "{}").get("error")
        except (ValueError, AttributeError):
            reason = None
        if isinstance(reason, str) and reason:
            return respond(400, {"error": f"the model rejected the image: {reason[:300]}"})
        return respond(400, {"error": "the model rejected the image"})
    return respond(502, {"error": "the model endpoint failed to process the image"})


def handler(event, context=None, *, client=None, fetch_rules: FetchRules | None = None) -> dict:
    """Lambda entry point (``handler.handler``); the keyword arguments are for local runs and tests.

    Every event gets a proxy response: API Gateway turns an escaped exception into a bare 502.
    """
    try:
        return _handle(event, context, client, fetch_rules)
    except Exception:
        log.exception("unhandled error")
        return respond(500, {"error": "internal error in the function; see its logs"})


def _handle(event, context, client, fetch_rules: FetchRules | None) -> dict:
    config = settings()
    # The URL fetch may use what the endpoint call's shortest useful attempt leaves over.
    fetch_budget = remaining_s(context, config) - CONNECT_TIMEOUT_S - MIN_READ_TIMEOUT_S
    try:
        image = image_from_event(event, config, fetch_rules, fetch_budget)
    except BadRequest as err:
        return respond(err.status, {"error": str(err)})
    if not config.endpoint_name:
        log.error("ENDPOINT_NAME is not set in the function environment")
        return respond(502, {"error": "the function is not configured with an endpoint"})
    budget = invoke_budget(remaining_s(context, config), config)
    if budget is None:
        return respond(504, {"error": "no time left to call the model endpoint; try again"})
    try:
        result = (client or runtime_client(*budget)).invoke_endpoint(
            EndpointName=config.endpoint_name,
            Body=image,
            ContentType=IMAGE_CONTENT_TYPE,
            Accept="application/json",
        )
        prediction = json.loads(result["Body"].read())
    except (ReadTimeoutError, ConnectTimeoutError):
        log.exception("endpoint %s timed out", config.endpoint_name)
        return respond(504, {"error": "the model endpoint did not answer in time"})
    except ClientError as err:
        log.error("endpoint %s error: %s", config.endpoint_name, err)
        if err.response.get("Error", {}).get("Code") == "ModelError":
            return _model_error_response(err)
        return respond(502, {"error": "the model endpoint is unavailable"})
    except (BotoCoreError, ValueError):
        log.exception("calling endpoint %s failed", config.endpoint_name)
        return respond(502, {"error": "the model endpoint is unavailable"})
    return respond(200, prediction if isinstance(prediction, dict) else {"predictions": prediction})
