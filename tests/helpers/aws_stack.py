"""AWS's PyTorch serving stack on localhost: TorchServe under the ``sagemaker-pytorch-inference`` toolkit,
started through the toolkit's own entry point (``serving.main()``, what the inference image's
``dockerd-entrypoint.py serve`` runs), in the inference-image environment (``inference_image.py``).

``SAGEMAKER_BASE_DIR`` points the toolkit at a temporary ``<base>/model`` holding the unpacked
``model.tar.gz``, as SageMaker puts it at ``/opt/ml/model``. The toolkit writes its TorchServe config to
``/etc/sagemaker-ts.properties`` (a constant in its code) and its model store under the working directory,
which is the temporary base. TorchServe needs Java 17+ on PATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

if __package__:
    from .inference_image import INFERENCE_IMAGE
    from .servers import free_port, wait_http
    from .waiting import wait_for
else:
    from inference_image import INFERENCE_IMAGE
    from servers import free_port, wait_http
    from waiting import wait_for

INHERITED_NOT = ("SAGEMAKER_", "TS_", "DOGBREEDS_", "OMP_NUM_THREADS", "PYTHONPATH")
ENTRY_POINT = "from sagemaker_pytorch_serving_container import serving; serving.main()"


class JavaMissing(RuntimeError):
    """TorchServe's front end is Java: the message says how to install it."""


def check_java() -> None:
    if shutil.which("java") is None:
        raise JavaMissing(
            "TorchServe needs a Java runtime (17+) on PATH: apt-get install -y default-jre-headless"
        )


def workers_ready(url: str, proc: subprocess.Popen) -> bool:
    """True once every worker of the model is READY (TorchServe's management API, on the same port)."""
    if proc.poll() is not None:
        raise RuntimeError(f"the toolkit's entry point exited with {proc.returncode}")
    try:
        with urllib.request.urlopen(f"{url}/models/model", timeout=5) as response:
            workers = json.loads(response.read())[0]["workers"]
    except OSError:
        return False
    return bool(workers) and all(worker["status"] == "READY" for worker in workers)


@contextlib.contextmanager
def aws_stack(model_dir: Path, base: Path, environment: dict[str, str], timeout_s: float = 180.0):
    """Serve ``model_dir`` (an unpacked package) in AWS's stack; yields its base URL, stops it afterwards.

    ``environment`` is the SageMaker Model's (promote's variables, or none for the container defaults).
    """
    check_java()
    python = INFERENCE_IMAGE.built_python()
    if python is None:
        raise RuntimeError(
            "the inference-image environment is not built: python tests/helpers/inference_image.py"
        )
    shutil.copytree(model_dir, base / "model")
    port = free_port()
    env = {
        # The container's own defaults unless ``environment`` says otherwise: none of the caller's settings.
        **{k: v for k, v in os.environ.items() if not k.startswith(INHERITED_NOT)},
        "PATH": f"{python.parent}:{os.environ['PATH']}",
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_PROGRAM": "inference.py",
        **environment,
    }
    log = open(base / "entry-point.log", "wb")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen(
        [str(python), "-c", ENTRY_POINT], cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ping", timeout=timeout_s, proc=proc)
        # /ping answers before the workers have loaded the model: wait for TorchServe to call them ready.
        wait_for(lambda: workers_ready(url, proc), timeout_s, "TorchServe's workers to load the model", 0.5)
        yield url
    except Exception:
        log.flush()
        print((base / "entry-point.log").read_text(errors="replace")[-6000:])
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the entry point stops TorchServe; its group goes too
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
