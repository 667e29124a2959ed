"""The runbook engine: named steps, run under a lock, journaled so a crashed run resumes, reported.

A step knows whether it is already done (`is_done`), what it would do (`plan`), how to do it
idempotently (`apply`) and how to prove it worked (`verify`). A run:
1. on `dry_run`, shows the plan and stops (no lock, nothing written);
2. takes the app's lock first (refused, exit 3, while another run holds it), renewed while the run lives,
   and reads the journal under it: it refuses an unfinished run's journal unless told `resume` or
   `restart`, shows the plan and asks for confirmation unless `yes`;
3. runs each step: skipped when the journal says it finished, recorded "already done" when its probe says
   so, otherwise applied then verified, with its start and end journaled *before* and *after*;
4. runs the cleanup steps (a drill's teardown) after the steps, also when one failed or was interrupted;
   a run with cleanup steps then ends as failed instead of waiting for --resume: there is nothing left
   to resume;
5. writes the report: each step's time and outcome, the RTO achieved, and what the steps measured.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from standby.errors import ConfigError, SafetyRefusal, StandbyError
from standby.runbook.journal import Journal, JournalStore
from standby.runbook.lock import Holder, Lease, Lock, LockLost


@dataclass
class RunContext:
    """What the steps of one run share: values they measure or hand to later steps (no secrets)."""

    facts: dict[str, Any] = field(default_factory=dict)
    say: Callable[[str], None] = lambda _: None
    run_id: str = ""  # set by the runbook when the run starts


class Step(Protocol):
    """A runbook step. The facts a step writes are its own: another step may not overwrite them, unless it
    names them in an `updates` attribute (the cutover's restore re-pins the backup it chose)."""

    name: str

    def is_done(self, ctx: RunContext) -> bool: ...
    def plan(self, ctx: RunContext) -> str: ...
    def apply(self, ctx: RunContext) -> None: ...
    def verify(self, ctx: RunContext) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    yes: bool = False
    resume: bool = False
    restart: bool = False
    owner: str = "operator"  # who runs it (user@host), for the lock's holder and the notices
    take_over: bool = False  # take the app's lock from a run that died holding it


class StepFailed(StandbyError):
    def __init__(self, step: str, reason: str, exit_code: int = 1) -> None:
        super().__init__(f"step {step} failed: {reason}")
        self.step = step
        self.exit_code = exit_code


Notify = Callable[[str, str], None]  # (subject, message)


@dataclass
class Runbook:
    name: str
    app: str
    steps: list[Step]
    journals: JournalStore
    lock: Lock
    notify: Notify = lambda subject, message: None
    cleanup: list[Step] = field(default_factory=list)  # run after the steps, whatever happened to them

    def run(
        self, ctx: RunContext, options: RunOptions, confirm: Callable[[str], bool] = lambda _: False
    ) -> Journal | None:
        """Run the steps; returns the journal (None for a dry run or when the operator declines)."""
        if options.resume and options.restart:
            raise ConfigError(["--resume and --restart contradict each other: choose one."])
        if options.dry_run:  # reads only: no lock, nothing written
            journal = self._journal(ctx, options)
            if journal is not None and not journal.finished:
                self._describe(ctx, journal)
            return None
        holder = Holder(self.name, options.owner, uuid.uuid4().hex[:8])
        lease = self.lock.acquire(holder, take_over=options.take_over)
        try:
            # Under the lock: the journal read here is the one this run continues; nobody else writes it.
            journal = self._journal(ctx, options)
            if journal is None or journal.finished:
                return journal
            self._describe(ctx, journal)
            if not options.yes and not confirm(f"Run {self.name} for {self.app}?"):
                ctx.say("aborted; nothing was changed.")
                return None
            return self._run(ctx, journal, options, lease)
        finally:
            lease.release()

    def _journal(self, ctx: RunContext, options: RunOptions) -> Journal | None:
        """The journal this run continues or starts; a finished one when resuming a run that finished."""
        unfinished = self.journals.load(self.app, self.name)
        if options.resume and unfinished is not None and unfinished.finished:
            # The crash came after the last step: resuming must not start the whole runbook again.
            ctx.say(
                f"{self.name} run {unfinished.run_id} already finished ({unfinished.outcome}): nothing to resume"
            )
            ctx.facts.update(unfinished.facts)
            return unfinished
        if unfinished is not None and not unfinished.finished and not (options.resume or options.restart):
            raise SafetyRefusal(
                f"an unfinished {self.name} run ({unfinished.run_id}, started {unfinished.started_at}) is in the "
                f"journal. Pass --resume to continue it (done steps are skipped), or --restart to start over."
            )
        journal = (
            unfinished
            if options.resume and unfinished is not None and not unfinished.finished
            else Journal.new(
                self.app, self.name, f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
            )
        )
        ctx.facts.update(journal.facts)
        ctx.run_id = journal.run_id
        return journal

    def _describe(self, ctx: RunContext, journal: Journal) -> None:
        ctx.say(
            f"{self.name} for {self.app}: {'resuming run ' + journal.run_id if journal.steps else 'plan'}"
        )
        for line in self.describe(ctx, journal):
            ctx.say(line)

    def _run(self, ctx: RunContext, journal: Journal, options: RunOptions, lease: Lease) -> Journal:
        self.journals.save(journal)
        self._notify(
            ctx,
            f"{self.name} started",
            f"{self.name} for {self.app} started by {options.owner} (run {journal.run_id})",
        )
        try:
            for step in self.steps:
                self._check_lease(lease, step)
                self._run_step(step, ctx, journal)
        except BaseException:
            if self.cleanup:
                self._clean_up(ctx, journal)
                journal.finish("failed", ctx.facts)
                self.journals.save(journal)
            raise
        for step in self.cleanup:
            self._run_step(step, ctx, journal)
        journal.finish("succeeded", ctx.facts)
        self.journals.save(journal)
        self._notify(
            ctx, f"{self.name} finished", f"{self.name} for {self.app} succeeded (run {journal.run_id})"
        )
        return journal

    @staticmethod
    def _claim_facts(step: Step, before: dict[str, Any], ctx: RunContext, journal: Journal) -> None:
        """Two steps writing the same fact by accident would let one stand in for the other's proof."""
        updates = set(getattr(step, "updates", ()))
        for key in [k for k, v in ctx.facts.items() if k not in before or before[k] != v]:
            owner = journal.fact_owners.setdefault(key, step.name)
            if owner != step.name and key not in updates:
                raise StepFailed(
                    step.name,
                    f"it wrote the fact {key!r}, which belongs to step {owner} (a bug in the runbook)",
                )

    def _check_lease(self, lease: Lease, step: Step) -> None:
        """A run whose lock is no longer its own stops before its next side effect."""
        lost = lease.lost
        if lost:
            raise LockLost(
                f"{lost}: this run stops before {step.name}; its journal shows where it got to. Find out who "
                "runs now before you --resume."
            )

    def _notify(self, ctx: RunContext, subject: str, message: str) -> None:
        """Notices are best effort: a topic we may not publish to never stops a run or hides its error."""
        try:
            self.notify(subject, message)
        except Exception as exc:
            ctx.say(f"  warning: notice '{subject}' not sent: {' '.join(str(exc).split())}")

    def _clean_up(self, ctx: RunContext, journal: Journal) -> None:
        """The cleanup steps after a failure: each is tried, a failing one does not stop the next."""
        for step in self.cleanup:
            try:
                self._run_step(step, ctx, journal)
            except StepFailed as exc:
                ctx.say(f"  cleanup incomplete: {exc}")

    def describe(self, ctx: RunContext, journal: Journal) -> list[str]:
        lines = []
        for i, step in enumerate([*self.steps, *self.cleanup], start=1):
            record = journal.record(step.name)
            if record is not None and record.outcome in ("done", "already done"):
                lines.append(f"  {i:>2}. {step.name:<22} done in this run already: skipped")
            else:
                lines.append(f"  {i:>2}. {step.name:<22} {step.plan(ctx)}")
        return lines

    def _run_step(self, step: Step, ctx: RunContext, journal: Journal) -> None:
        record = journal.record(step.name)
        # A journal says what a run did; the world says whether it holds. A step the journal calls done is
        # skipped only when the world still shows it done (a journal put back from an older run, or a fence
        # undone by hand, must not make a resume skip the fence).
        if record is not None and record.outcome in ("done", "already done") and step.is_done(ctx):
            ctx.say(f"- {step.name}: done in run {journal.run_id} already; skipped")
            return
        started = time.time()
        before = dict(ctx.facts)
        journal.start(step.name, started)
        self.journals.save(journal)  # before the side effect: a crash from here on is visible on resume
        try:
            if step.is_done(ctx):
                outcome = "already done"
                ctx.say(f"- {step.name}: already done")
            else:
                ctx.say(f"- {step.name}: {step.plan(ctx)}")
                step.apply(ctx)
                outcome = "done"
            step.verify(ctx)
        except BaseException as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, Exception):
                journal.end(step.name, time.time(), "failed", reason, ctx.facts)
                self.journals.save(journal)
                self._notify(
                    ctx,
                    f"{self.name} failed",
                    f"{self.name} for {self.app}: step {step.name} failed: {reason}",
                )
                code = exc.exit_code if isinstance(exc, StandbyError) else 1
                raise StepFailed(step.name, reason, code) from exc
            raise  # KeyboardInterrupt: the journal keeps the step as started; --resume runs it again
        self._claim_facts(step, before, ctx, journal)
        journal.end(step.name, time.time(), outcome, "", ctx.facts)
        self.journals.save(journal)
