"""The Lambda handler over real HTTP: every event format, URL events, and the error mapping, against the
project's own local endpoint (its SageMaker Runtime route) serving the session's trained run.

The fetcher itself (``safe_fetch.py``, shared with the model package) is tested in test_serving_ssrf.py;
here only what the handler adds: its default rules and how each kind of fetch failure becomes a status.
Error paths come from real servers too: a package whose model fails at predict time (a 500 that the
endpoint wraps as a ModelError) and an endpoint whose batching wait outlasts the client's read timeout.
"""

from __future__ import annotations

import importlib
import json
import shutil
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from helpers.https_host import image_host, self_signed_cert, serve_in_thread
from helpers.images import b64, jpeg_bytes
from helpers.lambda_events import function_url, http_v2, rest_v1
from helpers.servers import free_port

from conf.loader import load_config
from deploy.invoke import load_handler, local_runtime_client
from deploy.local_endpoint.process import start_in_thread

ENDPOINT = "dogbreeds-test"
LIMIT = 64 * 1024
INTERNAL_DETAIL = "CUDA error: device-side assert triggered in /opt/ml/model/code/inference.py"
IMAGE = jpeg_bytes()

handler_module = load_handler()
safe_fetch = importlib.import_module("safe_fetch")  # the copy the handler imports


def serve_cfg(*overrides: str):
    return load_config([f"serve.endpoint_name={ENDPOINT}", "serve.port=0", *overrides]).serve


def failing_package(package_dir: Path, dest: Path) -> Path:
    """A copy of the package whose model fails at predict time, as a broken model does in a container."""
    shutil.copytree(package_dir, dest)
    with open(dest / "code" / "inference.py", "a") as code:
        code.write(f"\n\ndef predict_many(requests, model):\n    raise RuntimeError({INTERNAL_DETAIL!r})\n")
    return dest


@pytest.fixture(scope="module")
def endpoint(served_package):
    server = start_in_thread(served_package, serve_cfg())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def failing_endpoint(served_package, tmp_path_factory):
    server = start_in_thread(
        failing_package(served_package, tmp_path_factory.mktemp("failing") / "model"), serve_cfg()
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_endpoint(served_package):
    """The first request of a batch waits 3 s for company: longer than the 1 s read timeout given to it."""
    server = start_in_thread(served_package, serve_cfg("serve.max_wait_ms=3000"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stalled_endpoint(served_package):
    """Its own endpoint (a request left waiting in ``slow_endpoint``'s batch would speed up the next one)."""
    server = start_in_thread(served_package, serve_cfg("serve.max_wait_ms=8000"))
    yield server
    server.stop()


def post_to_container(endpoint, body: bytes) -> tuple[int, dict]:
    """What the container route answers for ``body`` sent as the handler sends images."""
    request = urllib.request.Request(
        f"{endpoint.url}/invocations", data=body, headers={"Content-Type": handler_module.IMAGE_CONTENT_TYPE}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def expected(endpoint) -> dict:
    """The endpoint's own answer for IMAGE: what the handler must pass through unchanged."""
    status, answer = post_to_container(endpoint, IMAGE)
    assert status == 200, answer
    return answer


def recording_client(url: str, read_timeout: float = 30.0):
    """A SageMaker Runtime client for ``url``, and the (path, body) of every request it puts on the wire."""
    client = local_runtime_client(url, read_timeout=read_timeout)
    sent: list[tuple[str, bytes]] = []
    client.meta.events.register(
        "before-send.sagemaker-runtime.InvokeEndpoint",
        lambda request, **_: sent.append((urlsplit(request.url).path, request.body)),
    )
    return client, sent


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    server = image_host(cert, key, IMAGE, big_size=LIMIT + 1)
    address = serve_in_thread(server)
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
def runtime(endpoint):
    """A client for the local endpoint and the (path, body) of every request it sends, fresh per test."""
    return recording_client(endpoint.url)


@pytest.fixture
def invoke(env, runtime, images):
    """Call the handler as Lambda would, with a client for the local endpoint and loopback URLs allowed."""
    _, _, trusting = images
    rules = safe_fetch.FetchRules(
        ("*",),
        max_bytes=LIMIT,
        timeout_s=1.5,
        refusal=lambda a: None if a == "127.0.0.1" else safe_fetch.address_refusal(a),
        context=trusting,
    )
    client, _ = runtime

    def _invoke(event, client=client):
        response = handler_module.handler(event, None, client=client, fetch_rules=rules)
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])

    return _invoke


def assert_passed_through(body: dict, expected: dict, sent: list, image: bytes = IMAGE) -> None:
    """The handler answered the endpoint's own answer, having sent exactly these bytes to our endpoint."""
    assert body == expected
    assert sent[-1] == (f"/endpoints/{ENDPOINT}/invocations", image)


def test_direct_url_event_fetches_over_https_and_sends_the_bytes(invoke, images, runtime, expected):
    _, base, _ = images
    status, body = invoke({"url": f"{base}/dog.jpg"})
    assert status == 200
    assert_passed_through(body, expected, runtime[1])


def test_direct_base64_image_event(invoke, runtime, expected):
    status, body = invoke({"image": b64(IMAGE)})
    assert status == 200
    assert_passed_through(body, expected, runtime[1])


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
def test_proxy_events(invoke, images, runtime, expected, make_event):
    _, base, _ = images
    status, body = invoke(make_event(base))
    assert status == 200
    assert_passed_through(body, expected, runtime[1])


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
        (
            {**rest_v1(json.dumps({"image": b64(IMAGE)})), "headers": "Content-Type"},
            400,
            "headers must be an object",
        ),
        (
            {**rest_v1(None, method="GET"), "queryStringParameters": "url=x"},
            400,
            "queryStringParameters must be",
        ),
        (rest_v1("[" * 100_000 + "]" * 100_000), 400, "nested too deeply"),
    ],
)
def test_bad_events_are_4xx_and_never_reach_the_endpoint(invoke, runtime, event, status, message):
    got_status, body = invoke(event)
    assert (got_status, message in body["error"]) == (status, True), body
    assert runtime[1] == []


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
    client, sent = runtime
    seen = len(server.paths)
    response = handler_module.handler({"url": url.format(base=base)}, None, client=client)
    assert response["statusCode"] == status
    assert message in json.loads(response["body"])["error"]
    assert len(server.paths) == seen and sent == []


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
    before_paths = len(server.paths)
    got_status, body = invoke({"url": base + path})
    assert got_status == status and message in body["error"], body
    assert len(server.paths) - before_paths == 1
    assert runtime[1] == []


