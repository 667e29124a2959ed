"""The runbook lock: one DynamoDB conditional write, so two operators cannot run a runbook at once."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from standby.errors import SafetyRefusal, StandbyError

DEFAULT_LEASE: Final = 6 * 3600  # seconds; a crashed run's lock frees itself after this


class LockHeld(SafetyRefusal):
    """Someone else runs this runbook now."""


class Lock(Protocol):
    def acquire(self, name: str, owner: str) -> None: ...
    def release(self, name: str, owner: str) -> None: ...


class DynamoDbLock:
    def __init__(self, table: str, region: str | None = None, lease_seconds: int = DEFAULT_LEASE) -> None:
        self.table = table
        self.lease = lease_seconds
        self.client: Any = boto3.client("dynamodb", region_name=region)

    def acquire(self, name: str, owner: str) -> None:
        now = int(time.time())
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "lock": {"S": name},
                    "owner": {"S": owner},
                    "acquired_at": {"N": str(now)},
                    "expires_at": {"N": str(now + self.lease)},
                },
                # Take it if nobody holds it, if its holder's lease ran out, or if it is ours (our own
                # run crashed and is being resumed).
                ConditionExpression="attribute_not_exists(#lock) OR expires_at < :now OR #owner = :owner",
                ExpressionAttributeNames={"#lock": "lock", "#owner": "owner"},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":owner": {"S": owner}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StandbyError(f"cannot take the lock {name} in {self.table}: {exc}") from None
            held = self.client.get_item(TableName=self.table, Key={"lock": {"S": name}}).get("Item", {})
            holder = held.get("owner", {}).get("S", "someone")
            since = datetime.fromtimestamp(int(held.get("acquired_at", {}).get("N", now)), UTC).isoformat()
            until = datetime.fromtimestamp(int(held.get("expires_at", {}).get("N", now)), UTC).isoformat()
            raise LockHeld(
                f"{name} is locked by {holder} since {since}: another run is in progress. Wait for it, or, "
                f"if it died, --resume it (as {holder}) or wait until its lease ends at {until}."
            ) from None
        except BotoCoreError as exc:
            raise StandbyError(f"cannot reach the lock table {self.table}: {exc}") from None

    def release(self, name: str, owner: str) -> None:
        # Not ours any more, or unreachable: either way the lease frees it.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.delete_item(
                TableName=self.table,
                Key={"lock": {"S": name}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
