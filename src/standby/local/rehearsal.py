"""The local rehearsal: the real runbooks, step for step, against stand-ins on this machine.

It starts, on loopback: a PostgreSQL server holding "Heroku's" database (the sample app with generated
rows) and the standby's database, moto's AWS holding the standby as `pulumi up` leaves it, the fake
Heroku API, and a small web app that serves the health path from the standby database. Then it runs a
backup, the disaster of the chosen scenario, and the cutover, and reports. Everything it started is
stopped and deleted at the end, also on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from standby.backup import BackupRequest, run_backup
from standby.backup_store import S3Store
from standby.catalog import BackupManifest
from standby.integrity import KmsMac
from standby.local.ai_fake import AiProviderFake
from standby.local.heroku_fake import FakeApp, HerokuFake
from standby.local.moto_server import moto_server
from standby.local.postgres import LocalPostgres
from standby.local.standby_side import LocalStandby
from standby.local.standby_world import WorldSpec, build_standby_world, replicate_backups, warm_up
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.sample_data import load_pagila
from standby.standby_manifest import StandbyManifest
from standby.vocabulary import AiProvider

CUTOVER_SCENARIOS: Final = ("heroku-down", "graceful", "region-down")
HEROKU_SCENARIOS: Final = ("bad-release", "data-loss")  # recovered on Heroku itself, no cutover
SCENARIOS: Final = CUTOVER_SCENARIOS + HEROKU_SCENARIOS
RECOVERIES: Final = ("point-in-time", "follower", "from-backup")  # how data-loss recovers
AI_MODELS: Final = {"openai": ("gpt-4o",), "anthropic": ("claude-sonnet-4-5",)}
APP: Final = "acme-rehearsal"
REGIONS: Final = {"standby": "us-east-2", "second": "us-west-2"}
TOKEN: Final = "rehearsal-heroku-token"
NOT_EXERCISED: Final = (
    "real DNS resolution (records are read back from moto's Route 53; no name server is asked)",
    "real ECS tasks and load balancer probes (a local web app answers the health check for the web service)",
    "real replication between regions (the rehearsal copies the backup to the second region's bucket)",
    "RDS resizing and Multi-AZ behaviour",
)

HEROKU_NOT_EXERCISED: Final = (
    "real Heroku Postgres (a rollback database is a copy of a state the fake remembered; a follower is a copy "
    "that does not stream, and its lag is set, not measured)",
    "real dyno restarts and release phases (a release phase is a short wait; the app's health URL is a "
    "local web app that reads the fake's state)",
)


@dataclass(frozen=True)
class RehearsalResult:
    report: dict[str, Any]
    expected_counts: dict[str, int]  # what the app's data should hold: Heroku's, or Heroku's before the loss
    recovered_counts: dict[str, int]  # what the recovered side holds


def _counts(url: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # type: ignore[index]


def _answers(database_url: str) -> bool:
    """Whether the app's database answers with the app in it."""
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            conn.execute("SELECT 1 FROM rental LIMIT 1")
        return True
    except psycopg.Error:
        return False


@contextmanager
def _web_app(healthy: Callable[[], bool]) -> Iterator[str]:
    """A web app on loopback whose /health answers 200 while `healthy()`, else 503; its health URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 404 if self.path != "/health" else 200 if healthy() else 503
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True, name="web-app").start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/health"
    finally:
        server.shutdown()
        server.server_close()


def _health_app(database_url: Callable[[], str]) -> Any:
    """The stand-in for the standby's web service: /health answers 200 when its database holds the app."""
    return _web_app(lambda: _answers(database_url()))


