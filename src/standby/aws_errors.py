"""botocore's exceptions turned into standby's: a wrong credential or a missing permission is
configuration (exit 2), anything else AWS does (throttling, an unreachable endpoint, a 5xx) is an
infrastructure failure (exit 1). Either way, one line that names the call."""

from __future__ import annotations

from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from standby.errors import ConfigError, InfrastructureError, StandbyError

AWS_ERRORS: Final = (BotoCoreError, ClientError)
_CONFIG_CODES: Final = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
     "ExpiredToken", "ExpiredTokenException", "AuthFailure", "SignatureDoesNotMatch"}
)  # fmt: skip


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def aws_failure(exc: BotoCoreError | ClientError, doing: str) -> StandbyError:
    """The standby error for `exc`, raised while `doing` (e.g. "reading the standby manifest")."""
    cause = " ".join(str(exc).split())
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigError(
            [f"no AWS credentials while {doing}: configure them (AWS_PROFILE, aws sso login)."]
        )
    if isinstance(exc, NoRegionError):
        return ConfigError([f"no AWS region while {doing}: pass --region or set AWS_REGION."])
    if isinstance(exc, ClientError) and error_code(exc) in _CONFIG_CODES:
        return ConfigError(
            [f"AWS refused {doing} ({cause}). Use credentials allowed to do it in this account and region."]
        )
    return InfrastructureError(
        f"AWS failed while {doing}: {cause}. Try again; if it persists, check AWS Health."
    )
