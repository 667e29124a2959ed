"""A standby world for runbook tests, all on loopback: "Heroku's" database and the standby's in the
session's PostgreSQL, moto's server holding the standby as `pulumi up` leaves it, the fake Heroku API, and
a stand-in for the standby's web app. Runbooks run in-process through their command's `main`, with the
stand-in standby side; only each script's command-line contract test starts a subprocess."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from standby.backup import BackupRequest, run_backup
from standby.backup_store import S3Store
from standby.catalog import BackupManifest
from standby.commands.runbook_command import StandbySideFactory
from standby.config.models import DnsMode, Mode
from standby.integrity import KmsMac
from standby.local.heroku_fake import FakeApp, HerokuFake
from standby.local.postgres import LocalPostgres
from standby.local.standby_side import LocalStandby
from standby.local.standby_world import WorldSpec, build_standby_world
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.standby_manifest import StandbyManifest

TOKEN = "heroku-token-not-for-logs"
LB = "acme-standby-123.us-east-2.elb.amazonaws.com"


class WebStandIn:
    """The standby's web app: answers /health with 200 while `healthy`, on a free loopback port."""

    def __init__(self) -> None:
        self.healthy = True
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/health" and stand_in.healthy else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/health"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Run:
    code: int
    output: str  # stdout and stderr together, as the operator sees them


def run_in_process(main: Callable[..., int], argv: list[str], side: StandbySideFactory) -> Run:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv, standby_side=side)
    return Run(code, out.getvalue())


@dataclass
class Scene:
    heroku: HerokuFake
    manifest: StandbyManifest
    source: str  # Heroku's DATABASE_URL
    standby: str  # the standby's DATABASE_URL
    journal: Path
    web: WebStandIn
    name_servers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def app(self) -> str:
        return self.manifest.app

    def side(self) -> StandbySideFactory:
        return partial(LocalStandby, web_url=self.web.url, name_servers=self.name_servers)

    def run(self, main: Callable[..., int], *args: str, side: StandbySideFactory | None = None) -> Run:
        """A runbook command in this process, as `scripts/<name>.py --app APP --yes ...` would run it."""
        argv = [
            "--app",
            self.app,
            "--yes",
            "--journal-dir",
            str(self.journal),
            "--health-timeout",
            "5",
            *args,
        ]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(argv, standby_side=side or self.side())
        return Run(code, out.getvalue())

    def records(self) -> dict[str, dict[str, Any]]:
        """The app's CNAME or A records, by first label (www, api)."""
        sets = boto3.client("route53").list_resource_record_sets(HostedZoneId=self.manifest.hosted_zone_id)
        return {s["Name"].split(".")[0]: s for s in sets["ResourceRecordSets"] if s["Type"] in ("CNAME", "A")}

    def mode(self) -> str:
        answer = boto3.client("ssm").get_parameter(Name=self.manifest.mode_parameter)
        return str(answer["Parameter"]["Value"])


def take_backup(manifest: StandbyManifest, source_url: str, streams: int | None = None) -> BackupManifest:
    """A backup of `source_url` into the world's bucket, signed as the backup task signs it."""
    return run_backup(
        BackupRequest(
            manifest.app,
            parse_database_url(source_url),
            S3Store(manifest.backup_bucket),
            find_tool("pg_dump"),
            streams=streams,
            signer=KmsMac(manifest.backup_mac_key or "", manifest.region),
        )
    )


def build_scene(
    pg_server: LocalPostgres,
    template: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    dns_mode: DnsMode = DnsMode.RECORD,
    mode: Mode = Mode.WARM,
    ai: dict[str, Any] | None = None,
    settings: dict[str, str] | None = None,
    world: dict[str, Any] | None = None,
) -> Iterator[Scene]:
    """A fresh app in the shared moto server and PostgreSQL, with one backup of its database taken.

    `ai` (the AI providers, camelCase) and `settings` (config vars besides DATABASE_URL, on both sides)
    are for the AI switch; `world` sets more of the WorldSpec (second_region, image)."""
    source = pg_server.create_database("heroku", template=template)
    standby = pg_server.url(f"standby_{time.time_ns()}")
    app = f"acme-{time.time_ns() % 10**9}"  # moto's state lives as long as the session: one app per test
    manifest = build_standby_world(
        WorldSpec(
            app=app,
            region="us-east-2",
            database_url=standby,
            # One zone per test: moto's Route 53 checks record names across zones of the same name.
            zone=f"{app}.example",
            records={
                f"www.{app}.example": "www-1.herokudns.com",
                f"api.{app}.example": "api-1.herokudns.com",
            },
            formation={"web": 3, "worker": 2},
            sizes={"web": "Standard-2X", "worker": "Standard-1X"},
            load_balancer_dns=LB,
            dns_mode=dns_mode,
            mode=mode,
            app_settings=settings,
            ai=ai,
            **(world or {}),
        )
    )
    take_backup(manifest, source)
    web = WebStandIn()
    tools = {
        "pg_restore": str(find_tool("pg_restore").path),
        "pg_dump": str(find_tool("pg_dump").path),
    }  # Heroku's own
    with HerokuFake(TOKEN, pg_restore=tools["pg_restore"], pg_dump=tools["pg_dump"]) as heroku:
        heroku.add_app(
            FakeApp(app, config_vars={**(settings or {}), "DATABASE_URL": source}, formation={
                "web": {"quantity": 3, "size": "Standard-2X"}, "worker": {"quantity": 2, "size": "Standard-1X"}})
        )  # fmt: skip
        for key, value in {"HEROKU_API_URL": heroku.url, "HEROKU_DATA_API_URL": heroku.url,
                           "HEROKU_API_KEY": TOKEN, "HEROKU_API_ATTEMPTS": "1"}.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        yield Scene(heroku, manifest, source, standby, tmp_path / "journal", web)
    web.close()
