"""The app's lock: one DynamoDB item per app, so no two runbooks (nor a restore into the app's database)
ever run at once, whoever starts them and from wherever.

The holder is one run: who started it (user@host, for people), the host, the process and the run id. The
lease is short and renewed by a heartbeat while the run lives, so a long step keeps the lock and a dead
run's lock frees itself within one lease. Taking over a lock whose holder looks dead is explicit
(`--take-over`), and refused when the holder is a live process on this machine.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from standby import aws_clients
from standby.aws_errors import error_code
from standby.errors import SafetyRefusal, StandbyError

DEFAULT_LEASE: Final = 120  # seconds; a dead run's lock frees itself after this
RENEWALS_PER_LEASE: Final = 4  # heartbeats per lease: three may fail before the lock is lost


class LockHeld(SafetyRefusal):
    """Another run holds the app's lock."""


class LockLost(SafetyRefusal):
    """This run's lock was taken over, or could not be renewed before its lease ran out."""


@dataclass(frozen=True)
class Holder:
    """One run of one runbook: unique per run even for the same user on the same laptop."""

    runbook: str
    who: str  # user@host as given by --owner; for people, never used to decide
    attempt: str  # this process's attempt at the run (a resumed run is a new attempt)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @property
    def token(self) -> str:
        return f"{self.host}:{self.pid}:{self.attempt}"

    def describe(self) -> str:
        return f"{self.runbook} by {self.who} (attempt {self.attempt}, process {self.pid} on {self.host})"


class Lease(Protocol):
    @property
    def lost(self) -> str | None: ...  # why the lock is no longer ours, or None
    def release(self) -> None: ...


class Lock(Protocol):
    def acquire(self, holder: Holder, take_over: bool = False) -> Lease: ...


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class DynamoDbLock:
    def __init__(
        self, table: str, app: str, region: str | None = None, lease_seconds: int = DEFAULT_LEASE
    ) -> None:
        self.table = table
        self.app = app
        self.lease = lease_seconds
        self.client: Any = aws_clients.client("dynamodb", region)

    def acquire(self, holder: Holder, take_over: bool = False) -> DynamoDbLease:
        now = int(time.time())
        condition, values = "attribute_not_exists(#lock) OR expires_at < :now", {":now": {"N": str(now)}}
        names = {"#lock": "lock"}
        if take_over:
            held = self.holder()
            if held is not None:
                self._refuse_live_local_holder(held)
                # Compare and swap: take it from the holder we looked at, not from whoever came since.
                condition += " OR #token = :seen"
                values[":seen"] = {"S": held["token"]}
                names["#token"] = "token"
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._item(holder, now, acquired_at=now),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise StandbyError(f"cannot take the lock of {self.app} in {self.table}: {exc}") from None
            raise self._held(now) from None
        except BotoCoreError as exc:
            raise StandbyError(f"cannot reach the lock table {self.table}: {exc}") from None
        return DynamoDbLease(self, holder)

    def holder(self) -> dict[str, str] | None:
        """The current item, as plain strings (None when nobody holds the lock)."""
        item = self.client.get_item(TableName=self.table, Key={"lock": {"S": self.app}}, ConsistentRead=True)
        found = item.get("Item")
        return {k: next(iter(v.values())) for k, v in found.items()} if found else None

    def _item(self, holder: Holder, now: int, acquired_at: int) -> dict[str, Any]:
        return {
            "lock": {"S": self.app},
            "runbook": {"S": holder.runbook},
            "who": {"S": holder.who},
            "attempt": {"S": holder.attempt},
            "host": {"S": holder.host},
            "pid": {"N": str(holder.pid)},
            "token": {"S": holder.token},
            "acquired_at": {"N": str(acquired_at)},
            "renewed_at": {"N": str(now)},
            "expires_at": {"N": str(now + self.lease)},
        }

    def _held(self, now: int) -> LockHeld:
        held = self.holder() or {}
        expires = int(held.get("expires_at", now))
        return LockHeld(
            f"{self.app} is locked by {held.get('runbook', 'a run')} of {held.get('who', 'someone')} (attempt "
            f"{held.get('attempt', '?')}, process {held.get('pid', '?')} on {held.get('host', '?')}) since "
            f"{_iso(int(held.get('acquired_at', now)))}, renewed {now - int(held.get('renewed_at', now))} s ago. "
            f"Wait for it to finish. If that run is dead, its lease ends at {_iso(expires)} (in "
            f"{max(0, expires - now)} s); or pass --take-over to take the lock from it now."
        )

    @staticmethod
    def _refuse_live_local_holder(held: dict[str, str]) -> None:
        if held.get("host") != socket.gethostname():
            return  # another machine's process cannot be checked from here: the operator vouches for it
        pid = int(held.get("pid", 0))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:  # it exists, under another user
            pass
        if pid == os.getpid():
            return  # this very process (a test, or a runbook calling another): it is not running a step
        raise LockHeld(
            f"{held.get('runbook')} (attempt {held.get('attempt')}) holds the lock of {held.get('lock')} and its process "
            f"{pid} is alive on this machine: it is not dead, so --take-over is refused. Stop it first."
        )

    def renew(self, holder: Holder) -> None:
        now = int(time.time())
        self.client.update_item(
            TableName=self.table,
            Key={"lock": {"S": self.app}},
            UpdateExpression="SET renewed_at = :now, expires_at = :until",
            ConditionExpression="#token = :mine",
            ExpressionAttributeNames={"#token": "token"},
            ExpressionAttributeValues={
                ":now": {"N": str(now)},
                ":until": {"N": str(now + self.lease)},
                ":mine": {"S": holder.token},
            },
        )

    def delete(self, holder: Holder) -> None:
        # Not ours any more, or unreachable: either way the lease frees it.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.delete_item(
                TableName=self.table,
                Key={"lock": {"S": self.app}},
                ConditionExpression="#token = :mine",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":mine": {"S": holder.token}},
            )


class DynamoDbLease:
    """A held lock, renewed in the background until released; `lost` says when it stopped being ours."""

    def __init__(self, lock: DynamoDbLock, holder: Holder) -> None:
        self.lock = lock
        self.holder = holder
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._heartbeat, name="lock-heartbeat", daemon=True)
        self._thread.start()

    @property
    def lost(self) -> str | None:
        if self._lost is None and time.monotonic() - self._renewed > self.lock.lease:
            self._lost = f"the lock's lease ran out ({self.lock.lease} s without a renewal)"
        return self._lost

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lock.lease / RENEWALS_PER_LEASE):
            try:
                self.lock.renew(self.holder)
                self._renewed = time.monotonic()
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    try:
                        taken = self.lock.holder() or {}
                    except (ClientError, BotoCoreError):
                        taken = {}
                    self._lost = (
                        f"the lock was taken over by {taken.get('runbook', 'another run')} of "
                        f"{taken.get('who', 'someone')} (attempt {taken.get('attempt', '?')})"
                    )
                    return
            except BotoCoreError:  # the next heartbeat tries again; `lost` tells when the lease ran out
                continue

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._lost is None:
            self.lock.delete(self.holder)
