"""The overrides every test training starts from, written once: tests add only what their subject needs.

``FAST_OVERRIDES``: a few classes at 48 px, resnet18 from scratch on CPU, no loader workers.
``TINY_RUN``: the smallest run that still fits, tests and logs everything (32 px, one epoch).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

FAST_OVERRIDES = [
    "trainer=demo",
    "data.image_size=48",
    "data.batch_size=16",
    "data.num_workers=0",
    "model.lr=0.003",
]
TINY_RUN = [*FAST_OVERRIDES, "data.image_size=32", "trainer.max_epochs=1"]


def run_overrides(base: list[str], data_root, workdir: Path, *extra: str) -> list[str]:
    """``base`` on ``data_root``, tracking into ``workdir/mlflow.db`` and writing under ``workdir/outputs``.

    Later overrides win, so ``extra`` may replace any of these (another tracking URI, output_dir...).
    """
    return [
        *base,
        f"data.root={data_root}",
        f"tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
        f"output_dir={workdir / 'outputs'}",
        *extra,
    ]


class TrainedRun(NamedTuple):
    """A finished training run: its result, where it is tracked, and the overrides that made it."""

    result: object  # lightning_app.train.TrainResult
    tracking_uri: str
    overrides: list[str]
