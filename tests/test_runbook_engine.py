"""The runbook engine with toy steps: confirmation, dry run, lock, journal, resume, report."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest

from standby.backup_store import S3Store
from standby.errors import ConfigError, SafetyRefusal
from standby.runbook.engine import Runbook, RunContext, RunOptions, StepFailed
from standby.runbook.journal import JournalStore
from standby.runbook.lock import DynamoDbLock, Holder, LockHeld, LockLost
from standby.runbook.report import report_json, report_markdown


@dataclass
class ToyStep:
    """A step with a visible side effect: it counts its applies, and may be told to crash once."""

    name: str
    world: Counter[str]
    crash: list[str] = field(default_factory=list)  # "apply" -> raises KeyboardInterrupt once

    def is_done(self, ctx: RunContext) -> bool:
        return self.world[f"{self.name}:state"] > 0

    def plan(self, ctx: RunContext) -> str:
        return f"would do {self.name}"

    def apply(self, ctx: RunContext) -> None:
        if "apply" in self.crash:
            self.crash.remove("apply")
            raise KeyboardInterrupt  # the process dies mid-step
        self.world[f"{self.name}:applies"] += 1
        self.world[f"{self.name}:state"] = 1
        ctx.facts[self.name] = "ok"

    def verify(self, ctx: RunContext) -> None:
        if self.world[f"{self.name}:broken"]:
            raise SafetyRefusal(f"{self.name} did not take effect")


@pytest.fixture
def aws(aws_env: dict[str, str]) -> Iterator[None]:
    """The lock table and journal bucket, made for one test and gone after it (the worker's moto lives on)."""
    dynamodb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    dynamodb.create_table(
        TableName="locks",
        KeySchema=[{"AttributeName": "lock", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lock", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    s3.create_bucket(Bucket="journal-bucket", CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    yield
    dynamodb.delete_table(TableName="locks")
    for item in s3.list_objects_v2(Bucket="journal-bucket").get("Contents", []):
        s3.delete_object(Bucket="journal-bucket", Key=item["Key"])
    s3.delete_bucket(Bucket="journal-bucket")


@pytest.fixture
def world() -> Counter[str]:
    return Counter()


def _runbook(
    world: Counter[str], tmp_path: Path, crash_in: str = "", name: str = "cutover", lease: int = 120
) -> Runbook:
    steps = [ToyStep(n, world, ["apply"] if n == crash_in else []) for n in ("fence", "restore", "switch")]
    return Runbook(
        name,
        "acme",
        steps,
        JournalStore(tmp_path / "journal", S3Store("journal-bucket")),
        DynamoDbLock("locks", "acme", lease_seconds=lease),
    )


def test_a_run_applies_each_step_once_and_reports(aws: None, world: Counter[str], tmp_path: Path) -> None:
    journal = _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True))
    assert journal is not None
    assert [world[f"{n}:applies"] for n in ("fence", "restore", "switch")] == [1, 1, 1]
    report = report_json(journal)
    assert [s["name"] for s in report["steps"]] == ["fence", "restore", "switch"]
    assert all(s["outcome"] == "done" and s["start"] and s["end"] for s in report["steps"])
    assert report["outcome"] == "succeeded" and report["rto_seconds"] >= 0
    assert "| restore | done |" in report_markdown(journal)


def test_dry_run_prints_the_plan_and_touches_nothing(aws: None, world: Counter[str], tmp_path: Path) -> None:
    said: list[str] = []
    assert _runbook(world, tmp_path).run(RunContext(say=said.append), RunOptions(dry_run=True)) is None
    assert any("would do restore" in line for line in said)
    assert sum(world.values()) == 0
    assert not (tmp_path / "journal").exists()


def test_declining_the_confirmation_changes_nothing(aws: None, world: Counter[str], tmp_path: Path) -> None:
    asked: list[str] = []
    result = _runbook(world, tmp_path).run(
        RunContext(), RunOptions(), confirm=lambda q: asked.append(q) or False
    )
    assert result is None and asked == ["Run cutover for acme?"]
    assert sum(world.values()) == 0


@pytest.mark.parametrize("holder", ["failback", "drill", "restore", "cutover"])
def test_any_run_holding_the_apps_lock_refuses_every_runbook(
    aws: None, world: Counter[str], tmp_path: Path, holder: str
) -> None:
    """One lock per app: a failback, a drill or a restore into the app's database excludes a cutover."""
    DynamoDbLock("locks", "acme").acquire(Holder(holder, "alice@laptop", "a1"))
    with pytest.raises(LockHeld, match=rf"locked by {holder} of alice@laptop .* since") as raised:
        _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True, owner="bob"))
    assert raised.value.exit_code == 3
    assert "--take-over" in str(raised.value)
    assert sum(world.values()) == 0
    assert not (tmp_path / "journal").exists()  # the journal is read and written under the lock only


