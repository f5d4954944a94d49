"""Request bodies: read within a size limit and a deadline, and refused without reading the rest.

A body over ``serve.max_payload_bytes`` is refused the moment that is known: from ``Content-Length``
before any of it is read, or as soon as a chunked body crosses the limit, so an endless upload costs
at most the limit in memory and no waiting. Most clients (urllib, requests, boto3) only read the answer
once they have sent the whole body, and a connection closed under them ends in a broken pipe instead of
the 413; so the refusal goes out at once and the rest of the upload is read and thrown away for at most
``serve.read_timeout_s`` before the connection closes (nginx's "lingering close").
"""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response


class BodyRefused(ValueError):
    """The body is not read to its end (``status``: 413 too large, 408 too slow)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, or BodyRefused: 413 as soon as it is known to exceed ``limit``, 408 if it has not fully
    arrived ``timeout_s`` after the request head (a slowloris upload)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyRefused(
            413, f"request body is {int(declared):,} bytes; the limit is {limit:,} (SageMaker's 6 MB)"
        )
    chunks, total = [], 0
    with anyio.move_on_after(timeout_s) as waiting:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise BodyRefused(
                    413, f"request body passed {limit:,} bytes; the limit is {limit:,} (SageMaker's 6 MB)"
                )
            chunks.append(chunk)
    if waiting.cancelled_caught:
        raise BodyRefused(
            408,
            f"the request body did not arrive within {timeout_s:g} s (serve.read_timeout_s); send it at once",
        )
    return b"".join(chunks)


class RefusalWhileUploading(Response):
    """A JSON error answered while the client may still be uploading: the whole answer is sent at once,
    then the upload is drained (discarded) until it ends, the client leaves or ``linger_s`` passes, and
    the connection is closed."""

    def __init__(self, body: bytes, status: int, headers: dict, linger_s: float):
        super().__init__(body, status, {**headers, "connection": "close"}, "application/json")
        self.linger_s = linger_s

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        with anyio.move_on_after(self.linger_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    break
        await send({"type": "http.response.body", "body": b"", "more_body": False})
