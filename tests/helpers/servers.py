"""Processes the tests start (servers, console scripts): where they live, a port, readiness, stopping."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers.waiting import wait_for

# The venv's bin folder: console scripts (dogbreeds, mlflow, torchrun) of the interpreter running the tests.
BIN = Path(sys.executable).parent


def run_cli(verb: str, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``dogbreeds VERB args...`` as a user runs it, in ``cwd``; fails the test with the output's tail
    unless it exits 0. ``timeout`` turns a hang (a DDP rank left waiting) into a failure."""
    proc = subprocess.run(
        [str(BIN / "dogbreeds"), verb, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def free_port() -> int:
    """A port nothing listens on right now (for a server we start next, or a connection that must fail)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str, proc: subprocess.Popen | None = None) -> bool:
    """True once ``url`` answers a GET; raises if ``proc`` (the server) has exited meanwhile."""
    if proc is not None and proc.poll() is not None:
        raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    wait_for(lambda: answers(url, proc), timeout, f"{url} to answer", interval=0.2)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def postgres_binary(name: str) -> str:
    """``initdb``, ``pg_ctl``... from PATH, else from the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise FileNotFoundError(
            f"PostgreSQL binary {name} not found: install postgresql (apt-get install postgresql)"
        )
    return str(candidates[-1])


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster: ``url`` to the empty database ``dogbreeds``, and a restart for fault tests."""

    url: str
    data: Path
    log: Path
    as_user: list[str]

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is dropped; the server is back on the same port.

        ``-l`` again: without it the new server would hold our stdout pipe open for ever.
        """
        command = [
            postgres_binary("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-m",
            "fast",
            "restart",
        ]
        subprocess.run(
            [*self.as_user, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


def post(url: str, body: bytes, content_type: str | None, headers: dict | None = None):
    """POST ``body``; returns (status, JSON answer) for errors as for successes."""
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers or {}))
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@contextlib.contextmanager
def mlflow_models_serve(model_uri: str, tracking_uri: str, log: Path, timeout: float = 120.0):
    """``mlflow models serve`` of ``model_uri`` in this environment (output to ``log``); yields its
    ``/invocations`` URL."""
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    # MLflow execs ``uvicorn`` by name: the venv's bin folder must be on PATH (it is not when pytest is
    # run by path).
    path = f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [str(mlflow_cli), "models", "serve", "-m", model_uri, "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port)],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", timeout, server)
        except (RuntimeError, AssertionError) as err:
            stop(server)
            raise AssertionError(f"mlflow models serve: {err}\n{log.read_text()[-3000:]}") from None
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        stop(server)
