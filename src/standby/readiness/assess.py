"""Run every readiness check once; a check that cannot look says so (a warning), never crashes the rest."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

import psycopg

from standby.aws_errors import AWS_ERRORS, aws_failure
from standby.errors import SafetyRefusal, StandbyError
from standby.heroku_api import HerokuApiError
from standby.readiness import backups, drift, forecast, runbooks, standby_health
from standby.readiness.check import Check, Readiness, critical, warning
from standby.readiness.sources import Sources
from standby.runbook.journal import JournalStore

# Checks that read Heroku while the app is live there: one failed look at Heroku answers for all of them.
READS_HEROKU: Final = ("formation", "config-vars", "image", "domains", "postgres-version")


def assess(src: Sources, journal_dir: Path) -> Readiness:
    journals = JournalStore(journal_dir, src.store)
    checks: list[tuple[str, Callable[[Sources], Check]]] = [
        ("backup-age", backups.backup_age),
        ("backup-replica", backups.backup_replica),
        ("restore-ahead", backups.restore_ahead),
        ("formation", drift.formation),
        ("config-vars", drift.config_vars),
        ("image", drift.image),
        ("domains", drift.domains),
        ("postgres-version", drift.postgres_version),
        ("dns", standby_health.dns),
        ("database", standby_health.database),
        ("services", standby_health.services),
        ("load-balancer", standby_health.load_balancer),
        ("runbooks", partial(runbooks.runbooks, journal_dir=journal_dir)),
        ("rto-forecast", partial(forecast.rto_forecast, journals=journals)),
        ("drill", forecast.drill),
    ]
    heroku_problem: str | None = None
    results = []
    for name, check in checks:
        if name in READS_HEROKU and heroku_problem is None and _safe_live(src):
            heroku_problem = _heroku_problem(src)
        if name in READS_HEROKU and heroku_problem and _safe_live(src):
            results.append(
                warning(
                    name,
                    f"not checked: {heroku_problem}",
                    "check HEROKU_API_KEY and Heroku's status (status.heroku.com).",
                )
            )
            continue
        results.append(_guarded(name, check, src))
    return Readiness(src.app, src.now.isoformat(timespec="seconds"), results, dict(src.figures))


def _safe_live(src: Sources) -> bool:
    try:
        return src.live_on_heroku
    except StandbyError:
        return False


def _heroku_problem(src: Sources) -> str:
    """Empty when Heroku answers for the app, else why not (without the token)."""
    try:
        src.heroku.app(src.app)
    except StandbyError as exc:  # HerokuApiError, or ConfigError: no key
        return f"Heroku's API did not answer for {src.app}: {exc}"
    return ""


def _guarded(name: str, check: Callable[[Sources], Check], src: Sources) -> Check:
    try:
        return check(src)
    except SafetyRefusal as exc:
        return critical(name, str(exc), "see the message: it names what to do.")
    except HerokuApiError as exc:
        return warning(name, f"not checked: Heroku's API: {exc}", "check HEROKU_API_KEY and Heroku's status.")
    except StandbyError as exc:
        return warning(name, f"not checked: {exc}", "fix what the message names, then run status again.")
    except AWS_ERRORS as exc:
        return warning(
            name, f"not checked: {aws_failure(exc, 'reading the standby')}", "check the role's access."
        )
    except psycopg.Error as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return warning(
            name,
            f"not checked: the standby database did not answer ({first.strip()})",
            "run status where the database is reachable: the scheduled task runs inside the standby's network.",
        )
    except Exception as exc:
        return warning(
            name,
            f"not checked: {type(exc).__name__} while checking (a document or an answer of an unexpected shape)",
            "the check met something it does not expect: look at what it reads, and report it to standby.",
        )
