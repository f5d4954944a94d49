"""The local endpoint: SageMaker's container contract, plus the SageMaker Runtime route, on Starlette.

- ``GET /ping``: 200 once the model is loaded. The model loads during the ASGI lifespan startup, so
  the port only accepts connections when ready; afterwards ``/ping`` never touches the model, and
  decoding and inference run in threads, so it answers at once under load.
- ``POST /invocations``: runs the package's own ``code/inference.py`` (imported from the unpacked
  package, not from this repository), with concurrent requests micro-batched into one forward pass.
- ``POST /endpoints/{name}/invocations``: what boto3's ``sagemaker-runtime`` ``invoke_endpoint`` calls,
  so code written for a SageMaker endpoint (the Lambda handler) runs unchanged against this server.
  Container errors come back the way SageMaker wraps them: a ``ModelError`` (424) carrying
  ``OriginalStatusCode`` and ``OriginalMessage``.

Uvicorn handles SIGTERM: it stops accepting, lets in-flight requests finish (``serve.drain_timeout_s``),
then runs the lifespan shutdown, which stops the batcher.
"""

from __future__ import annotations

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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy.local_endpoint.batching import MicroBatcher

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
    """The ``serve`` config section as the package's own ``ServingSettings``."""
    fetch = None
    if cfg.url_fetch.enabled:
        fetch = serving.safe_fetch.FetchRules(
            tuple(cfg.url_fetch.allowed_hosts),
            cfg.url_fetch.max_bytes,
            cfg.url_fetch.timeout_s,
            cfg.url_fetch.max_redirects,
        )
    return serving.ServingSettings(cfg.top_k, cfg.max_image_pixels, cfg.max_images_per_request, fetch)


class PayloadTooLarge(ValueError):
    """The body is over serve.max_payload_bytes (413)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or PayloadTooLarge (413) past ``limit``; the rest is drained so the client reads the 413."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            too_large = True
        if not too_large:
            chunks.append(chunk)
        elif total > 8 * limit:  # stop reading an endless body; the connection gets closed
            break
    if too_large:
        size = f"{int(declared):,}" if declared.isdigit() else f"over {total:,}"
        raise PayloadTooLarge(f"request body is {size} bytes; the limit is {limit:,} (SageMaker's 6 MB)")
    return b"".join(chunks)


class Endpoint:
    """Model, batcher and request handling of one server process."""

    def __init__(self, package_dir: Path, cfg):
        self.package_dir = Path(package_dir)
        self.cfg = cfg
        self.serving = load_serving_module(self.package_dir)
        self.model = None
        self.batcher: MicroBatcher | None = None
        self.decode_limiter = anyio.CapacityLimiter(cfg.decode_threads or os.cpu_count() or 1)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        import torch

        torch.set_num_threads(self.cfg.torch_threads or max(1, (os.cpu_count() or 1) // self.cfg.workers))
        settings = serving_settings(self.serving, self.cfg)
        self.model = await anyio.to_thread.run_sync(
            partial(self.serving.load_model, self.package_dir, settings, self.cfg.device)
        )
        self.batcher = MicroBatcher(
            partial(self.serving.predict_many, model=self.model),
            size_of=lambda request: len(request.images),
            max_batch_size=self.cfg.max_batch_size,
            max_wait_s=self.cfg.max_wait_ms / 1000,
        )
        self.batcher.start()
        log.info("endpoint ready: %s", json.dumps(self.model.identity))
        try:
            yield
        finally:
            await self.batcher.stop()

    async def ping(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.model.identity})

    async def invoke(self, request: Request) -> tuple[int, bytes]:
        """Status and JSON body of one invocation; never raises for bad input."""
        serving = self.serving
        try:
            accept = request.headers.get("accept")
            serving.check_accept(accept)
            body = await read_body(request, self.cfg.max_payload_bytes)
            data = await anyio.to_thread.run_sync(
                partial(
                    serving.decode_request,
                    body,
                    request.headers.get("content-type"),
                    self.model,
                    request.headers.get(CUSTOM_ATTRIBUTES),
                ),
                limiter=self.decode_limiter,
            )
            prediction = await self.batcher.submit(data)
            return 200, serving.encode_response(prediction, accept).encode()
        except serving.RequestError as err:
            return err.status, json.dumps({"error": err.message, "status": err.status}).encode()
        except PayloadTooLarge as err:
            return 413, json.dumps({"error": str(err), "status": 413}).encode()
        except Exception:
            log.exception("invocation failed")
            return 500, json.dumps({"error": "internal error while predicting; see the server log"}).encode()

    async def invocations(self, request: Request) -> Response:
        status, body = await self.invoke(request)
        return Response(body, status_code=status, media_type="application/json")

    async def runtime_invoke_endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name != self.cfg.endpoint_name:
            return JSONResponse(
                {"message": f"Endpoint {name} of account local not found."},
                status_code=400,
                headers={"x-amzn-ErrorType": "ValidationError"},
            )
        status, body = await self.invoke(request)
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
        return JSONResponse(payload, status_code=424, headers={"x-amzn-ErrorType": "ModelError"})


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
    )
    app.state.endpoint = endpoint
    return app
