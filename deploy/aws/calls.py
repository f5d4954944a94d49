"""One place where deployment code reaches AWS, so ``--dry-run`` can show every call and change nothing.

Deployment modules ask ``AwsCalls.client(service)`` for boto3 clients. In a real run those are plain
boto3 clients. In a dry run each one is wrapped: reads (``describe_*``, ``get_*``, ``list_*``, ``head_*``)
still go to AWS, so the plan shows create-or-update exactly as a real run would decide it; every other
call is printed and recorded instead of sent, and answers a placeholder string. Waiters are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3
from botocore.exceptions import ClientError, NoCredentialsError

READ_PREFIXES = ("describe_", "get_", "list_", "head_")


class _Placeholder(str):
    """What a skipped call answers: any key of it is itself, so ``r["Role"]["Arn"]`` reads "<dry-run>"."""

    def __getitem__(self, key):
        return self


DRY_RUN_RESPONSE = _Placeholder("<dry-run>")


def _printable(value):
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


@dataclass
class _SkippedWaiter:
    name: str
    record: Callable[[str, str, dict], None]
    service: str

    def wait(self, **kwargs) -> None:
        self.record(self.service, f"waiter:{self.name}", kwargs)


class _DryRunClient:
    def __init__(self, client, service: str, record: Callable[[str, str, dict], None]):
        self._client, self._service, self._record = client, service, record
        self.exceptions, self.meta = client.exceptions, client.meta

    def get_waiter(self, name: str) -> _SkippedWaiter:
        return _SkippedWaiter(name, self._record, self._service)

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if name.startswith(READ_PREFIXES) or not callable(attribute):
            return attribute

        def skipped(*args, **kwargs):
            self._record(self._service, name, {"args": list(args), **kwargs} if args else kwargs)
            return DRY_RUN_RESPONSE

        return skipped


@dataclass
class AwsCalls:
    region: str
    dry_run: bool = False
    echo: Callable[[str], None] = print
    skipped: list[tuple[str, str, dict]] = field(default_factory=list)
    _session: boto3.session.Session | None = field(default=None, init=False, repr=False)
    _clients: dict = field(default_factory=dict, init=False, repr=False)

    def client(self, service: str):
        if service not in self._clients:
            if self._session is None:
                self._session = boto3.session.Session(region_name=self.region)
            client = self._session.client(service)
            self._clients[service] = _DryRunClient(client, service, self._record) if self.dry_run else client
        return self._clients[service]

    def account_id(self) -> str:
        """Also the first call of every deployment: no usable credentials fail here, with a hint."""
        try:
            return self.client("sts").get_caller_identity()["Account"]
        except (NoCredentialsError, ClientError) as err:
            raise ValueError(
                f"cannot use AWS credentials ({err}); configure them (aws configure, AWS_PROFILE, or a role). "
                "--dry-run still reads from AWS to plan create-or-update, so it needs them too"
            ) from err

    def _record(self, service: str, operation: str, kwargs: dict) -> None:
        self.skipped.append((service, operation, kwargs))
        self.echo(f"[dry-run] {service}.{operation}({json.dumps(_printable(kwargs), default=str)})")
