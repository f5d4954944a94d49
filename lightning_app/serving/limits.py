"""How the serving code refuses a request (``RequestError``) and bounds what one request may cost (``Budget``).

Part of the code inside ``model.tar.gz`` (see ``inference.py``): standard library only, plus the
inference toolkit's error type when SageMaker's container provides it.

A ``Budget`` is one deadline for everything a request makes us do after its body arrived: fetching its
URLs, decoding its images, waiting for and running the forward pass. Work that cannot be interrupted
from Python (a decoder in C) is cut into small steps that each ask the budget first, so an image that is
expensive to decode, or a client that has gone away, stops costing CPU within one step.
"""

from __future__ import annotations

import threading
import time

try:  # The toolkit running us in SageMaker's container: its error type keeps our 4xx status codes.
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # local endpoint, tests: the server reads ``status`` itself

    class _ToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str):
            super().__init__(message)


class RequestError(_ToolkitError):
    """A request the client can fix: ``status`` is the 4xx to answer, the message says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message, "Client Error")
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


class ClientGone(RequestError):
    """The client disconnected: nobody reads the answer, so the work stops (499, nginx's convention)."""

    def __init__(self):
        super().__init__(499, "the client closed the connection before the answer was ready")


class Budget:
    """The deadline of one request, and whether its client is still waiting; safe to share with threads."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """The client left: every later ``check`` raises ``ClientGone``."""
        self._cancelled.set()

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    def check(self, doing: str, status: int = 422, advice: str = "") -> None:
        """Raise unless there is time left; ``doing`` and ``advice`` make the message (status 422 by default:
        the request itself was too costly, e.g. an image whose structure makes it slow to decode)."""
        if self._cancelled.is_set():
            raise ClientGone()
        if self.remaining() <= 0:
            raise RequestError(
                status, f"{doing} took longer than this endpoint's {self.seconds:g} s request limit{advice}"
            )
