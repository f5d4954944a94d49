"""SageMaker's CreateTrainingJob limits, checked before anything is uploaded.

The request is sent only after the source and the job document are uploaded; a value SageMaker refuses
would then fail with a ValidationException and leave orphaned uploads. moto does not enforce these
limits, so without this check a test run cannot see them either. Only what users control is checked:
tag values (``backend.tags``, ``experiment_name``, the study name), ``backend.job_prefix`` and the
environment (``backend.secret_id``). Overrides have no limit: they travel in the job document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
TAG_PUNCTUATION = set("_.:/=+-@")
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
MAX_ENVIRONMENT_VALUE = 512


class RequestLimitError(ValueError):
    """A job definition SageMaker would refuse; the message names the limit and the key to change."""


def _tag_characters_ok(text: str) -> bool:
    """SageMaker's tag pattern: letters, numbers, spaces and ``_.:/=+-@`` (\\p{L}\\p{Z}\\p{N})."""
    return all(c.isalpha() or c.isnumeric() or c.isspace() or c in TAG_PUNCTUATION for c in text)


def check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise RequestLimitError(
            f"{len(tags)} tags: SageMaker allows at most {MAX_TAGS} per job (backend.tags)"
        )
    for key, value in tags.items():
        if not 1 <= len(key) <= MAX_TAG_KEY or not _tag_characters_ok(key):
            raise RequestLimitError(
                f"tag key {key!r}: SageMaker allows 1 to {MAX_TAG_KEY} letters, numbers, spaces or _.:/=+-@"
            )
        if len(value) > MAX_TAG_VALUE:
            raise RequestLimitError(
                f"tag {key}: {len(value)} characters, over SageMaker's {MAX_TAG_VALUE}-character limit on tag "
                f"values: shorten it ({value[:40]}...)"
            )
        if not _tag_characters_ok(value):
            raise RequestLimitError(
                f"tag {key}={value!r}: SageMaker tag values hold only letters, numbers, spaces and _.:/=+-@"
            )


def check_job_prefix(prefix: str) -> None:
    if not JOB_NAME.fullmatch(prefix):
        raise RequestLimitError(
            f"backend.job_prefix={prefix!r}: SageMaker job names hold only letters, digits and inner hyphens "
            "(e.g. backend.job_prefix=dogbreeds-exp1)"
        )


def check_environment(environment: Mapping[str, str]) -> None:
    for key, value in environment.items():
        if len(value) > MAX_ENVIRONMENT_VALUE:
            raise RequestLimitError(
                f"environment {key}: {len(value)} characters, over SageMaker's {MAX_ENVIRONMENT_VALUE}-character "
                "limit on environment values"
            )
