"""Shared fixtures: generated data, and the real servers tests talk to (started here, stopped after).

- ``sample_root``: a tiny generated dataset in the dogImages layout.
- ``mlflow_server``: an ``mlflow server`` process on localhost (SQLite backend, proxied artifacts).
- ``postgres`` / ``postgres_url``: a throwaway PostgreSQL 15 cluster (restartable, for fault tests).
- ``moto_endpoint``: moto in server mode (real HTTP, real boto3), with fake credentials in the env.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conf.loader import load_config
from lightning_app.sample_data import generate

BIN = Path(sys.executable).parent

# One intra-op thread for this process and every subprocess (CLI, DDP ranks, servers), set before torch
# is first imported: test tensors are tiny, and on a small shared machine OpenMP threads spin-waiting for
# busy cores made a training step 10-20x slower than a single thread (measured on the 2-core CI box).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Small everything: a few classes, 64 px, resnet18 without pretrained weights, CPU.
FAST_OVERRIDES = [
    "trainer=demo",
    "data.image_size=48",
    "data.batch_size=16",
    "data.num_workers=0",
    "model.lr=0.003",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dogImages")
    generate(root, num_classes=4, train_per_class=16, seed=0)
    return root


@pytest.fixture
def make_cfg(sample_root, tmp_path):
    """Compose the real config with fast test overrides, tracking into this test's SQLite file."""

    def _make(*overrides: str, tracking_uri: str | None = None):
        uri = tracking_uri or f"sqlite:///{tmp_path / 'mlflow.db'}"
        return load_config(
            [
                *FAST_OVERRIDES,
                f"data.root={sample_root}",
                f"tracking_uri={uri}",
                f"output_dir={tmp_path / 'outputs'}",
                *overrides,
            ]
        )

    return _make


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URL of a real ``mlflow server`` (SQLite backend store, artifacts served through the server)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "2",
    ]  # fmt: skip
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=root)
        try:
            wait_http(f"{url}/health", timeout=120, proc=proc)
            yield url
        finally:
            stop(proc)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        pytest.fail(f"PostgreSQL binary {name} not found: install postgresql (apt-get install postgresql)")
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
        subprocess.run(
            [
                *self.as_user,
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-m",
                "fast",
                "restart",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster, run as the ``postgres`` user when we are root."""
    base = Path(tempfile.mkdtemp(prefix="pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200"
    # -o is remembered in postmaster.opts, so a restart keeps the port and socket folder.
    subprocess.run(
        [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "start", "-o", options],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                *as_user,
                _pg_bin("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "dogbreeds",
            ],
            check=True,
            capture_output=True,
        )
        # The documented URL form (no driver suffix): SQLAlchemy picks psycopg 3.
        yield PostgresCluster(
            f"postgresql://postgres@127.0.0.1:{port}/dogbreeds", data, base / "log", as_user
        )
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres) -> str:
    return postgres.url


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto in server mode on localhost; boto3 clients reach it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
    )
    try:
        yield url
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def trained_run(sample_root, tmp_path_factory):
    """One tiny real training run shared by the session (packaging, serving, promotion tests).

    Returns (TrainResult, tracking URI): the run's ``checkpoints/`` artifact and its metrics are in MLflow.
    """
    from lightning_app.train import train

    root = tmp_path_factory.mktemp("trained-run")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    overrides = [o for o in FAST_OVERRIDES if not o.startswith("data.image_size")]
    cfg = load_config(
        [
            *overrides,
            "data.image_size=32",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            f"data.root={sample_root}",
            f"tracking_uri={uri}",
            f"output_dir={root / 'outputs'}",
        ]
    )
    return train(cfg), uri
