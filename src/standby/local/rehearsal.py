"""The local rehearsal: the real runbooks, step for step, against stand-ins on this machine.

It starts, on loopback: a PostgreSQL server holding "Heroku's" database (the sample app with generated
rows) and the standby's database, moto's AWS holding the standby as `pulumi up` leaves it, the fake
Heroku API, and a small web app that serves the health path from the standby database. Then it runs a
backup, the disaster of the chosen scenario, and the cutover, and reports. Everything it started is
stopped and deleted at the end, also on Ctrl-C.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import psycopg

from standby.backup import BackupRequest, run_backup
from standby.backup_store import S3Store
from standby.config.models import AiProvider
from standby.integrity import KmsMac
from standby.local.ai_fake import AiProviderFake
from standby.local.heroku_fake import FakeApp, HerokuFake
from standby.local.moto_server import moto_server
from standby.local.postgres import LocalPostgres
from standby.local.standby_side import LocalStandby
from standby.local.standby_world import WorldSpec, build_standby_world
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.sample_data import load_pagila

SCENARIOS: Final = ("heroku-down", "graceful", "region-down")
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


@dataclass(frozen=True)
class RehearsalResult:
    report: dict[str, Any]
    source_counts: dict[str, int]
    standby_counts: dict[str, int]


def _counts(url: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # type: ignore[index]


@contextmanager
def _health_app(database_url: Callable[[], str]) -> Iterator[str]:
    """The stand-in for the standby's web service: /health answers 200 when its database holds the app."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 404
            if self.path == "/health":
                try:
                    with psycopg.connect(database_url(), connect_timeout=2) as conn:
                        conn.execute("SELECT 1 FROM rental LIMIT 1")
                    status = 200
                except psycopg.Error:
                    status = 503
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True, name="standby-web").start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/health"
    finally:
        server.shutdown()
        server.server_close()


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


def rehearse(
    scenario: str,
    workdir: Path,
    say: Callable[[str], None],
    rentals: int = 20000,
    keep: Callable[[], None] | None = None,
    ai_provider: str | None = None,
) -> RehearsalResult:
    """Run one rehearsal; `keep` (if given) is called before tearing down, to leave it up for exploration.

    With `ai_provider`, the app uses OpenAI (a stand-in on loopback) and the cutover switches it to
    `ai_provider` on the way, as `cutover.py --ai-provider` does."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
    from standby.commands import cutover

    with ExitStack() as stack:
        say("starting: PostgreSQL, moto's AWS, the fake Heroku API, the standby's web app ...")
        aws = stack.enter_context(moto_server(REGIONS["standby"]))
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
        heroku = stack.enter_context(
            HerokuFake(TOKEN, pg_restore=tools["pg_restore"], pg_dump=tools["pg_dump"])
        )
        ai, settings = _ai_providers(stack) if ai_provider else (None, {})
        heroku.add_app(FakeApp(APP, config_vars={**settings, "DATABASE_URL": heroku_db}, formation={
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
        first = build_standby_world(spec)
        second = build_standby_world(
            replace(spec, region=REGIONS["second"], hosted_zone_id=first.hosted_zone_id, mac_primary_keys=(str(first.backup_mac_key), str(first.runbook_mac_key)),
                    load_balancer_dns=f"{APP}-{REGIONS['second']}.elb.amazonaws.com")
        )  # fmt: skip
        worlds = {"standby": first, "second": second}
        target = worlds["second" if scenario == "region-down" else "standby"]

        say("the scheduled backup runs ...")
        backup = run_backup(
            BackupRequest(
                APP,
                parse_database_url(heroku_db),
                S3Store(worlds["standby"].backup_bucket),
                find_tool("pg_dump"),
                signer=KmsMac(first.backup_mac_key or "", first.region),  # as the backup task signs
            )
        )
        if scenario == "region-down":
            _replicate(worlds["standby"].backup_bucket, target.backup_bucket, target.region)
        # The app keeps taking writes after the backup; in a disaster they are what the RPO loses.
        time.sleep(1.0)
        with psycopg.connect(heroku_db, autocommit=True) as conn:
            conn.execute("INSERT INTO actor (first_name, last_name) VALUES ('After', 'Backup')")

        args = ["--app", APP, "--yes", "--region", target.region, "--journal-dir", str(workdir / "journal"),
                "--json", str(workdir / "report.json"), "--report", str(workdir / "report.md"), "--health-timeout", "60"]  # fmt: skip
        if ai_provider:
            args += ["--ai-provider", ai_provider]
        if scenario != "graceful":
            say(
                "disaster: Heroku goes dark."
                if scenario == "heroku-down"
                else "disaster: Heroku and the standby region are down."
            )
            heroku.stop()
            args.append("--primary-unreachable")
        say(f"cutover to {target.region} ...")
        env = {"HEROKU_API_URL": heroku.url, "HEROKU_DATA_API_URL": heroku.url, "HEROKU_API_KEY": TOKEN,
               "HEROKU_API_ATTEMPTS": "2"}  # fmt: skip
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            status = cutover.main(args, standby_side=partial(LocalStandby, web_url=health))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if status != 0:
            raise RuntimeError(f"the cutover failed (exit {status}); see {workdir / 'report.md'}")
        import json

        report = json.loads((workdir / "report.json").read_text())
        report["scenario"] = scenario
        report["backup"] = backup.backup_id
        report["not_exercised"] = list(NOT_EXERCISED)
        tables = sorted(backup.tables)
        source = _counts(heroku_db, tables)
        standby = _counts(standby_db, tables)
        if keep is not None:
            say(
                f"left running: Heroku's database {heroku_db}, the standby's {standby_db}, AWS {aws['AWS_ENDPOINT_URL']}"
            )
            keep()
        return RehearsalResult(report, source, standby)


def _replicate(source_bucket: str, destination_bucket: str, region: str) -> None:
    """What S3 replication does between the regions (moto stores the rule but does not replicate)."""
    source = S3Store(source_bucket)
    destination = S3Store(destination_bucket, region)
    for key in source.list_keys("backups/"):
        destination.write_stream(key, source.read_stream(key))