def test_the_same_user_on_the_same_host_cannot_run_twice_at_once(
    aws: None, world: Counter[str], tmp_path: Path
) -> None:
    """Two terminals on one laptop: the same owner label, two runs; the second is refused."""
    seen: list[str] = []

    class Nested(ToyStep):
        def apply(self, ctx: RunContext) -> None:
            try:
                _runbook(world, tmp_path, name="failback").run(
                    RunContext(), RunOptions(yes=True, owner="alice")
                )
            except LockHeld as exc:
                seen.append(str(exc))
            super().apply(ctx)

    runbook = _runbook(world, tmp_path)
    runbook.steps[1] = Nested("restore", world)
    assert runbook.run(RunContext(), RunOptions(yes=True, owner="alice")) is not None
    assert len(seen) == 1 and "locked by cutover of alice" in seen[0]


def test_the_lease_is_renewed_while_a_long_step_runs(aws: None, world: Counter[str], tmp_path: Path) -> None:
    held_during: list[bool] = []

    class Long(ToyStep):
        def apply(self, ctx: RunContext) -> None:
            time.sleep(4.5)  # more than twice the lease
            try:
                DynamoDbLock("locks", "acme").acquire(Holder("drill", "bob", "b1"))
                held_during.append(False)
            except LockHeld:
                held_during.append(True)
            super().apply(ctx)

    runbook = _runbook(world, tmp_path, lease=2)  # heartbeats every 0.5 s: slack for a loaded machine
    runbook.steps[1] = Long("restore", world)
    assert runbook.run(RunContext(), RunOptions(yes=True)) is not None
    assert held_during == [True]
    assert DynamoDbLock("locks", "acme").holder() is None  # released at the end


def test_a_run_whose_lock_was_taken_over_stops_before_its_next_step(
    aws: None, world: Counter[str], tmp_path: Path
) -> None:
    class TakenOver(ToyStep):
        def apply(self, ctx: RunContext) -> None:
            DynamoDbLock("locks", "acme").acquire(Holder("cutover", "bob", "b1"), take_over=True)
            # Heartbeats every 0.25 s: the next one finds the lock gone, even on a loaded machine.
            time.sleep(2.0)
            super().apply(ctx)

    runbook = _runbook(world, tmp_path, lease=1)
    runbook.steps[1] = TakenOver("restore", world)
    with pytest.raises(LockLost, match=r"taken over by cutover of bob .* stops before switch"):
        runbook.run(RunContext(), RunOptions(yes=True))
    assert world["switch:applies"] == 0
    assert (DynamoDbLock("locks", "acme").holder() or {})["who"] == "bob"  # the loser does not delete it


def test_take_over_of_a_lock_nobody_holds_simply_takes_it(aws: None) -> None:
    """After a Ctrl-C the item is gone; --take-over then is an ordinary acquire."""
    lease = DynamoDbLock("locks", "acme").acquire(Holder("cutover", "alice", "a1"), take_over=True)
    assert (DynamoDbLock("locks", "acme").holder() or {})["attempt"] == "a1"
    lease.release()


def test_take_over_is_refused_while_the_holder_lives_on_this_machine(aws: None) -> None:
    """A process that is alive is not dead, whatever the operator thinks: --take-over refuses."""
    import subprocess
    import sys

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock = DynamoDbLock("locks", "acme")
        lock.acquire(Holder("cutover", "alice", "a1", pid=sleeper.pid))
        with pytest.raises(LockHeld, match=f"process {sleeper.pid} is alive on this machine"):
            lock.acquire(Holder("cutover", "alice", "a2"), take_over=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    # Now it is dead: the take-over goes through.
    lease = DynamoDbLock("locks", "acme").acquire(Holder("cutover", "alice", "a2"), take_over=True)
    assert (DynamoDbLock("locks", "acme").holder() or {})["attempt"] == "a2"
    lease.release()


def test_a_crashed_run_must_be_resumed_or_restarted(aws: None, world: Counter[str], tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _runbook(world, tmp_path, crash_in="restore").run(RunContext(), RunOptions(yes=True))
    with pytest.raises(SafetyRefusal, match=r"unfinished cutover run .* Pass --resume"):
        _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True))
    with pytest.raises(ConfigError, match="contradict"):
        _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True, resume=True, restart=True))


