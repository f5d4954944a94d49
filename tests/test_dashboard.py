"""``dogbreeds dashboard``: a real optuna-dashboard process on a sweep's storage answers HTTP with the study,
and stops cleanly on SIGINT (Ctrl-C) and on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
from helpers.servers import free_port, stop, wait_http

from dogbreeds.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def storage(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="dashboard-test", storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    return url


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_dashboard_serves_the_study_and_stops(storage, tmp_path, stop_signal):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "dogbreeds",
        "dashboard",
        "--port",
        str(port),
        f"sweep.storage={storage}",
    ]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
            studies = json.load(response)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dashboard-test"]
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            stop(proc)
    output = proc.stdout.read()
    assert f"optuna-dashboard on http://127.0.0.1:{port}/" in output and "dashboard stopped" in output


def test_missing_default_storage_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard"]) == 2
    err = capsys.readouterr().err
    assert "no study storage at sqlite:///" in err and "run dogbreeds sweep here first" in err
    assert not (tmp_path / "optuna.db").exists()