def _ai_providers(stack: ExitStack) -> tuple[dict[str, Any], dict[str, str]]:
    """Stand-ins for OpenAI and Anthropic, and the AI config and keys of an app that uses OpenAI."""
    fakes = {
        provider: stack.enter_context(
            AiProviderFake(provider, f"{provider.value}-rehearsal-key", list(models))
        )
        for provider, models in (
            (AiProvider.OPENAI, AI_MODELS["openai"]),
            (AiProvider.ANTHROPIC, AI_MODELS["anthropic"]),
        )
    }
    ai = {
        "active": "openai",
        "providerSetting": "AI_PROVIDER",
        "providers": {
            p.value: {"keyVar": f"{p.value.upper()}_API_KEY", "baseUrl": fake.base_url}
            for p, fake in fakes.items()
        },
        "models": {"AI_MODEL": {name: models[0] for name, models in AI_MODELS.items()}},
    }
    settings = {f"{p.value.upper()}_API_KEY": fake.api_key for p, fake in fakes.items()}
    return ai, {**settings, "AI_PROVIDER": "openai", "AI_MODEL": AI_MODELS["openai"][0]}


@dataclass
class World:
    """What a rehearsal starts: the app on the fake Heroku with its database, the standby in two regions
    on moto, and the backup the schedule took."""

    heroku: HerokuFake
    app: FakeApp
    heroku_db: str
    standby_db: str
    standby_health: str  # the standby's web app's health URL
    worlds: dict[str, StandbyManifest]
    backup: BackupManifest
    aws_endpoint: str
    workdir: Path


