"""AWS's PyTorch serving stack on localhost: TorchServe under the ``sagemaker-pytorch-inference`` toolkit,
started through the toolkit's own entry point (``serving.main()``, what the inference image's
``dockerd-entrypoint.py serve`` runs), in the inference-image environment (``inference_image.py``).

``SAGEMAKER_BASE_DIR`` points the toolkit at a temporary ``<base>/model`` holding the unpacked
``model.tar.gz``, as SageMaker puts it at ``/opt/ml/model``. The toolkit writes its TorchServe config to
``/etc/sagemaker-ts.properties`` (a constant in its code) and its model store under the working directory,
which is the temporary base. TorchServe needs Java 17+ on PATH.

Before TorchServe starts, ``load_check`` runs the package's own ``model_fn`` in the image's Python: a
package the image cannot load fails there in seconds with its real cause, where TorchServe would only
retry the worker until a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from conf.errors import DogbreedsError

INHERITED_NOT = ("SAGEMAKER_", "TS_", "DOGBREEDS_", "OMP_NUM_THREADS", "PYTHONPATH")
ENTRY_POINT = "from sagemaker_pytorch_serving_container import serving; serving.main()"
# model_fn of the package's code/inference.py, as the toolkit calls it; stderr carries the cause.
LOAD_CHECK = (
    "import sys; sys.path.insert(0, sys.argv[1] + '/code'); import inference\n"
    "try:\n    inference.model_fn(sys.argv[1])\n"
    "except Exception as e:\n    sys.exit(f'{type(e).__name__}: {e}')"
)


class StackUnavailable(DogbreedsError):
    """The stack cannot run here (no Java, environment not built); the message says how to provide it."""


class StackFailed(DogbreedsError):
    """The stack ran but could not load or serve the package; the message carries the cause."""


def check_java() -> None:
    if shutil.which("java") is None:
        raise StackUnavailable(
            "TorchServe needs a Java runtime (17+) on PATH: apt-get install -y default-jre-headless"
        )


def load_check(python: Path, package_dir: Path, environment: dict[str, str]) -> None:
    """Load the package with its own ``model_fn`` in the image's Python; raises ``StackFailed`` with the cause."""
    done = subprocess.run(
        [str(python), "-c", LOAD_CHECK, str(package_dir)],
        env={**clean_environment(), **environment}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        cause = " ".join(done.stderr.split())[-1000:]  # one line; a traceback's end says most
        raise StackFailed(cause or f"exit status {done.returncode}")


def clean_environment() -> dict[str, str]:
    """The caller's environment without its serving settings: the container's own defaults apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_NOT)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workers_ready(url: str) -> bool:
    """True once every worker of the model is READY (TorchServe's management API, on the same port)."""
    try:
        with urllib.request.urlopen(f"{url}/models/model", timeout=5) as response:
            workers = json.loads(response.read())[0]["workers"]
    except (OSError, ValueError, LookupError):
        return False
    return bool(workers) and all(worker["status"] == "READY" for worker in workers)


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """/ping answers before the workers have loaded the model: wait for TorchServe to call them ready."""
    deadline = time.monotonic() + timeout_s
    while not workers_ready(url):
        if proc.poll() is not None:
            raise StackFailed(f"the toolkit's entry point exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise StackFailed(f"TorchServe's workers were not ready after {timeout_s:.0f} s")
        time.sleep(0.5)


@contextlib.contextmanager
def serve(python: Path, model_dir: Path, base: Path, environment: dict[str, str], timeout_s: float = 180.0):
    """Serve ``model_dir`` (an unpacked package) in AWS's stack; yields its base URL, stops it afterwards.

    ``python`` is the inference-image environment's; ``environment`` is the SageMaker Model's (promote's
    variables, or none for the container defaults). The entry point's log is ``base/entry-point.log``.
    """
    check_java()
    shutil.copytree(model_dir, base / "model")
    port = free_port()
    env = {
        **clean_environment(),
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_PROGRAM": "inference.py",
        **environment,
    }
    log_path = base / "entry-point.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(python), "-c", ENTRY_POINT], cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc, timeout_s)
            yield url
        except StackFailed as failed:
            log.flush()
            tail = log_path.read_text(errors="replace")[-3000:]
            raise StackFailed(f"{failed}; the entry point's log ends:\n{tail}") from None
        finally:
            stop(proc)


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # the entry point stops TorchServe; its group goes too
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
