"""The Lambda handler over real HTTP: every event format, URL events, and the error mapping.

The fetcher itself (``safe_fetch.py``, shared with the model package) is tested in test_serving_ssrf.py;
here only what the handler adds: its default rules and how each kind of fetch failure becomes a status.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import ssl

import pytest
from lambda_servers import INTERNAL_DETAIL, image_host, runtime_stand_in, self_signed_cert, start
from PIL import Image

from deploy.invoke import load_handler, local_runtime_client

ENDPOINT = "dogbreeds-test"
LIMIT = 64 * 1024

handler_module = load_handler()
safe_fetch = importlib.import_module("safe_fetch")  # the copy the handler imports


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 120, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


IMAGE = jpeg_bytes()


@pytest.fixture(scope="module")
def runtime():
    server = runtime_stand_in()
    address = start(server)
    yield server, f"http://{address}"
    server.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    server = image_host(cert, key, IMAGE, big_size=LIMIT + 1)
    address = start(server)
    trusting = ssl.create_default_context(cafile=str(cert))
    yield server, f"https://{address}", trusting
    server.shutdown()


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("MAX_IMAGE_BYTES", str(LIMIT))
    handler_module.settings.cache_clear()
    yield monkeypatch
    handler_module.settings.cache_clear()


@pytest.fixture
def invoke(env, runtime, images):
    """Call the handler as Lambda would, with a boto3 client for the stand-in and loopback allowed."""
    _, runtime_url = runtime
    _, _, trusting = images
    rules = safe_fetch.FetchRules(
        ("*",),
        max_bytes=LIMIT,
        timeout_s=1.5,
        refusal=lambda a: None if a == "127.0.0.1" else safe_fetch.address_refusal(a),
        context=trusting,
    )
    client = local_runtime_client(runtime_url, read_timeout=1.0)

    def _invoke(event, client=client):
        response = handler_module.handler(event, None, client=client, fetch_rules=rules)
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])

    return _invoke


def assert_prediction_of(body: dict, image: bytes = IMAGE) -> None:
    assert body["predictions"][0]["breed"] == "Beagle"
    assert body["received_sha256"] == hashlib.sha256(image).hexdigest()
    assert body["path"] == f"/endpoints/{ENDPOINT}/invocations"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rest_v1(body, content_type="application/json", is_base64=False, method="POST", query=None):
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": method,
        "headers": {"Content-Type": content_type},
        "queryStringParameters": query,
        "requestContext": {"resourcePath": "/predict", "httpMethod": method, "stage": "prod"},
        "body": body,
        "isBase64Encoded": is_base64,
    }


def http_v2(body, content_type="application/json", is_base64=False, route="POST /predict"):
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": "/predict",
        "headers": {"content-type": content_type},
        "requestContext": {"http": {"method": "POST", "path": "/predict"}, "stage": "$default"},
        "body": body,
        "isBase64Encoded": is_base64,
    }


def function_url(body, content_type="application/json"):
    """Function URL events are v2-shaped with routeKey $default; bodies of non-text types arrive base64."""
    event = http_v2(b64(body if isinstance(body, bytes) else body.encode()), content_type, True, "$default")
    event["requestContext"]["domainName"] = "abc.lambda-url.us-east-1.on.aws"
    return event


def test_direct_url_event_fetches_over_https_and_sends_the_bytes(invoke, images):
    _, base, _ = images
    status, body = invoke({"url": f"{base}/dog.jpg"})
    assert status == 200
    assert_prediction_of(body)


def test_direct_base64_image_event(invoke):
    status, body = invoke({"image": b64(IMAGE)})
    assert status == 200
    assert_prediction_of(body)


@pytest.mark.parametrize(
    "make_event",
    [
        lambda base: rest_v1(json.dumps({"url": f"{base}/dog.jpg"})),
        lambda base: rest_v1(json.dumps({"image": b64(IMAGE)})),
        lambda base: rest_v1(b64(IMAGE), content_type="image/jpeg", is_base64=True),
        lambda base: rest_v1(None, method="GET", query={"url": f"{base}/redirect-ok"}),
        lambda base: http_v2(json.dumps({"url": f"{base}/dog.jpg"})),
        lambda base: http_v2(b64(IMAGE), content_type="application/x-image", is_base64=True),
        lambda base: function_url(json.dumps({"image": b64(IMAGE)})),
        lambda base: function_url(IMAGE, content_type="image/jpeg"),
    ],
    ids=[
        "v1-url",
        "v1-json-image",
        "v1-binary",
        "v1-get-query",
        "v2-url",
        "v2-binary",
        "furl-json",
        "furl-binary",
    ],
)
def test_proxy_events(invoke, images, make_event):
    _, base, _ = images
    status, body = invoke(make_event(base))
    assert status == 200
    assert_prediction_of(body)


@pytest.mark.parametrize(
    ("event", "status", "message"),
    [
        ("not an object", 400, "must be a JSON object"),
        ({}, 400, 'exactly one of "image" or "url"'),
        ({"url": "https://x", "image": "AAAA"}, 400, 'exactly one of "image" or "url"'),
        ({"image": "***not base64***"}, 400, "not valid base64"),
        ({"image": 12}, 400, "must be a base64 string"),
        ({"image": ""}, 400, "image is empty"),
        ({"image": "A" * (LIMIT * 2)}, 413, "over the limit"),
        (rest_v1("{not json"), 400, "not valid JSON"),
        (rest_v1("[1, 2]"), 400, "must be a JSON object"),
        (rest_v1(None), 400, "has no body"),
        (rest_v1("hello", content_type="text/plain"), 415, "unsupported content type 'text/plain'"),
        (http_v2(b64(b"\xff" * (LIMIT + 1)), "image/png", True), 413, "over the limit"),
        (http_v2("@@@", "image/png", True), 400, "not valid base64"),
    ],
)
def test_bad_events_are_4xx_and_never_reach_the_endpoint(invoke, runtime, event, status, message):
    server, _ = runtime
    before = len(server.requests)
    got_status, body = invoke(event)
    assert (got_status, message in body["error"]) == (status, True), body
    assert len(server.requests) == before


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("http://example.com/dog.jpg", 400, "only https://"),
        ("https://169.254.169.254/latest/meta-data/", 403, "link-local"),
        ("{base}/dog.jpg", 403, "loopback"),  # a live server, refused before connecting
    ],
)
def test_default_rules_refuse_unsafe_urls(env, images, runtime, url, status, message):
    """No injected rules: what AWS runs (any host, public addresses only, the system CA store)."""
    server, base, _ = images
    seen, calls = len(server.paths), len(runtime[0].requests)
    response = handler_module.handler({"url": url.format(base=base)}, None, client=object())
    assert response["statusCode"] == status
    assert message in json.loads(response["body"])["error"]
    assert len(server.paths) == seen and len(runtime[0].requests) == calls


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/redirect-metadata", 403, "link-local"),  # a redirect is refused like the first URL
        ("/missing", 400, "answered HTTP 404"),
        ("/big", 413, "the limit is"),
        ("/slow", 504, "took longer than"),
    ],
)
def test_fetch_failures_keep_their_status_and_never_reach_the_endpoint(
    invoke, images, runtime, path, status, message
):
    server, base, _ = images
    before_paths, before_calls = len(server.paths), len(runtime[0].requests)
    got_status, body = invoke({"url": base + path})
    assert got_status == status and message in body["error"], body
    assert len(server.paths) - before_paths == 1
    assert len(runtime[0].requests) == before_calls


def test_model_rejection_is_400_with_the_models_reason(invoke):
    status, body = invoke({"image": b64(b"REJECT")})
    assert status == 400
    assert body == {"error": "the model rejected the image: cannot identify image file"}


def test_model_crash_is_502_without_internals(invoke):
    status, body = invoke({"image": b64(b"CRASH")})
    assert status == 502
    assert body == {"error": "the model endpoint failed to process the image"}
    assert INTERNAL_DETAIL not in json.dumps(body)


def test_endpoint_timeout_is_504(invoke):
    status, body = invoke({"image": b64(b"STALL")})
    assert (status, body) == (504, {"error": "the model endpoint did not answer in time"})


def test_unreachable_endpoint_and_missing_configuration_are_502(env, invoke):
    from conftest import free_port

    dead = local_runtime_client(f"http://127.0.0.1:{free_port()}")
    status, body = invoke({"image": b64(IMAGE)}, client=dead)
    assert (status, body) == (502, {"error": "the model endpoint is unavailable"})
    env.setenv("ENDPOINT_NAME", "")
    handler_module.settings.cache_clear()
    status, body = invoke({"image": b64(IMAGE)})
    assert (status, body) == (502, {"error": "the function is not configured with an endpoint"})


def test_default_client_is_created_once_and_reused(env, runtime):
    """As on AWS: no injected client, boto3 configured only through the environment."""
    _, runtime_url = runtime
    env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime_url)
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    handler_module.runtime_client.cache_clear()
    try:
        for _ in range(3):
            response = handler_module.handler({"image": b64(IMAGE)}, None)
            assert response["statusCode"] == 200
            assert_prediction_of(json.loads(response["body"]))
        info = handler_module.runtime_client.cache_info()
        assert (info.misses, info.hits) == (1, 2)
    finally:
        handler_module.runtime_client.cache_clear()
