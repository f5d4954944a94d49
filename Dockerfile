# Bring-your-own-container image of the local endpoint (the same server as `dogbreeds serve`).
#
# SageMaker starts it as `docker run IMAGE serve` with the unpacked model.tar.gz in /opt/ml/model and
# expects GET /ping and POST /invocations on port 8080 (or $SAGEMAKER_BIND_TO_PORT).
#   docker build -t dogbreeds-endpoint .
#   docker run -p 8080:8080 -v "$PWD/model:/opt/ml/model:ro" dogbreeds-endpoint serve
# Serving limits are Hydra overrides in DOGBREEDS_SERVE_ARGS, e.g. "serve.max_batch_size=32".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DOGBREEDS_SERVE_ARGS=""

WORKDIR /opt/dogbreeds
COPY pyproject.toml constraints.txt README.md ./
COPY dogbreeds ./dogbreeds
COPY lightning_app ./lightning_app
COPY experiments ./experiments
COPY deploy ./deploy
COPY conf ./conf
# CPU wheels of the pinned torch/torchvision; use the CUDA index for GPU instances.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt . \
    && useradd --system --uid 1000 model

USER model
EXPOSE 8080
# `sh -c` ignores SageMaker's trailing "serve" argument; `exec` makes the server PID 1, so SIGTERM from
# `docker stop` or SageMaker reaches uvicorn directly and in-flight requests drain.
ENTRYPOINT ["/bin/sh", "-c", "exec dogbreeds serve /opt/ml/model serve.host=0.0.0.0 $DOGBREEDS_SERVE_ARGS", "--"]