def test_resume_skips_finished_steps_and_never_repeats_a_side_effect(
    aws: None, world: Counter[str], tmp_path: Path
) -> None:
    with pytest.raises(KeyboardInterrupt):
        _runbook(world, tmp_path, crash_in="restore").run(RunContext(), RunOptions(yes=True))
    said: list[str] = []
    journal = _runbook(world, tmp_path).run(RunContext(say=said.append), RunOptions(yes=True, resume=True))
    assert journal is not None and journal.outcome == "succeeded"
    assert [world[f"{n}:applies"] for n in ("fence", "restore", "switch")] == [1, 1, 1]
    assert "- fence: done in run" in "\n".join(said) and "skipped" in "\n".join(said)
    assert journal.facts == {"fence": "ok", "restore": "ok", "switch": "ok"}  # facts survive the crash


def test_a_step_done_outside_the_run_is_recorded_as_already_done(
    aws: None, world: Counter[str], tmp_path: Path
) -> None:
    world["fence:state"] = 1  # an operator fenced by hand
    journal = _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True))
    assert journal is not None
    assert journal.steps[0].outcome == "already done" and world["fence:applies"] == 0


def test_a_failed_verification_stops_the_run_and_keeps_the_exit_code(
    aws: None, world: Counter[str], tmp_path: Path
) -> None:
    world["restore:broken"] = 1
    with pytest.raises(StepFailed, match="step restore failed: restore did not take effect") as raised:
        _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True))
    assert raised.value.exit_code == 3
    assert world["switch:applies"] == 0
    saved = json.loads((tmp_path / "journal" / "acme-cutover.json").read_text())
    assert [(s["name"], s["outcome"]) for s in saved["steps"]] == [("fence", "done"), ("restore", "failed")]
    # The lock was released: a fixed run can start.
    del world["restore:broken"]
    assert _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True, resume=True)) is not None


def test_the_journal_is_kept_in_the_bucket_too(aws: None, world: Counter[str], tmp_path: Path) -> None:
    _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True))
    remote = json.loads(
        boto3.client("s3")
        .get_object(Bucket="journal-bucket", Key="runbooks/acme/cutover/current.json")["Body"]
        .read()
    )
    assert remote["finished"] is True and len(remote["steps"]) == 3


def test_a_crashed_run_is_resumed_after_its_lease_or_with_take_over(
    aws: None, world: Counter[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DynamoDbLock, "delete", lambda self, holder: None)  # a dead process deletes nothing
    with pytest.raises(KeyboardInterrupt):
        _runbook(world, tmp_path, crash_in="switch").run(RunContext(), RunOptions(yes=True, owner="alice"))
    with pytest.raises(LockHeld, match="If that run is dead, its lease ends at"):
        _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True, resume=True, owner="alice"))
    journal = _runbook(world, tmp_path).run(
        RunContext(), RunOptions(yes=True, resume=True, owner="alice", take_over=True)
    )
    assert journal is not None and world["switch:applies"] == 1


def test_resuming_a_run_that_finished_does_nothing_again(
    aws: None, world: Counter[str], tmp_path: Path
) -> None:
    first = _runbook(world, tmp_path).run(RunContext(), RunOptions(yes=True))
    said: list[str] = []
    again = _runbook(world, tmp_path).run(RunContext(say=said.append), RunOptions(yes=True, resume=True))
    assert again is not None and first is not None and again.run_id == first.run_id
    assert [world[f"{n}:applies"] for n in ("fence", "restore", "switch")] == [1, 1, 1]
    assert any("already finished" in line and "nothing to resume" in line for line in said)


@pytest.mark.parametrize("failure", ["verification", "interrupt"])
def test_cleanup_steps_run_after_a_failure_and_end_the_run(
    aws: None, world: Counter[str], tmp_path: Path, failure: str
) -> None:
    runbook = _runbook(world, tmp_path, crash_in="restore" if failure == "interrupt" else "")
    runbook.cleanup = [ToyStep("tear_down", world)]
    world["restore:broken"] = 1 if failure == "verification" else 0

    with pytest.raises(StepFailed if failure == "verification" else KeyboardInterrupt):
        runbook.run(RunContext(), RunOptions(yes=True))

    assert world["tear_down:applies"] == 1 and world["switch:applies"] == 0
    journal = runbook.journals.load("acme", "cutover")
    assert journal is not None and journal.finished and journal.outcome == "failed"
    # Nothing is left to resume: the next run starts afresh instead of refusing.
    world["restore:broken"] = 0
    world["tear_down:state"] = 0
    again = runbook.run(RunContext(), RunOptions(yes=True))
    assert again is not None and again.outcome == "succeeded" and again.run_id != journal.run_id
    assert [s.name for s in again.steps][-1] == "tear_down"
