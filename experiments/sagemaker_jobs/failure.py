"""Why a job failed, in ``/opt/ml/output/failure``: SageMaker shows its first 1 KiB as ``FailureReason``.

Without it the reason is the SDK driver's generic ``CalledProcessError`` line (the driver and
``sm_train.sh`` write their own text only when the file is still empty). Every failing rank appends one
line, ``rank R: Type: message``, with one ``write`` on an ``O_APPEND`` descriptor, so ranks on a node
do not interleave. The text is redacted first: anyone who can describe the job reads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

FAILURE_FILE = "/opt/ml/output/failure"
SHOWN_BYTES = 1024  # what SageMaker shows of the file
RECORD_CHARS = 900  # one rank's line: the first rank's cause fits in what is shown, with room to spare
REDACTED = "***"
# scheme://user:password@host -> scheme://user:***@host
URI_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(@)")


def redact(text: str, secret_values: Iterable[str]) -> str:
    """Passwords in URIs and the secret's values (longest first, so no fragment of one is left)."""
    for value in sorted({v for v in secret_values if v}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return URI_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", text)


def failure_record(error: BaseException, rank: int, secret_values: Iterable[str]) -> str:
    """One line: the exception's type and message (first lines only), redacted and cut to size."""
    message = " ".join(str(error).split()) or "(no message)"
    text = redact(f"rank {rank}: {type(error).__name__}: {message}", secret_values)
    return (text if len(text) <= RECORD_CHARS else text[: RECORD_CHARS - 3] + "...") + "\n"


def append_failure(record: str, path: str | Path = FAILURE_FILE) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, record.encode("utf-8"))
    finally:
        os.close(descriptor)
