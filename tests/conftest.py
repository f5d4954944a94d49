"""Shared fixtures: generated data, a shared trained run, and the real servers tests talk to (started
here, stopped after); plus the ``gpu`` marker's skip. Helpers that are not fixtures live in ``helpers/``.

- ``sample_root``: a tiny generated dataset in the dogImages layout.
- ``trained_run``: one tiny real training run for every test that needs *a* run, not a training.
- ``served_package``: that run packaged and unpacked, as the local endpoint serves it.
- ``mlflow_server``: an ``mlflow server`` process on localhost (SQLite backend, proxied artifacts).
- ``postgres`` / ``postgres_url``: a throwaway PostgreSQL 15 cluster (restartable, for fault tests).
- ``moto_endpoint``: moto in server mode (real HTTP, real boto3), with fake credentials in the env;
  ``fresh_aws_account``: credentials of an account of its own there, for one test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers.servers import BIN, PostgresCluster, free_port, postgres_binary, stop, wait_http
from helpers.training import FAST_OVERRIDES, TINY_RUN, TrainedRun, run_overrides

from conf.loader import load_config
from lightning_app.sample_data import generate

# One intra-op thread for this process and every subprocess (CLI, DDP ranks, servers), set before torch
# is first imported: test tensors are tiny, and on a small shared machine OpenMP threads spin-waiting for
# busy cores made a training step 10-20x slower than a single thread (measured on the 2-core CI box).
os.environ.setdefault("OMP_NUM_THREADS", "1")


# What runs write when they fall back to the working directory: the suite must write only under tmp dirs.
CHECKOUT = Path(__file__).resolve().parent.parent
RUN_OUTPUTS = ("mlruns", "mlartifacts", "mlflow.db", "optuna.db", "outputs", "lightning_logs")


def _run_outputs_in_checkout() -> set[Path]:
    found: set[Path] = set()
    for name in RUN_OUTPUTS:
        path = CHECKOUT / name
        found |= set(path.rglob("*")) if path.is_dir() else ({path} if path.exists() else set())
    return found


def pytest_sessionstart(session):
    session.config.stash[_CHECKOUT_BEFORE] = _run_outputs_in_checkout()


def pytest_sessionfinish(session, exitstatus):
    """The checkout stays clean: a test that writes runs, stores or checkpoints into it fails the session."""
    new = sorted(_run_outputs_in_checkout() - session.config.stash.get(_CHECKOUT_BEFORE, set()))
    if new:
        shown = "\n  ".join(str(p.relative_to(CHECKOUT)) for p in new[:10])
        print(f"\nthe test session wrote {len(new)} file(s) into the checkout:\n  {shown}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_CHECKOUT_BEFORE = pytest.StashKey[set]()


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests skip, with the reason, where CUDA is not available: the one place that decides."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is False on this machine")
    for item in gpu_tests:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dogImages")
    generate(root, num_classes=4, train_per_class=16, seed=0)
    return root


@pytest.fixture
def make_cfg(sample_root, tmp_path):
    """Compose the real config with fast test overrides, tracking into this test's SQLite file."""

    def _make(*overrides: str):
        return load_config(run_overrides(FAST_OVERRIDES, sample_root, tmp_path, *overrides))

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
        [*as_user, postgres_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200"
    # -o is remembered in postmaster.opts, so a restart keeps the port and socket folder.
    subprocess.run(
        [
            *as_user,
            postgres_binary("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "start",
            "-o",
            options,
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                *as_user,
                postgres_binary("createdb"),
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
            [*as_user, postgres_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
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


@pytest.fixture
def fresh_aws_account(moto_endpoint, monkeypatch) -> str:
    """An empty account of its own in the shared moto server: moto keys all state by the caller's account,
    so a test that lists or counts (roles, policies, log groups) sees only what it made itself."""
    import secrets

    import boto3

    account = f"{secrets.randbelow(10**11) + 10**11:012d}"
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/tests", RoleSessionName="tests"
    )["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it holds the credentials it was made with
    return account


@pytest.fixture(scope="session")
def trained_run(sample_root, tmp_path_factory) -> TrainedRun:
    """One tiny real training run shared by the session (packaging, serving, promotion, Lambda tests).

    Its ``checkpoints/`` artifact and metrics are in MLflow at ``tracking_uri``. Tests whose subject is
    training itself (learning, resume, DDP, S3 data) train their own, from the same ``helpers.training``.
    """
    from lightning_app.train import train

    overrides = run_overrides(TINY_RUN, sample_root, tmp_path_factory.mktemp("trained-run"))
    cfg = load_config(overrides)
    return TrainedRun(train(cfg), cfg.tracking_uri, overrides)


@pytest.fixture(scope="session")
def served_package(trained_run, tmp_path_factory) -> Path:
    """The shared run as an unpacked ``model.tar.gz``: what the local endpoint serves."""
    from deploy.packaging.builder import build_package, unpack

    root = tmp_path_factory.mktemp("served-package")
    return unpack(build_package(trained_run.result.best_checkpoint, root / "model.tar.gz"), root / "model")
