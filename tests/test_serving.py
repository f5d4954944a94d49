"""The local endpoint over real HTTP: container contract, SageMaker Runtime via boto3, the bad-input
matrix, concurrency with micro-batching, and SIGTERM draining."""

from __future__ import annotations

import base64
import http.client
import io
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from helpers.hostile_images import many_scan_jpeg, png_header_only
from helpers.images import distinct_jpegs
from helpers.servers import free_port, post
from helpers.waiting import wait_for
from omegaconf import OmegaConf
from PIL import Image

from conf.loader import load_config
from deploy.local_endpoint.process import launch, start_in_thread, wait_until_ready

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint(served_package):
    cfg = load_config(["serve.port=0", "serve.max_wait_ms=5"]).serve
    server = start_in_thread(served_package, cfg)
    yield server
    server.stop()


def post_and_report_sent(port: int, body: bytes, sent: list[int]) -> int:
    """POST an image; appends to ``sent`` once the whole request is on the wire, then waits for the status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
        sent.append(1)
        return connection.getresponse().status
    finally:
        connection.close()


def probabilities(answer: dict) -> dict[int, float]:
    return {p["index"]: p["probability"] for p in answer["predictions"]}


def test_ping_and_every_accepted_format(endpoint):
    with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=5) as response:
        assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    jpeg = distinct_jpegs(1)[0]
    png = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(png, "PNG")
    url = f"{endpoint.url}/invocations"
    status, raw = post(url, jpeg, "image/jpeg")
    assert status == 200 and len(raw["predictions"]) == 4 and raw["model"]["arch"] == "resnet18"
    assert post(url, jpeg, "application/x-image")[1]["predictions"] == raw["predictions"]
    as_json = post(url, json.dumps({"image": base64.b64encode(jpeg).decode()}).encode(), "application/json")
    assert as_json[1]["predictions"] == raw["predictions"]
    assert post(url, png.getvalue(), "image/png")[0] == 200
    status, custom = post(
        url, jpeg, "image/jpeg", {"X-Amzn-SageMaker-Custom-Attributes": "top_k=2,logits=true"}
    )
    assert [p["index"] for p in custom["predictions"]] == [p["index"] for p in raw["predictions"][:2]]
    assert len(custom["logits"]) == 4


def test_batched_request_equals_unbatched(endpoint):
    url = f"{endpoint.url}/invocations"
    batch = distinct_jpegs(5)
    status, answer = post(url, json.dumps([{"image": base64.b64encode(b).decode()} for b in batch]).encode(),
                          "application/json")  # fmt: skip
    assert status == 200 and len(answer["results"]) == 5
    for body, batched in zip(batch, answer["results"], strict=True):
        single = post(url, body, "image/jpeg")[1]
        assert [p["index"] for p in batched["predictions"]] == [p["index"] for p in single["predictions"]]
        for index, prob in probabilities(single).items():
            assert probabilities(batched)[index] == pytest.approx(prob, abs=1e-5)


GOOD = distinct_jpegs(1)[0]
CUSTOM = "X-Amzn-SageMaker-Custom-Attributes"
B64 = base64.b64encode(GOOD).decode()
BAD_INPUTS = {
    "text/plain": (b"hello", "text/plain", {}, 415, "unsupported content type"),
    "npy": (b"\x93NUMPY", "application/x-npy", {}, 415, "pickles"),
    "form content type": (GOOD, "application/x-www-form-urlencoded", {}, 415, "unsupported content type"),
    "accept csv": (GOOD, "image/jpeg", {"Accept": "text/csv"}, 406, "responses are application/json"),
    "garbage image": (b"definitely not a jpeg", "image/jpeg", {}, 400, "not a decodable image"),
    "truncated jpeg": (GOOD[: len(GOOD) // 2], "image/jpeg", {}, 400, "truncated"),
    "bad base64": (b'{"image": "@@@not base64@@@"}', "application/json", {}, 400, "not valid base64"),
    "malformed json": (b'{"image": ', "application/json", {}, 400, "not valid JSON"),
    "wrong json shape": (b'{"picture": 1}', "application/json", {}, 400, 'expected {"image"'),
    "image not a string": (b'{"image": 5}', "application/json", {}, 400, "must be a base64 string"),
    "empty list": (b"[]", "application/json", {}, 400, "list is empty"),
    "too many images": (
        json.dumps([{"image": B64}] * 33).encode(),
        "application/json",
        {},
        413,
        "limit is 32",
    ),
    "over 6 MiB": (b"\xff" * (6 * MIB + 1), "image/jpeg", {}, 413, "the limit is 6,291,456"),
    "over pixel limit": (
        png_header_only(8_000, 8_000),
        "image/png",
        {},
        413,
        "(64.0 MP); the limit is 40.0 MP",
    ),
    "decompression bomb": (png_header_only(40_000, 40_000), "image/png", {}, 413, "decompression bomb"),
    "url fetching off": (b'{"url": "https://example.com/dog.jpg"}', "application/json", {}, 400, "disabled"),
    "bad top_k": (GOOD, "image/jpeg", {"X-Amzn-SageMaker-Custom-Attributes": "top_k=lots"}, 400, "top_k"),
    "top_k not plain digits": (GOOD, "image/jpeg", {CUSTOM: "top_k=\u00b2"}, 400, "plain digits"),
    "top_k absurdly long": (
        GOOD,
        "image/jpeg",
        {CUSTOM: "top_k=" + "9" * 5000},
        400,
        "got '" + "9" * 36 + "...",
    ),
    "json top_k absurdly long": (
        b'{"image": "%s", "top_k": %s}' % (B64.encode(), b"9" * 5000),
        "application/json",
        {},
        400,
        "not valid JSON",
    ),
    "deeply nested json": (b"[" * 100_000 + b"]" * 100_000, "application/json", {}, 400, "nested too deeply"),
    "accept json with q=0": (GOOD, "image/jpeg", {"Accept": "application/json;q=0"}, 406, "responses are"),
    "accept all but json": (
        GOOD,
        "image/jpeg",
        {"Accept": "*/*, application/json;q=0"},
        406,
        "responses are",
    ),
    "accept bad q": (GOOD, "image/jpeg", {"Accept": "application/json;q=high"}, 400, "invalid q value"),
    "many-scan jpeg": (many_scan_jpeg(64, 200), "image/jpeg", {}, 422, "210 scans; the limit is 100"),
    "bad logits flag": (
        b'{"image": "%s", "logits": "maybe"}' % B64.encode(),
        "application/json",
        {},
        400,
        "logits",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(endpoint, case):
    body, content_type, headers, status, message = BAD_INPUTS[case]
    got_status, answer = post(f"{endpoint.url}/invocations", body, content_type, headers)
    assert (got_status, answer["status"]) == (status, status)
    assert message in answer["error"]
    assert post(f"{endpoint.url}/invocations", GOOD, "image/jpeg")[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/invocations", 405, "GET is not allowed on /invocations; use POST"),
        ("POST", "/ping", 405, "POST is not allowed on /ping; use GET, HEAD"),
        ("GET", "/nowhere", 404, "no route /nowhere"),
    ],
)
def test_routing_errors_have_the_json_error_shape(endpoint, method, path, status, message):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint.url}{path}", method=method), timeout=10)
    assert err.value.code == status and err.value.headers["Content-Type"] == "application/json"
    answer = json.loads(err.value.read())
    assert answer["status"] == status and message in answer["error"]


def test_boto3_sagemaker_runtime_round_trip(endpoint):
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )
    response = client.invoke_endpoint(
        EndpointName="dogbreeds-local", Body=GOOD, ContentType="image/jpeg", Accept="application/json",
        CustomAttributes="top_k=1",
    )  # fmt: skip
    answer = json.loads(response["Body"].read())
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert len(answer["predictions"]) == 1
    assert (
        answer["predictions"] == post(f"{endpoint.url}/invocations", GOOD, "image/jpeg")[1]["predictions"][:1]
    )

    with pytest.raises(ClientError) as bad_image:
        client.invoke_endpoint(EndpointName="dogbreeds-local", Body=b"junk", ContentType="image/jpeg")
    error = bad_image.value.response
    assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == 400
    assert "not a decodable image" in json.loads(error["OriginalMessage"])["error"]

    with pytest.raises(ClientError) as unknown:
        client.invoke_endpoint(EndpointName="other", Body=GOOD, ContentType="image/jpeg")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert "Endpoint other of account local not found" in str(unknown.value)


def test_32_concurrent_clients_each_get_their_own_answer(endpoint):
    url = f"{endpoint.url}/invocations"
    distinct = distinct_jpegs(8)
    expected = [probabilities(post(url, body, "image/jpeg")[1]) for body in distinct]
    batches_before = sum(endpoint.app.state.endpoint.batcher.batch_sizes.values())
    ping_times: list[float] = []
    stop_pinging = threading.Event()

    def ping_while_loaded():
        while not stop_pinging.is_set():
            start = time.monotonic()
            with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=10):
                ping_times.append(time.monotonic() - start)
            stop_pinging.wait(0.05)

    pinger = threading.Thread(target=ping_while_loaded)
    pinger.start()
    jobs = [i % len(distinct) for i in range(64)]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda i: post(url, distinct[i], "image/jpeg"), jobs))
    stop_pinging.set()
    pinger.join()

    for image_index, (status, answer) in zip(jobs, answers, strict=True):
        assert status == 200
        for index, prob in expected[image_index].items():
            assert probabilities(answer)[index] == pytest.approx(prob, abs=1e-5)
    histogram = endpoint.app.state.endpoint.batcher.batch_sizes
    assert max(histogram) > 1, "concurrent requests were never batched together"
    assert sum(histogram.values()) - batches_before < len(jobs)
    assert ping_times and max(ping_times) < 2.0


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests(served_package, tmp_path):
    port = free_port()
    # A long batching wait keeps the requests in flight when SIGTERM arrives.
    proc = launch(
        served_package, ["serve.max_wait_ms=1500", "serve.max_batch_size=64"], tmp_path / "log", port
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=120, alive=lambda: proc.poll() is None)
        sent: list[int] = []
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(post_and_report_sent, port, GOOD, sent) for _ in range(4)]
            wait_for(lambda: len(sent) == 4, 30, "the 4 requests to be sent")
            proc.send_signal(signal.SIGTERM)
            statuses = [f.result() for f in futures]
        assert statuses == [200] * 4
        assert proc.wait(timeout=30) == 0  # a clean drain is a success, as the README says
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "log").read_text()
    assert "Application shutdown complete" in log and "Finished server process" in log


def test_config_defaults_keep_url_fetching_off():
    serve = OmegaConf.to_container(load_config([]).serve)
    assert serve["url_fetch"]["enabled"] is False and serve["max_payload_bytes"] == 6 * MIB
