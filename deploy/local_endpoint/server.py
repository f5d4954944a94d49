"""The local endpoint: SageMaker's container contract, plus the SageMaker Runtime route, on Starlette.

- ``GET /ping``: 200 once the model is loaded. The model loads during the ASGI lifespan startup, so
  the port only accepts connections when ready; afterwards ``/ping`` never touches the model, and
  decoding and inference run in threads, so it answers at once under load.
- ``POST /invocations``: runs the package's own ``code/inference.py`` (imported from the unpacked
  package, not from this repository): requests are decoded in threads, then micro-batched into one
  forward pass on the model thread (``batching``).
- ``POST /endpoints/{name}/invocations``: what boto3's ``sagemaker-runtime`` ``invoke_endpoint`` calls,
  so code written for a SageMaker endpoint (the Lambda handler) runs unchanged against this server.
  Container errors come back the way SageMaker wraps them: a ``ModelError`` (424) carrying
  ``OriginalStatusCode`` and ``OriginalMessage``.

Every request gets deadlines: its body must arrive within ``serve.read_timeout_s`` (408), and after that
one ``Budget`` of ``serve.request_timeout_s`` covers URL fetches, decoding and the forward pass. A body
over ``serve.max_payload_bytes`` is refused (413) as soon as it crosses the limit, and a client that
disconnects stops its own decoding and drops out of the next batch. Every error, routing ones included,
has the JSON shape ``{"error": ..., "status": ...}``.

Uvicorn handles SIGTERM: it stops accepting, lets in-flight requests finish (``serve.drain_timeout_s``),
then runs the lifespan shutdown, which stops the batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import os
import sys
import types
from functools import partial
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy.local_endpoint.batching import MicroBatcher, model_thread
from deploy.local_endpoint.bodies import BodyRefused, RefusalWhileUploading, read_body

log = logging.getLogger(__name__)

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
VARIANT = "AllTraffic"


def load_serving_module(package_dir: Path) -> types.ModuleType:
    """Import ``code/inference.py`` of an unpacked package as a package module of its own.

    A synthetic parent package whose ``__path__`` is ``code/`` lets ``inference.py`` import its sibling
    ``safe_fetch`` relatively, without putting ``code/`` on ``sys.path`` for the whole process.
    """
    code = (package_dir / "code").resolve()
    name = "dogbreeds_package_" + hashlib.sha256(str(code).encode()).hexdigest()[:12]
    if name not in sys.modules:
        parent = types.ModuleType(name)
        parent.__path__ = [str(code)]
        sys.modules[name] = parent
    return importlib.import_module(f"{name}.inference")


def serving_settings(serving: types.ModuleType, cfg) -> object:
    """The ``serve`` config section as the package's own ``ServingSettings`` (ValueError for bad limits)."""
    for name in ("request_timeout_s", "read_timeout_s", "keep_alive_timeout_s", "max_jpeg_scans"):
        if not cfg[name] > 0:
            raise ValueError(f"serve.{name} must be greater than 0, got {cfg[name]}")
    fetch = None
    if cfg.url_fetch.enabled:
        fetch = serving.safe_fetch.FetchRules(
            tuple(cfg.url_fetch.allowed_hosts),
            cfg.url_fetch.max_bytes,
            cfg.url_fetch.timeout_s,
            cfg.url_fetch.max_redirects,
        )
    return serving.ServingSettings(
        cfg.top_k,
        cfg.max_image_pixels,
        cfg.max_images_per_request,
        fetch,
        cfg.request_timeout_s,
        cfg.max_jpeg_scans,
    )


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