def test_model_rejection_is_400_with_the_models_reason(invoke, endpoint):
    not_an_image = b"a text file, not a photo"
    container_status, container_answer = post_to_container(endpoint, not_an_image)
    assert container_status == 400
    status, body = invoke({"image": b64(not_an_image)})
    assert status == 400
    assert body == {"error": f"the model rejected the image: {container_answer['error']}"}


def test_model_failure_is_502_without_internals(invoke, failing_endpoint):
    client, _ = recording_client(failing_endpoint.url)
    with pytest.raises(ClientError) as failure:  # what the handler gets: SageMaker's ModelError for a 500
        client.invoke_endpoint(EndpointName=ENDPOINT, Body=IMAGE, ContentType="application/x-image")
    assert failure.value.response["Error"]["Code"] == "ModelError"
    assert failure.value.response["OriginalStatusCode"] == 500
    status, body = invoke({"image": b64(IMAGE)}, client=client)
    assert status == 502
    assert body == {"error": "the model endpoint failed to process the image"}
    assert INTERNAL_DETAIL not in json.dumps(body)


def test_endpoint_timeout_is_504(invoke, slow_endpoint):
    client, sent = recording_client(slow_endpoint.url, read_timeout=1.0)
    status, body = invoke({"image": b64(IMAGE)}, client=client)
    assert (status, body) == (504, {"error": "the model endpoint did not answer in time"})
    assert len(sent) == 1  # the request did reach the slow endpoint (this client makes one attempt)


def test_unreachable_or_unknown_endpoint_and_missing_configuration_are_502(env, invoke):
    dead = local_runtime_client(f"http://127.0.0.1:{free_port()}")
    status, body = invoke({"image": b64(IMAGE)}, client=dead)
    assert (status, body) == (502, {"error": "the model endpoint is unavailable"})
    env.setenv("ENDPOINT_NAME", "not-this-one")  # the endpoint answers ValidationError: no such endpoint
    handler_module.settings.cache_clear()
    status, body = invoke({"image": b64(IMAGE)})
    assert (status, body) == (502, {"error": "the model endpoint is unavailable"})
    env.setenv("ENDPOINT_NAME", "")
    handler_module.settings.cache_clear()
    status, body = invoke({"image": b64(IMAGE)})
    assert (status, body) == (502, {"error": "the function is not configured with an endpoint"})


def test_default_client_is_created_once_and_reused(env, endpoint, expected):
    """As on AWS: no injected client, boto3 configured only through the environment."""
    env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint.url)
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    handler_module.runtime_client.cache_clear()
    try:
        for _ in range(3):
            response = handler_module.handler({"image": b64(IMAGE)}, None)
            assert response["statusCode"] == 200
            assert json.loads(response["body"]) == expected
        info = handler_module.runtime_client.cache_info()
        assert (info.misses, info.hits) == (1, 2)
    finally:
        handler_module.runtime_client.cache_clear()


def test_an_unexpected_error_is_still_a_proxy_response(invoke, runtime, monkeypatch):
    """API Gateway turns an escaped exception into a bare 502: the handler answers 500 itself instead."""

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(handler_module, "image_from_event", broken)
    assert invoke({"image": b64(IMAGE)}) == (500, {"error": "internal error in the function; see its logs"})
    assert runtime[1] == []


class LambdaContext:
    """The one method of the Lambda context object the handler uses, counting down like the real one."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


@pytest.mark.parametrize(
    ("function_s", "answer"),
    [
        (5.5, "the model endpoint did not answer in time"),  # one attempt with a read timeout that fits
        (3.0, "no time left to call the model endpoint; try again"),  # not even one attempt fits: no call
    ],
)
def test_timeouts_follow_the_time_the_function_has_left(env, stalled_endpoint, function_s, answer):
    """The endpoint takes 8 s; the configured 20 s read timeout x 2 attempts would outlive the function."""
    env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", stalled_endpoint.url)
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    handler_module.runtime_client.cache_clear()
    context = LambdaContext(function_s)
    try:
        response = handler_module.handler({"image": b64(IMAGE)}, context)
    finally:
        handler_module.runtime_client.cache_clear()
    assert (response["statusCode"], json.loads(response["body"])) == (504, {"error": answer})
    assert context.get_remaining_time_in_millis() > 500  # answered before the function's timeout