def rehearse(
    scenario: str,
    workdir: Path,
    say: Callable[[str], None],
    rentals: int = 20000,
    keep: Callable[[], None] | None = None,
    ai_provider: str | None = None,
    recovery: str = RECOVERIES[0],
) -> RehearsalResult:
    """Run one rehearsal; `keep` (if given) is called before tearing down, to leave it up for exploration.

    With `ai_provider`, the app uses OpenAI (a stand-in on loopback) and the cutover switches it to
    `ai_provider` on the way, as `cutover.py --ai-provider` does. `recovery` is how the data-loss scenario
    recovers (recover_db.py's modes)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
    if recovery not in RECOVERIES:
        raise ValueError(f"recovery must be one of {', '.join(RECOVERIES)}")
    with ExitStack() as stack:
        world = _start_world(stack, scenario, workdir, say, rentals, ai_provider)
        if scenario == "bad-release":
            result = _roll_back(world, say)
        elif scenario == "data-loss":
            result = _recover_data(world, recovery, say)
        else:
            result = _cut_over(world, scenario, ai_provider, say)
        if keep is not None:
            say(
                f"left running: Heroku's database {world.heroku_db}, the standby's {world.standby_db}, AWS {world.aws_endpoint}"
            )
            keep()
        return result


def _start_world(
    stack: ExitStack,
    scenario: str,
    workdir: Path,
    say: Callable[[str], None],
    rentals: int,
    ai_provider: str | None,
) -> World:
    say("starting: PostgreSQL, moto's AWS, the fake Heroku API, the standby's web app ...")
    aws = stack.enter_context(moto_server(REGIONS["standby"]))
    # moto's first calls cost seconds of loading: paid while PostgreSQL starts and the sample loads.
    warming = stack.enter_context(ThreadPoolExecutor(1, "warm-up")).submit(warm_up, REGIONS["standby"])
    postgres = stack.enter_context(LocalPostgres(parent=workdir))
    heroku_db = postgres.create_database("heroku")
    say(f"loading the sample app (pagila, {rentals} rentals) into Heroku's database ...")
    load_pagila(heroku_db, rentals=rentals)
    standby_db = postgres.url("standby_app")
    health = stack.enter_context(_health_app(lambda: standby_db))
    tools = {
        "pg_restore": str(find_tool("pg_restore").path),
        "pg_dump": str(find_tool("pg_dump").path),
    }  # Heroku's own
    heroku = stack.enter_context(HerokuFake(TOKEN, pg_restore=tools["pg_restore"], pg_dump=tools["pg_dump"]))
    ai, settings = _ai_providers(stack) if ai_provider else (None, {})
    app = heroku.add_app(FakeApp(APP, config_vars={**settings, "DATABASE_URL": heroku_db}, formation={
        "web": {"quantity": 2, "size": "Standard-2X"}, "worker": {"quantity": 1, "size": "Standard-1X"}}))  # fmt: skip
    spec = WorldSpec(
        app=APP,
        region=REGIONS["standby"],
        database_url=standby_db,
        zone=f"{APP}.example",
        records={f"www.{APP}.example": "www-rehearsal.herokudns.com"},
        formation={"web": 2, "worker": 1},
        load_balancer_dns=f"{APP}-{REGIONS['standby']}.elb.amazonaws.com",
        app_settings=settings,
        ai=ai,
    )
    warming.result()
    first = build_standby_world(spec)
    second = build_standby_world(
        replace(spec, region=REGIONS["second"], hosted_zone_id=first.hosted_zone_id, mac_primary_keys=(str(first.backup_mac_key), str(first.runbook_mac_key)),
                load_balancer_dns=f"{APP}-{REGIONS['second']}.elb.amazonaws.com")
    )  # fmt: skip
    say("the scheduled backup runs ...")
    backup = run_backup(
        BackupRequest(
            APP,
            parse_database_url(heroku_db),
            S3Store(first.backup_bucket),
            find_tool("pg_dump"),
            signer=KmsMac(first.backup_mac_key or "", first.region),  # as the backup task signs
        )
    )
    if scenario == "region-down":
        replicate_backups(first.backup_bucket, second.backup_bucket, second.region)
    env = {"HEROKU_API_URL": heroku.url, "HEROKU_DATA_API_URL": heroku.url, "HEROKU_API_KEY": TOKEN,
           "HEROKU_API_ATTEMPTS": "2"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    stack.callback(_restore_environment, saved)
    return World(heroku, app, heroku_db, standby_db, health, {"standby": first, "second": second}, backup,
                 aws["AWS_ENDPOINT_URL"], workdir)  # fmt: skip


def _restore_environment(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _runbook_args(world: World, region: str) -> list[str]:
    workdir = world.workdir
    return ["--app", APP, "--yes", "--region", region, "--journal-dir", str(workdir / "journal"),
            "--json", str(workdir / "report.json"), "--report", str(workdir / "report.md"), "--health-timeout", "60"]  # fmt: skip


def _report(world: World, scenario: str, status: int, what: str) -> dict[str, Any]:
    if status != 0:
        raise RuntimeError(f"the {what} failed (exit {status}); see {world.workdir / 'report.md'}")
    report = dict(json.loads((world.workdir / "report.json").read_text()))
    not_exercised = NOT_EXERCISED if scenario in CUTOVER_SCENARIOS else HEROKU_NOT_EXERCISED
    report.update(scenario=scenario, backup=world.backup.backup_id, not_exercised=list(not_exercised))
    return report


def _cut_over(
    world: World, scenario: str, ai_provider: str | None, say: Callable[[str], None]
) -> RehearsalResult:
    from standby.commands import cutover

    target = world.worlds["second" if scenario == "region-down" else "standby"]
    # The app keeps taking writes after the backup; in a disaster they are what the RPO loses.
    time.sleep(1.0)
    with psycopg.connect(world.heroku_db, autocommit=True) as conn:
        conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('After', 'Backup')")
    args = _runbook_args(world, target.region)
    if ai_provider:
        args += ["--ai-provider", ai_provider]
    if scenario != "graceful":
        say(
            "disaster: Heroku goes dark."
            if scenario == "heroku-down"
            else "disaster: Heroku and the standby region are down."
        )
        world.heroku.stop()
        args.append("--primary-unreachable")
    say(f"cutover to {target.region} ...")
    status = cutover.main(args, standby_side=partial(LocalStandby, web_url=world.standby_health))
    report = _report(world, scenario, status, "cutover")
    tables = sorted(world.backup.tables)
    return RehearsalResult(report, _counts(world.heroku_db, tables), _counts(world.standby_db, tables))


def _roll_back(world: World, say: Callable[[str], None]) -> RehearsalResult:
    """A good deploy, then a bad one whose dynos answer 500; `rollback.py` brings the good one back."""
    from standby.commands import rollback

    app, tables = world.app, sorted(world.backup.tables)
    broken: set[str] = set()
    app.release_phase, app.release_phase_seconds = True, 0.3  # `release: rails db:migrate`, as apps have
    with _heroku_health(world.heroku, app, broken) as health:
        _released(app, app.deploy("Deploy 1a2b3c"))
        bad = _released(app, app.deploy("Deploy 4d5e6f"))
        broken.add(bad["slug"]["id"])
        say(f"disaster: release v{bad['version']} ({bad['description']}) answers 500.")
        before = _counts(world.heroku_db, tables)
        say("rollback ...")
        status = rollback.main(
            [*_runbook_args(world, REGIONS["standby"]), "--health-url", health],
            standby_side=partial(LocalStandby, web_url=world.standby_health),
        )
    report = _report(world, "bad-release", status, "rollback")
    return RehearsalResult(report, before, _counts(world.heroku_db, tables))


def _recover_data(world: World, recovery: str, say: Callable[[str], None]) -> RehearsalResult:
    """The primary database loses data (a careless DELETE, or for a follower the whole leader); recover_db.py
    recovers it on Heroku."""
    from standby.commands import recover_db

    app, tables = world.app, sorted(world.backup.tables)
    args = [recovery, *_runbook_args(world, REGIONS["standby"])]
    if recovery == "follower":
        app.add_follower()
    elif recovery == "point-in-time":
        app.database.remember()  # Heroku's continuous protection holds the database as it is now
        time.sleep(0.5)
        args += ["--at", datetime.now(UTC).isoformat()]
        time.sleep(0.5)
    else:
        args += ["--backup", world.backup.backup_id]
    before = _counts(world.heroku_db, tables)
    if recovery == "follower":
        say("disaster: the leader database's host fails.")
        _lose_database(world.heroku_db)
    else:
        say("disaster: a careless DELETE removes most rentals and their payments.")
        with psycopg.connect(world.heroku_db, autocommit=True) as conn:
            conn.execute("DELETE FROM payment WHERE rental_id > 100")
            conn.execute("DELETE FROM rental WHERE rental_id > 100")
    with _heroku_health(world.heroku, app, set()) as health:
        say(f"recover_db {recovery} ...")
        status = recover_db.main(
            [*args, "--health-url", health], standby_side=partial(LocalStandby, web_url=world.standby_health)
        )
    report = _report(world, "data-loss", status, f"recover_db {recovery}")
    report["recovery"] = recovery
    return RehearsalResult(report, before, _counts(app.config_vars["DATABASE_URL"], tables))


def _released(app: FakeApp, release: dict[str, Any]) -> dict[str, Any]:
    """The release once its release phase ended."""
    while release["status"] == "pending":
        time.sleep(0.05)
    return release


def _lose_database(url: str) -> None:
    """The database stops taking connections, and those it had end: its host is gone."""
    params = conninfo_to_dict(url)
    name = str(params["dbname"])
    with psycopg.connect(make_conninfo("", **{**params, "dbname": "postgres"}), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])


@contextmanager
def _heroku_health(heroku: HerokuFake, app: FakeApp, broken: set[str]) -> Iterator[str]:
    """The app's dynos on Heroku, as its health URL shows them: 200 while the router serves (no maintenance,
    web dynos), the current release's slug is not a broken one, and DATABASE_URL holds the app."""

    def healthy() -> bool:
        current = next((r for r in reversed(app.releases) if r.get("current")), None)
        if app.maintenance or not app.formation["web"]["quantity"]:
            return False
        if current is not None and current["slug"]["id"] in broken:
            return False
        return _answers(app.config_vars.get("DATABASE_URL", ""))

    with _web_app(healthy) as url:
        yield url
