"""``deploy=local``: the local endpoint as a background process that outlives ``dogbreeds promote``.

Its pid and URL go to ``<output_dir>/local_endpoint.json`` so ``dogbreeds invoke`` finds it and
``dogbreeds teardown deploy=local`` (or the next promote) stops it with SIGTERM, which drains requests.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from deploy.local_endpoint import process as endpoint_process

STATE_FILE = "local_endpoint.json"


def state_path(output_dir: str) -> Path:
    return Path(output_dir) / STATE_FILE


def read_state(output_dir: str) -> dict | None:
    path = state_path(output_dir)
    return json.loads(path.read_text()) if path.is_file() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(output_dir: str, timeout_s: float = 30.0) -> dict | None:
    """SIGTERM the endpoint a previous promote started (if it still runs); returns its recorded state."""
    state = read_state(output_dir)
    if state is None:
        return None
    pid = int(state["pid"])
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    state_path(output_dir).unlink(missing_ok=True)
    return state


def start(tarball: Path, deploy, output_dir: str, run_id: str, timeout_s: float = 180.0) -> dict:
    """Replace any running local endpoint with one serving ``tarball``; returns once ``/ping`` is 200."""
    stop(output_dir)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    log_path = Path(output_dir) / "local_endpoint.log"
    # The server answers the runtime route only under its own endpoint name: make it the deployed one.
    overrides = [f"serve.endpoint_name={deploy.endpoint_name}"]
    process = endpoint_process.launch(str(tarball), overrides, log_path, deploy.local_port)
    url = f"http://127.0.0.1:{deploy.local_port}"
    try:
        endpoint_process.wait_until_ready(url, timeout_s, alive=lambda: process.poll() is None)
    except BaseException:
        process.terminate()
        raise
    state = {
        "pid": process.pid,
        "url": url,
        "endpoint_name": deploy.endpoint_name,
        "run_id": run_id,
        "package": str(tarball),
        "log": str(log_path),
    }
    state_path(output_dir).write_text(json.dumps(state, indent=2) + "\n")
    return state
