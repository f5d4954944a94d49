"""The one door from deployment code to boto3: one session per deployment, one client per service.

Observing, applying and tearing down all ask ``AwsCalls.client(service)``; planning never does (it is a
pure function of what was observed). Credentials are checked once, up front, with a message that says
how to fix them, and how to plan without them (``deploy.assume_absent=true``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import boto3
from botocore.exceptions import ClientError, NoCredentialsError

from conf.errors import DogbreedsError


class AwsDeployError(DogbreedsError):
    """AWS lacks or refuses something the deployment needs; the message says what to change."""


@dataclass
class AwsCalls:
    region: str
    _session: boto3.session.Session | None = field(default=None, init=False, repr=False)
    _clients: dict = field(default_factory=dict, init=False, repr=False)

    def client(self, service: str):
        if service not in self._clients:
            if self._session is None:
                self._session = boto3.session.Session(region_name=self.region)
            self._clients[service] = self._session.client(service)
        return self._clients[service]

    def account_id(self) -> str:
        """Also the first call of every deployment: no usable credentials fail here, with a hint."""
        try:
            return self.client("sts").get_caller_identity()["Account"]
        except (NoCredentialsError, ClientError) as err:
            raise AwsDeployError(
                f"cannot use AWS credentials ({err}); configure them (aws configure, AWS_PROFILE, or a role). "
                "To see a plan without credentials: --dry-run deploy.assume_absent=true "
                "(plans as if nothing existed yet)"
            ) from err
