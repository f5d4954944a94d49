"""Copies of a tracking store, so a test may register and tag without touching the shared run's store."""

from __future__ import annotations

import sqlite3


def copy_tracking_store(tracking_uri: str, folder) -> str:
    """The run's SQLite store copied (artifacts stay shared, read-only): a registry of this test's own."""
    copy = folder / "mlflow.db"
    source, target = sqlite3.connect(tracking_uri.removeprefix("sqlite:///")), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{copy}"
