"""Run the local endpoint: in the foreground (``dogbreeds serve``), in a thread, or as a subprocess.

``promote deploy=local`` and the tests use ``launch`` + ``wait_until_ready`` (a separate process that
outlives the caller and drains on SIGTERM) or ``start_in_thread`` (in-process, stopped explicitly).
A source is a ``model.tar.gz``, an unpacked package folder, or an MLflow run id (packaged on the fly).
Every way of running applies the ``serve`` section's connection deadlines (``http_timeouts``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from deploy.local_endpoint.http_timeouts import uvicorn_timeouts
from deploy.packaging.builder import build_package, unpack

log = logging.getLogger(__name__)

PACKAGE_ENV = "DOGBREEDS_SERVE_PACKAGE"
CONFIG_ENV = "DOGBREEDS_SERVE_CONFIG"


def resolve_port(cfg) -> int:
    """``serve.port``, else ``$SAGEMAKER_BIND_TO_PORT`` (the container contract), else 8080."""
    if cfg.port is not None:
        return int(cfg.port)
    return int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))


def prepare_package(source: str, workdir: Path, tracking_uri: str | None = None) -> Path:
    """An unpacked package folder for ``source`` (tarball, folder or run id), under ``workdir``."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if not path.exists() and not source.endswith((".tar.gz", ".tgz")):
        path = build_package(source, workdir / "model.tar.gz", tracking_uri)
    return unpack(path, workdir / "model")


@contextlib.contextmanager
def exported(variables: dict[str, str]):
    """``variables`` in this process's environment while the block runs, then what was there before.

    Uvicorn starts its worker processes (and restarts crashed ones) from this environment while
    ``uvicorn.run`` blocks, and builds each app from an import string: the environment is the only way
    to hand them the package and config. Restoring it leaves the caller's environment as it was, with
    no variable pointing at a package folder that is deleted when serving ends.
    """
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def app_from_environment():
    """Uvicorn factory for ``serve.workers > 1``: each worker process builds its own app and model."""
    from deploy.local_endpoint.server import create_app

    return create_app(os.environ[PACKAGE_ENV], OmegaConf.create(json.loads(os.environ[CONFIG_ENV])))


def _drained_server(config):
    """A ``uvicorn.Server`` whose SIGTERM/SIGINT shutdown returns normally once drained.

    Uvicorn re-raises the signal after its graceful shutdown, so the process would end with -15 although
    every request was answered; a drained stop is a success (exit status 0, as the README promises). A
    shutdown that fails still raises, and then the signal is re-raised as before.
    """
    import uvicorn

    class DrainedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return DrainedServer(config)


def serve(source: str, cfg: DictConfig, tracking_uri: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests (blocking; ``dogbreeds serve``)."""
    import uvicorn

    from deploy.local_endpoint.server import create_app

    with tempfile.TemporaryDirectory(prefix="dogbreeds-serve-") as tmp:
        package_dir = prepare_package(source, Path(tmp), tracking_uri)
        options = {
            "host": cfg.host,
            "port": resolve_port(cfg),
            "log_level": "info",
            "timeout_graceful_shutdown": int(cfg.drain_timeout_s),
            **uvicorn_timeouts(cfg),
        }
        log.info("serving %s on http://%s:%d", source, cfg.host, options["port"])
        if cfg.workers > 1:
            settings = {
                PACKAGE_ENV: str(package_dir),
                CONFIG_ENV: json.dumps(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)),
            }
            with exported(settings):
                uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=cfg.workers, **options)
        else:
            _drained_server(uvicorn.Config(create_app(package_dir, cfg), **options)).run()


@dataclass
class LocalEndpoint:
    """A server running in a thread of this process."""

    url: str
    server: object
    thread: threading.Thread

    @property
    def app(self):
        return self.server.config.app

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_in_thread(package_dir: Path, cfg: DictConfig, timeout: float = 120.0) -> LocalEndpoint:
    """Start on ``cfg.host`` (port 0 picks a free one) and return once ``/ping`` answers 200."""
    import uvicorn

    from deploy.local_endpoint.server import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.host, int(cfg.port or 0)))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(package_dir, cfg), log_level="warning", lifespan="on", **uvicorn_timeouts(cfg)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="endpoint")
    thread.start()
    url = f"http://{host}:{port}"
    endpoint = LocalEndpoint(url, server, thread)
    try:
        wait_until_ready(url, timeout, alive=thread.is_alive)
    except BaseException:
        endpoint.stop()
        raise
    return endpoint


def launch(source: str, overrides: list[str], log_path: Path, port: int) -> subprocess.Popen:
    """``dogbreeds serve SOURCE`` as a child process (logs to ``log_path``); pair with wait_until_ready."""
    command = [sys.executable, "-m", "dogbreeds.cli", "serve", str(source), f"serve.port={port}", *overrides]
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def wait_until_ready(url: str, timeout: float = 120.0, alive=lambda: True) -> None:
    """Poll ``GET /ping`` until 200; fail early if the server (``alive``) died while loading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the endpoint at {url} exited before it was ready; see its log")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}/ping did not answer 200 within {timeout:.0f}s")
