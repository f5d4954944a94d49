"""``dogbreeds serve`` with several uvicorn workers (deploy/local_endpoint/process.py), run in its own
interpreter as the CLI runs it: the workers get the package and config, the caller's environment does not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.servers import free_port

pytestmark = pytest.mark.slow

# Serve with two workers until they answer an invocation, then SIGTERM ourselves (what stops
# `dogbreeds serve`) and report which environment variables differ from before serving.
SERVE_AND_REPORT = """
import json, os, signal, sys, threading, traceback, urllib.request
from conf.loader import load_config
from deploy.local_endpoint.process import serve, wait_until_ready

package, port, image = sys.argv[1], int(sys.argv[2]), sys.argv[3]
url = f"http://127.0.0.1:{port}"
before = dict(os.environ)

def invoke_then_stop():
    try:
        wait_until_ready(url, timeout=120)
        request = urllib.request.Request(
            f"{url}/invocations", data=open(image, "rb").read(), headers={"Content-Type": "image/jpeg"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            print(json.dumps({"status": response.status}), flush=True)
    except BaseException:
        traceback.print_exc()
        os._exit(3)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=invoke_then_stop, daemon=True).start()
serve(package, load_config(["serve.workers=2", f"serve.port={port}"]).serve)
changed = sorted(k for k in before.keys() | os.environ.keys() if before.get(k) != os.environ.get(k))
print(json.dumps({"changed": changed}), flush=True)
"""


def test_workers_get_their_settings_and_the_callers_environment_is_restored(served_package, sample_root):
    image = sorted((sample_root / "test").rglob("*.jpg"))[0]
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, str(served_package), str(free_port()), str(image)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert reports == [{"status": 200}, {"changed": []}], done.stdout
