"""Poll for a state instead of sleeping a guessed time: fast when the state comes early, and a failure
that names what never happened when it does not."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy, and return that; fail after ``timeout`` s.

    ``what`` completes "timed out waiting for ...", so the failure says which state never came. An
    exception from ``predicate`` propagates at once: a server that died is not worth waiting for.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
