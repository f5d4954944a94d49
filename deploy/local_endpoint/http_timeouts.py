"""Connection deadlines uvicorn lacks: a request's head must arrive within ``serve.read_timeout_s``.

Uvicorn closes a connection left idle *after* a response (``timeout_keep_alive``), but a connection that
never completes its first request head, or trickles one byte at a time (slowloris), is held forever, and
enough of them exhaust the process's file descriptors. ``HeadTimeoutProtocol`` is uvicorn's own h11
protocol with one more timer, armed whenever the connection waits for a request head: when it fires,
a started head gets a 408 in the endpoint's JSON error shape and the connection is closed. Once the head
is in, the body has its own deadline in the app (``server.read_body``), also ``serve.read_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from functools import partial

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimeoutProtocol(H11Protocol):
    def __init__(self, *args, head_timeout_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_timeout_s = head_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._head_started = True
        super().data_received(data)
        if self._head_timer is not None and self._request_in_progress():
            self._stop_waiting()  # the head is in: the app's read deadline covers the body

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._request_in_progress():
            self._wait_for_head()  # keep-alive: the next head gets the same deadline

    def _request_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _wait_for_head(self) -> None:
        self._stop_waiting()
        self._head_started = False
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:  # h11 cannot answer a request it has not parsed: the response is written raw
            message = (
                f"the request head did not arrive within {self.head_timeout_s:g} s (serve.read_timeout_s)"
            )
            body = json.dumps({"error": message, "status": 408}).encode()
            head = (
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()


def uvicorn_timeouts(cfg) -> dict:
    """``uvicorn.Config`` options that apply the ``serve`` section's connection deadlines."""
    return {
        "http": partial(HeadTimeoutProtocol, head_timeout_s=float(cfg.read_timeout_s)),
        "timeout_keep_alive": cfg.keep_alive_timeout_s,
    }
