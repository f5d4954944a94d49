"""The serving contract both runtimes honour (our local endpoint, AWS's stack): requests and the 4xx each
bad one gets, with a phrase of the message that says what to change."""

from __future__ import annotations

import contextlib
import http.client
import json

if __package__:
    from .hostile_images import many_scan_jpeg, png_header_only
    from .images import b64, distinct_jpegs
else:
    from hostile_images import many_scan_jpeg, png_header_only
    from images import b64, distinct_jpegs

MIB = 1024 * 1024
CUSTOM = "X-Amzn-SageMaker-Custom-Attributes"
GOOD = distinct_jpegs(1)[0]
B64 = b64(GOOD)


# name -> (body, content type, headers, status, phrase of the message; None where the front end answers)
BAD_INPUTS = {
    "text/plain": (b"hello", "text/plain", {}, 415, "unsupported content type"),
    "npy": (b"\x93NUMPY", "application/x-npy", {}, 415, "pickles"),
    "accept csv": (GOOD, "image/jpeg", {"Accept": "text/csv"}, 406, "responses are application/json"),
    "accept json with q=0": (GOOD, "image/jpeg", {"Accept": "application/json;q=0"}, 406, "responses are"),
    "accept bad q": (GOOD, "image/jpeg", {"Accept": "application/json;q=high"}, 400, "invalid q value"),
    "garbage image": (b"definitely not a jpeg", "image/jpeg", {}, 400, "not a decodable image"),
    "truncated jpeg": (GOOD[: len(GOOD) // 2], "image/jpeg", {}, 400, "truncated"),
    "bad base64": (b'{"image": "@@@not base64@@@"}', "application/json", {}, 400, "not valid base64"),
    "malformed json": (b'{"image": ', "application/json", {}, 400, "not valid JSON"),
    "wrong json shape": (b'{"picture": 1}', "application/json", {}, 400, 'expected {"image"'),
    "empty list": (b"[]", "application/json", {}, 400, "list is empty"),
    "too many images": (json.dumps([{"image": B64}] * 33).encode(), "application/json", {}, 413, "limit is 32"),
    "over 6 MiB": (b"\xff" * (6 * MIB + 1), "image/jpeg", {}, 413, None),
    "over pixel limit": (png_header_only(8_000, 8_000), "image/png", {}, 413, "the limit is 40.0 MP"),
    "url fetching off": (b'{"url": "https://example.com/dog.jpg"}', "application/json", {}, 400, "disabled"),
    "bad top_k": (GOOD, "image/jpeg", {CUSTOM: "top_k=lots"}, 400, "top_k"),
    "top_k zero": (GOOD, "image/jpeg", {CUSTOM: "top_k=0"}, 400, "positive integer"),
    "bad logits flag": (GOOD, "image/jpeg", {CUSTOM: "logits=maybe"}, 400, "logits must be true or false"),
    "many-scan jpeg": (many_scan_jpeg(64, 200), "image/jpeg", {}, 422, "210 scans; the limit is 100"),
}  # fmt: skip


def invoke(url: str, body: bytes, content_type: str, headers: dict | None = None) -> tuple[int, str]:
    """POST /invocations; (status, body text) for errors as for successes: the runtimes' error bodies differ
    in shape (our JSON; the toolkit's message and trace), never in status or message.

    A server may answer (413) and close before the whole body is sent, as TorchServe does: the answer is
    still read after the failed send, as a browser would.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.putrequest("POST", "/invocations")
        for name, value in {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            **(headers or {}),
        }.items():
            connection.putheader(name, value)
        connection.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.send(body)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def error_message(text: str) -> str:
    """The message of an error body: our endpoint's JSON ``error``, or the toolkit's text (message, then trace)."""
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return text