def allowed(exc: HTTPException) -> str:
    return ", ".join(sorted((exc.headers or {}).get("Allow", "").split(", ")))


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Routing errors (404, 405) in the same JSON shape as every other error."""
    messages = {
        404: f"no route {request.url.path}; use GET /ping or POST /invocations",
        # Starlette's Allow lists a set: sorted, so the message does not change from one process to the next.
        405: f"{request.method} is not allowed on {request.url.path}; use {allowed(exc)}",
    }
    message = messages.get(exc.status_code, exc.detail)
    return Response(error_body(exc.status_code, message), exc.status_code, exc.headers, "application/json")


class Endpoint:
    """Model, batcher and request handling of one server process."""

    def __init__(self, package_dir: Path, cfg):
        self.package_dir = Path(package_dir)
        self.cfg = cfg
        self.serving = load_serving_module(self.package_dir)
        self.model = None
        self.batcher: MicroBatcher | None = None
        self.model_thread = model_thread()
        self.decode_limiter = anyio.CapacityLimiter(cfg.decode_threads or os.cpu_count() or 1)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        import torch

        torch.set_num_threads(self.cfg.torch_threads or max(1, (os.cpu_count() or 1) // self.cfg.workers))
        settings = serving_settings(self.serving, self.cfg)
        load = partial(self.serving.load_model, self.package_dir, settings, self.cfg.device)
        try:
            self.model = await asyncio.get_running_loop().run_in_executor(self.model_thread, load)
            self.batcher = MicroBatcher(
                partial(self.serving.predict_many, model=self.model),
                size_of=lambda request: len(request.images),
                max_batch_size=self.cfg.max_batch_size,
                max_wait_s=self.cfg.max_wait_ms / 1000,
                executor=self.model_thread,
            )
            self.batcher.start()
            log.info("endpoint ready: %s", json.dumps(self.model.identity))
            yield
        finally:
            if self.batcher:
                await self.batcher.stop()
            self.model_thread.shutdown(wait=True)

    async def ping(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.model.identity})

    async def invoke(self, request: Request) -> tuple[int, bytes, bool]:
        """Status and JSON body of one invocation, and whether the request body was refused unread;
        never raises for bad input."""
        serving = self.serving
        try:
            serving.check_accept(request.headers.get("accept"))
            body = await read_body(request, self.cfg.max_payload_bytes, self.cfg.read_timeout_s)
            budget = serving.Budget(self.cfg.request_timeout_s)
            answer = None
            # _answer returns errors as answers: raised out of a task group they would come wrapped.
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._stop_when_client_leaves, request, budget, tasks.cancel_scope)
                answer = await self._answer(request, body, budget)
                tasks.cancel_scope.cancel()
            if answer is None:  # the client left: nobody reads this
                raise serving.ClientGone()
            return (*answer, False)
        except serving.RequestError as err:
            return err.status, error_body(err.status, err.message), False
        except BodyRefused as err:
            return err.status, error_body(err.status, str(err)), True
        except ClientDisconnect:
            return 499, error_body(499, "the client closed the connection while sending the body"), False
        except Exception:
            log.exception("invocation failed")
            return 500, error_body(500, "internal error while predicting; see the server log"), False

    def _response(self, body: bytes, status: int, headers: dict, unread: bool) -> Response:
        if unread:
            return RefusalWhileUploading(body, status, headers, self.cfg.read_timeout_s)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    async def _answer(self, request: Request, body: bytes, budget) -> tuple[int, bytes]:
        serving = self.serving
        try:
            return await self._predict(request, body, budget)
        except serving.RequestError as err:
            return err.status, error_body(err.status, err.message)

    async def _predict(self, request: Request, body: bytes, budget) -> tuple[int, bytes]:
        serving = self.serving

        def decode():
            budget.check("waiting for a decoding thread", status=503, advice="; the endpoint is overloaded")
            return serving.decode_request(
                body,
                request.headers.get("content-type"),
                self.model,
                request.headers.get(CUSTOM_ATTRIBUTES),
                budget,
            )

        data = await anyio.to_thread.run_sync(decode, limiter=self.decode_limiter)
        prediction = None
        with anyio.move_on_after(budget.remaining()):
            prediction = await self.batcher.submit(data)
        if prediction is None:  # the budget ran out in the queue
            message = (
                f"no prediction within this endpoint's {budget.seconds:g} s request limit; it is overloaded"
            )
            return 503, error_body(503, message)
        return 200, serving.encode_response(prediction, request.headers.get("accept")).encode()

    @staticmethod
    async def _stop_when_client_leaves(request: Request, budget, scope: anyio.CancelScope) -> None:
        """Once the body is read, the next ASGI message is the disconnect: then stop the request's work
        (decoding checks the budget between steps; a cancelled batch entry is skipped)."""
        while (await request.receive())["type"] != "http.disconnect":
            pass
        budget.cancel()
        scope.cancel()

    async def invocations(self, request: Request) -> Response:
        status, body, unread = await self.invoke(request)
        return self._response(body, status, {}, unread)

    async def runtime_invoke_endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name != self.cfg.endpoint_name:
            return JSONResponse(
                {"message": f"Endpoint {name} of account local not found."},
                status_code=400,
                headers={"x-amzn-ErrorType": "ValidationError"},
            )
        status, body, unread = await self.invoke(request)
        if status == 200:
            return Response(
                body,
                media_type="application/json",
                headers={"x-Amzn-Invoked-Production-Variant": VARIANT},
            )
        kind = "client" if status < 500 else "server"
        original = body.decode()
        payload = {
            "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
            "message": f'Received {kind} error ({status}) from primary with message "{original}".',
            "OriginalStatusCode": status,
            "OriginalMessage": original,
            "LogStreamArn": f"local:{self.cfg.endpoint_name}",
        }
        return self._response(json.dumps(payload).encode(), 424, {"x-amzn-ErrorType": "ModelError"}, unread)


def create_app(package_dir: str | Path, cfg) -> Starlette:
    """ASGI app serving the unpacked package in ``package_dir`` with the ``serve`` config section."""
    endpoint = Endpoint(Path(package_dir), cfg)
    app = Starlette(
        routes=[
            Route("/ping", endpoint.ping, methods=["GET"]),
            Route("/invocations", endpoint.invocations, methods=["POST"]),
            Route("/endpoints/{name}/invocations", endpoint.runtime_invoke_endpoint, methods=["POST"]),
        ],
        lifespan=endpoint.lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.endpoint = endpoint
    return app
