"""A local stand-in for the Heroku Platform API, for the tests and the local rehearsal.

It serves the subset of the v3 API the runbooks use, on a free loopback port, with Heroku's paths,
headers, status codes and error bodies (`{"id": ..., "message": ...}`), and a `RateLimit-Remaining`
header. Clients reach it through HEROKU_API_URL and cannot tell the difference. Faults can be injected:
the next N answers as 429 or 503, or the whole API going dark.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from standby.local.heroku_postgres_fake import COLORS, FakeDatabase

ACCEPT_VERSION: Final = "application/vnd.heroku+json; version=3"
RATE_LIMIT: Final = 4500  # Heroku's per-token budget per hour
PAGE_SIZE: Final = 200  # Heroku's default page of a list
ANSWER_DELAY: Final = 2.0  # seconds a "timeout" answer is held back
UNFOLLOW_SECONDS: Final = 0.3  # how long a follower takes to stop following after `pg:unfollow`
CONFIG_VAR_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The Platform API routes the fake serves (tests/test_heroku_fake_contract.py holds each against Heroku's
# published schema); the Postgres data API's (/client/v11/...) are not in that schema.
PLATFORM_ROUTES: Final = (
    ("GET", "/apps/{app}"),
    ("PATCH", "/apps/{app}"),
    ("GET", "/apps/{app}/config-vars"),
    ("PATCH", "/apps/{app}/config-vars"),
    ("GET", "/apps/{app}/releases"),
    ("GET", "/apps/{app}/formation"),
    ("PATCH", "/apps/{app}/formation"),
    ("GET", "/apps/{app}/addons"),
    ("GET", "/apps/{app}/domains"),
    ("GET", "/apps/{app}/dynos"),
    ("POST", "/apps/{app}/dynos/{dyno}/actions/stop"),
    ("POST", "/apps/{app}/releases"),
    ("GET", "/apps/{app}/addon-attachments"),
    ("POST", "/actions/addon-attachments/resolve"),
    ("GET", "/apps/{app}/releases/{release}"),
    ("GET", "/account"),
    ("GET", "/addon-attachments"),
    ("POST", "/addon-attachments"),
    ("POST", "/apps/{app}/addons"),
    ("GET", "/apps/{app}/slugs/{slug}"),
)


def _identity(value: Any) -> str:
    """An identity as the API takes it: a string, or an object with its id or name."""
    if isinstance(value, dict):
        return str(value.get("id") or value.get("name") or "")
    return str(value or "")


def _moment(text: str) -> float:
    """A time as `--to` takes it (`2026-12-01 10:15:00+00`, ISO, or with ` UTC`); ValueError if not one."""
    text = text.strip().removesuffix(" UTC").removesuffix("UTC")
    moment = datetime.fromisoformat(text + ("00" if re.search(r"[+-]\d\d$", text) else ""))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _uuid(name: str) -> str:
    """A stable id for a named thing (a region, a size, a stack), as Heroku's ids are stable."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://api.heroku.com/{name}"))


_ONE_OFF_NUMBERS: Final = itertools.count(1001)  # run.1001, scheduler.1002, ...: unique, as Heroku's are
CREATED: Final = "2024-05-01T12:00:00Z"  # when the fake's apps and add-ons were "created"
OWNER: Final = {"id": _uuid("owner"), "email": "owner@example.com"}
ACCOUNT: Final = {
    "allow_tracking": False, "beta": False, "created_at": CREATED, "email": OWNER["email"], "federated": False,
    "id": OWNER["id"], "identity_provider": None, "last_login": CREATED, "name": "Owner", "sms_number": None,
    "suspended_at": None, "delinquent_at": None, "two_factor_authentication": True, "updated_at": CREATED,
    "verified": True, "country_of_residence": None, "default_organization": None, "default_team": None,
}  # fmt: skip


@dataclass
class FakeDyno:
    """One dyno. Maintenance mode does not stop it (it only stops the router); a stop, or for a formation
    dyno a scale below it, does. `work` is what it does while it runs (a test's writer), in a thread."""

    name: str  # web.1, run.4721, scheduler.2931, release.8
    type: str
    command: str
    size: str = "Standard-1X"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ"))
    work: Callable[[threading.Event], None] | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> FakeDyno:
        if self.work is not None:
            self.thread = threading.Thread(
                target=self.work, args=(self.stopping,), daemon=True, name=self.name
            )
            self.thread.start()
        return self

    def stop(self) -> None:
        """SIGTERM: the process ends (its thread is waited for), then the dyno is gone."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def as_json(self, app: FakeApp) -> dict[str, Any]:
        current = next((r for r in reversed(app.releases) if r.get("current")), None)
        return {
            "id": self.id, "name": self.name, "type": self.type, "command": self.command, "size": self.size,
            "state": "up", "attach_url": None, "created_at": self.created_at, "updated_at": self.created_at,
            "release": {"id": current["id"], "version": current["version"]} if current else None,
            "app": {"id": app.id, "name": app.name},
        }  # fmt: skip


@dataclass
class FakeApp:
    name: str
    region: str = "us"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    maintenance: bool = False
    config_vars: dict[str, str] = field(default_factory=dict)
    formation: dict[str, dict[str, Any]] = field(default_factory=dict)  # type -> {quantity, size}
    domains: list[str] = field(default_factory=list)
    # hostname -> its DNS target (`cname`; default <host>.herokudns.com)
    dns_targets: dict[str, str] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)  # slug id -> the git commit it was built from
    releases: list[dict[str, Any]] = field(default_factory=list)
    release_status: str = "succeeded"  # how the next releases end: "failed" when the release phase fails
    release_phase: bool = False  # the Procfile declares `release:` (migrations): it runs on every release
    release_phase_seconds: float = 0.3  # how long a release stays pending while its release phase runs
    dynos: dict[str, FakeDyno] = field(default_factory=dict)
    # The Heroku Postgres add-ons the app owns, by id (the first is made with the app, attached as
    # DATABASE), and its attachments by name: its own add-ons or another app's (apps may share one).
    databases: dict[str, FakeDatabase] = field(default_factory=dict)
    attachments: dict[str, FakeDatabase] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scale_dynos()
        if not self.databases:
            first = FakeDatabase(
                self.config_vars.get("DATABASE_URL", ""), self.ref, name=f"postgresql-{self.name}"
            )
            self.databases[first.id] = first
            self.attachments.setdefault("DATABASE", first)

    @property
    def postgres_addon_id(self) -> str:
        """The add-on the app was made with."""
        return next(iter(self.databases))

    @property
    def database(self) -> FakeDatabase:
        """The add-on attached as DATABASE now."""
        return self.attachments["DATABASE"]

    def attach(self, owner: FakeApp, name: str = "DATABASE") -> None:
        """`heroku addons:attach <owner's database> --as DATABASE`: this app uses the owner's database."""
        self.attach_database(owner.databases[owner.postgres_addon_id], name)

    def attach_database(self, database: FakeDatabase, name: str | None = None) -> str:
        """What Heroku does for `POST /addon-attachments`: the attachment, its config var `<NAME>_URL` and
        the releases that restart the dynos with it ("Detach NAME" of the add-on it replaces, then "Attach
        NAME"). Without a name, Heroku picks a color (HEROKU_POSTGRESQL_<COLOR>)."""
        name = name or next(
            f"HEROKU_POSTGRESQL_{c}" for c in COLORS if f"HEROKU_POSTGRESQL_{c}" not in self.attachments
        )
        replaced = self.attachments.get(name)
        if replaced is not None and replaced is not database:
            self.release(f"Detach {name} (@ref:{replaced.name})")
        self.attachments[name] = database
        self.config_vars[f"{name}_URL"] = database.url
        self.release(f"Attach {name} (@ref:{database.name})")
        return name

    def add_follower(self, behind_by: int = 0) -> FakeDatabase:
        """`heroku addons:create heroku-postgresql:PLAN --follow DATABASE_URL`, provisioned already."""
        follower = FakeDatabase.follower_of(self.database)
        follower.ready_at, follower.behind_by = 0.0, behind_by
        self.databases[follower.id] = follower
        self.attach_database(follower)
        return follower

    def attachments_json(self) -> list[dict[str, Any]]:
        return [
            {"addon": {"id": db.id, "name": db.name, "app": dict(db.owner)}, "app": self.ref,
             "created_at": CREATED, "id": _uuid(f"{self.id}/{name}"), "log_input_url": None, "name": name,
             "namespace": None, "updated_at": CREATED, "web_url": None}
            for name, db in sorted(self.attachments.items())
        ]  # fmt: skip

    def scale_dynos(self) -> None:
        """The formation's dynos follow its quantities: web.1 .. web.N; one-off dynos are left alone."""
        for kind, process in self.formation.items():
            quantity = int(process["quantity"])
            for name in [
                n for n, d in self.dynos.items() if d.type == kind and int(n.split(".")[1]) > quantity
            ]:
                self.dynos.pop(name).stop()
            for i in range(1, quantity + 1):
                self.dynos.setdefault(
                    f"{kind}.{i}", FakeDyno(f"{kind}.{i}", kind, kind, str(process["size"]))
                )

    def run_one_off(
        self, kind: str = "run", command: str = "bash", work: Callable[[threading.Event], None] | None = None
    ) -> FakeDyno:
        """`heroku run` (kind "run"), a Heroku Scheduler job ("scheduler") or a release phase ("release")."""
        name = f"{kind}.{next(_ONE_OFF_NUMBERS)}"
        dyno = self.dynos[name] = FakeDyno(name, kind, command, work=work).start()
        return dyno

    def release(self, description: str, slug: str | None = None, pending: float = 0.0) -> dict[str, Any]:
        """What Heroku does on a config var change, a deploy or a rollback: a new release, which restarts
        the dynos. With a release phase (`release_phase`) it stays `pending` for `pending` seconds, then
        ends as `release_status` says; a failed one leaves the release before it current."""
        at = _now()
        released: dict[str, Any] = {
            "addon_plan_names": ["heroku-postgresql:standard-0"], "artifacts": [], "app": self.ref,
            "created_at": at, "description": description, "id": str(uuid.uuid4()), "updated_at": at,
            "slug": {"id": slug or _uuid(f"{self.id}/slug")}, "status": "pending", "user": dict(OWNER),
            "version": len(self.releases) + 1, "current": False, "eligible_for_rollback": False,
            "output_stream_url": f"https://busl.heroku.com/streams/{uuid.uuid4()}" if self.release_phase else None,
        }  # fmt: skip
        self.releases.append(released)

        def finish() -> None:
            released["status"], released["updated_at"] = self.release_status, _now()
            if self.release_status == "succeeded":
                for older in self.releases:
                    older["current"] = older is released
                released["eligible_for_rollback"] = True

        if pending and self.release_phase:
            threading.Timer(pending, finish).start()
        else:
            finish()
        return released

    def deploy(self, description: str, commit: str | None = None) -> dict[str, Any]:
        """`git push heroku`: a release of a new slug, built from `commit`."""
        slug = str(uuid.uuid4())
        self.commits[slug] = commit or uuid.uuid4().hex + uuid.uuid4().hex[:8]
        return self.release(description, slug=slug, pending=self.release_phase_seconds)

    def slug_json(self, slug: str) -> dict[str, Any]:
        return {
            "blob": {"method": "get", "url": f"https://slug-blobs.example/{slug}.tgz"},
            "buildpack_provided_description": "Ruby", "checksum": None, "commit": self.commits.get(slug),
            "commit_description": None, "created_at": CREATED, "id": slug,
            "process_types": {t: f"bundle exec {t}" for t in self.formation}, "size": 52428800,
            "stack": {"id": _uuid("stack"), "name": "heroku-24"}, "updated_at": CREATED,
        }  # fmt: skip

    @property
    def ref(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}

    def as_json(self) -> dict[str, Any]:
        """The app as Heroku's `app` schema has it: every field, null where Heroku has nothing."""
        released = self.releases[-1]["created_at"] if self.releases else None
        return {
            "acm": False, "archived_at": None, "buildpack_provided_description": "Ruby",
            "build_stack": {"id": _uuid("stack"), "name": "heroku-24"}, "created_at": CREATED,
            "generation": {"id": _uuid("cedar"), "name": "cedar"}, "git_url": f"https://git.heroku.com/{self.name}.git",
            "id": self.id, "internal_routing": None, "maintenance": self.maintenance, "name": self.name,
            "owner": {"email": OWNER["email"], "id": OWNER["id"]}, "organization": None, "team": None,
            "region": {"id": _uuid(self.region), "name": self.region}, "released_at": released, "repo_size": None,
            "slug_size": 52428800, "space": None, "stack": {"id": _uuid("stack"), "name": "heroku-24"},
            "updated_at": _now(), "web_url": f"https://{self.name}.herokuapp.com/",
        }  # fmt: skip

    def formation_json(self) -> list[dict[str, Any]]:
        return [
            {
                "app": self.ref,
                "command": f"bundle exec {t}",
                "created_at": CREATED,
                "dyno_size": {"id": _uuid(str(f["size"])), "name": str(f["size"])},
                "id": _uuid(f"{self.id}/{t}"),
                "quantity": f["quantity"],
                "size": f["size"],
                "type": t,
                "updated_at": _now(),
            }
            for t, f in sorted(self.formation.items())
        ]

    def addons_json(self) -> list[dict[str, Any]]:
        """Its own add-ons and those of other apps attached to it, as `heroku addons` lists them."""
        shared = {db.id: db for db in self.attachments.values() if db.id not in self.databases}
        return [self.addon_json(db) for db in [*self.databases.values(), *shared.values()]]

    def addon_json(self, db: FakeDatabase) -> dict[str, Any]:
        return {
            "actions": [], "addon_service": {"id": _uuid("heroku-postgresql"), "name": "heroku-postgresql"},
            "billing_entity": {**db.owner, "type": "app"}, "app": dict(db.owner),
            "billed_price": {"cents": 5000, "contract": False, "unit": "month"},
            "config_vars": sorted(f"{n}_URL" for n, d in self.attachments.items() if d is db),
            "created_at": CREATED, "id": db.id, "name": db.name,
            "plan": {"id": _uuid(db.plan), "name": f"heroku-postgresql:{db.plan}"},
            "provider_id": f"resource{db.id[:8]}@heroku.com", "provision_message": "",
            "state": "provisioning" if db.waiting else "provisioned", "updated_at": CREATED, "web_url": None,
        }  # fmt: skip

    def domains_json(self) -> list[dict[str, Any]]:
        default = f"{self.name}.herokuapp.com"
        return [
            {
                "acm_status": None,
                "acm_status_reason": None,
                "app": self.ref,
                "cname": None if host == default else self.dns_targets.get(host, f"{host}.herokudns.com"),
                "created_at": CREATED,
                "hostname": host,
                "id": _uuid(host),
                "kind": "heroku" if host == default else "custom",
                "updated_at": CREATED,
                "status": "succeeded",
                "sni_endpoint": None,
            }
            for host in [default, *self.domains]
        ]


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any


class HerokuFake:
    """The fake API and its state. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        pg_restore: str | None = None,
        pg_dump: str | None = None,
    ) -> None:
        self.token = token
        self.pg_restore = pg_restore  # Heroku restores backups with pg_restore too
        self.pg_dump = pg_dump  # and captures them with pg_dump
        self.backups: dict[str, bytes] = {}  # captured backups by name (b001, ...), as Heroku keeps them
        self.transfers: dict[str, dict[str, Any]] = {}
        self.apps: dict[str, FakeApp] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: deque[int] = deque()
        self._lost_answers: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._host = host
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def add_app(self, app: FakeApp) -> FakeApp:
        self.apps[app.name] = app
        return app

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (429 carries Retry-After: 0)."""
        with self._lock:
            self._faults.extend([status] * count)

    def start(self) -> HerokuFake:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="heroku-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: from here on, connections are refused (the API "goes dark")."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HerokuFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def lose_next_answer(self, method: str, kind: str, how: str = "503") -> None:
        """Act on the next `method` to `.../<kind>` (restores, backups), then answer 503 (`how="503"`) or
        only after `ANSWER_DELAY` s, past a client's timeout (`how="timeout"`): done, and not told."""
        with self._lock:
            self._lost_answers[(method, kind)] = how

    def lose_answer(self, route: tuple[str, str]) -> str | None:
        with self._lock:
            return self._lost_answers.pop(route, None)

    def take_fault(self) -> int | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def find(self, ident: str) -> FakeApp | None:
        return self.apps.get(ident) or next((a for a in self.apps.values() if a.id == ident), None)

    def database(self, ident: str) -> FakeDatabase | None:
        """A Heroku Postgres add-on of any app, by id or name."""
        return next(
            (d for a in self.apps.values() for d in a.databases.values() if ident in (d.id, d.name)), None
        )

    def url_of(self, database: FakeDatabase) -> str:
        """Where the database is reached: as the app that uses it as DATABASE has it in its config (a test
        may have rotated it there), else the add-on's own URL."""
        for app in self.apps.values():
            if app.attachments.get("DATABASE") is database and app.config_vars.get("DATABASE_URL"):
                return app.config_vars["DATABASE_URL"]
        return database.url


def _handler_for(fake: HerokuFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `fake.requests`
            return

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("RateLimit-Remaining", str(RATE_LIMIT - len(fake.requests)))
            self.send_header("Request-Id", str(uuid.uuid4()))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _error(
            self, status: int, error_id: str, message: str, headers: dict[str, str] | None = None
        ) -> None:
            self._send(status, {"id": error_id, "message": message}, headers)

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                self._error(400, "bad_request", "Invalid JSON in request body.")
                return
            path = self.path.split("?", 1)[0]
            fake.requests.append(RecordedRequest(method, path, body))

            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._error(401, "unauthorized", "Invalid credentials provided.")
                return
            if ACCEPT_VERSION not in (self.headers.get("Accept") or "") and not path.startswith("/client/"):
                self._error(400, "bad_request", "Please specify a version along with Heroku's API MIME type.")
                return
            fault = fake.take_fault()
            if fault == 429:
                self._error(
                    429, "rate_limit", "Your account reached the API rate limit.", {"Retry-After": "0"}
                )
                return
            if fault is not None:
                self._error(fault, "unavailable", "Heroku API is temporarily unavailable.")
                return

            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts[:2] == ["client", "v11"]:
                self._data_api(method, parts[2:], body)
                return
            if (method, *parts) == ("POST", "actions", "addon-attachments", "resolve"):
                self._resolve_attachment(body or {})
                return
            if (method, *parts) == ("GET", "account"):  # `heroku ps` asks whose account it is
                self._send(200, ACCOUNT)
                return
            if (method, *parts) == ("POST", "addon-attachments"):  # `heroku pg:promote` moves DATABASE
                self._attach(body or {})
                return
            if (method, *parts) == ("GET", "addon-attachments"):  # `heroku addons` lists every attachment
                self._send_list([a for app in fake.apps.values() for a in app.attachments_json()], "id")
                return
            if len(parts) < 2 or parts[0] != "apps":
                self._error(404, "not_found", "The requested API endpoint was not found.")
                return
            app = fake.find(parts[1])
            if app is None:
                self._error(404, "not_found", "Couldn't find that app.")
                return
            route = (method, *parts[2:3])
            if route == ("GET",):
                self._send(200, app.as_json())
            elif route == ("PATCH",):
                changes = body or {}
                if "maintenance" in changes:
                    app.maintenance = bool(changes["maintenance"])
                self._send(200, app.as_json())
            elif route == ("GET", "config-vars"):
                self._send(200, app.config_vars)
            elif route == ("PATCH", "config-vars"):
                bad = sorted(k for k in (body or {}) if not CONFIG_VAR_NAME.fullmatch(str(k)))
                if bad:
                    self._error(422, "invalid_params", f"Invalid config var name(s): {', '.join(bad)}.")
                    return
                for key, value in (body or {}).items():
                    if value is None:
                        app.config_vars.pop(key, None)
                    else:
                        app.config_vars[key] = str(value)
                app.release(f"Set {', '.join(sorted(body or {}))} config vars")
                self._send(200, app.config_vars)
            elif route == ("GET", "releases") and len(parts) == 4:  # one release, by id or version
                found = next((r for r in app.releases if parts[3] in (r["id"], str(r["version"]))), None)
                if found is None:
                    self._error(404, "not_found", "Couldn't find that release.")
                    return
                self._send(200, found)
            elif route == ("GET", "releases"):
                # Heroku sorts by the Range header: `version ..; order=desc, max=N`.
                newest_first = "order=desc" in (self.headers.get("Range") or "")
                self._send_list(list(reversed(app.releases)) if newest_first else app.releases, "version")
            elif route == ("POST", "releases"):
                self._rollback(app, body)
            elif route == ("GET", "addon-attachments"):
                self._send_list(app.attachments_json(), "id")
            elif route == ("GET", "formation"):
                self._send(200, app.formation_json())
            elif route == ("GET", "dynos") and len(parts) == 3:
                self._send_list([d.as_json(app) for _, d in sorted(app.dynos.items())], "name")
            elif route == ("POST", "dynos") and len(parts) == 6 and parts[4:] == ["actions", "stop"]:
                dyno = app.dynos.get(parts[3]) or next(
                    (d for d in app.dynos.values() if d.id == parts[3]), None
                )
                if dyno is None:
                    self._error(404, "not_found", "Couldn't find that dyno.")
                    return
                app.dynos.pop(dyno.name).stop()
                self._send(202, {})
            elif route == ("PATCH", "formation"):
                self._patch_formation(app, body)
            elif route == ("GET", "addons"):
                self._send(200, app.addons_json())
            elif route == ("POST", "addons"):
                self._create_addon(app, body or {})
            elif route == ("GET", "domains"):
                self._send(200, app.domains_json())
            elif route == ("GET", "slugs") and len(parts) == 4:
                known = {str(r["slug"]["id"]) for r in app.releases} | set(app.commits)
                if parts[3] not in known:
                    self._error(404, "not_found", "Couldn't find that slug.")
                    return
                self._send(200, app.slug_json(parts[3]))
            else:
                self._error(404, "not_found", "The requested API endpoint was not found.")

        def _data_api(self, method: str, parts: list[str], body: Any) -> None:
            """The Heroku Postgres API subset behind `heroku pg:backups:restore URL`, `pg:backups:capture`,
            `pg:info`, `pg:wait` and `pg:unfollow`."""
            database = fake.database(parts[1]) if len(parts) >= 2 and parts[0] == "databases" else None
            if parts[:1] == ["databases"] and database is None:
                self._error(404, "not_found", "Couldn't find that database.")
                return
            if method == "POST" and len(parts) == 3 and database and parts[2] == "restores":
                transfer = _restore_from_url(fake, str((body or {}).get("backup_url", "")), database)
                self._created(method, "restores", transfer)
            elif method == "POST" and len(parts) == 3 and database and parts[2] == "backups":
                self._created(method, "backups", _capture(fake, database))
            elif method == "GET" and len(parts) == 2 and database:
                self._send(200, database.info_json())
            elif method == "GET" and len(parts) == 3 and database and parts[2] == "wait_status":
                self._send(200, database.wait_status_json())
            elif method == "PUT" and len(parts) == 3 and database and parts[2] == "unfollow":
                # Heroku stops the follower in the background: it still follows when the PUT answers.
                threading.Timer(UNFOLLOW_SECONDS, database.unfollow).start()
                self._send(200, {"message": f"{database.name} will stop following"})
            elif method == "GET" and len(parts) == 3 and parts[0] == "apps" and parts[2] == "transfers":
                app = fake.find(parts[1])
                if app is None:
                    self._error(404, "not_found", "Couldn't find that app.")
                    return
                with fake._lock:
                    self._send(200, [dict(t) for t in fake.transfers.values() if t.get("app_uuid") == app.id])
            elif method == "GET" and len(parts) == 4 and parts[0] == "apps" and parts[2] == "transfers":
                with fake._lock:
                    found = dict(fake.transfers[parts[3]]) if parts[3] in fake.transfers else None
                if found is None:
                    self._error(404, "not_found", "Couldn't find that transfer.")
                    return
                self._send(200, found)
            else:
                self._error(404, "not_found", "The requested API endpoint was not found.")

        def _send_list(self, items: list[dict[str, Any]], key: str) -> None:
            """A list as Heroku pages it: `Range: <key> ]<after>..; max=N` (default 200), 206 and Next-Range
            while more follow."""
            asked = self.headers.get("Range") or ""
            limit = int(m.group(1)) if (m := re.search(r"max=(\d+)", asked)) else PAGE_SIZE
            after = m.group(1) if (m := re.search(r"\](\S+?)\.\.", asked)) else None
            start = (
                next((i + 1 for i, item in enumerate(items) if str(item.get(key)) == after), 0)
                if after
                else 0
            )
            page = items[start : start + limit]
            if start + limit < len(items):
                self._send(206, page, {"Next-Range": f"{key} ]{page[-1][key]}..; max={limit}"})
            else:
                self._send(200, page)

        def _attach(self, body: dict[str, Any]) -> None:
            """`POST /addon-attachments`: attach an add-on to an app under a name, or a color when none is
            given (replacing one of that name takes `confirm`, as `heroku pg:promote` sends for DATABASE)."""
            app = fake.find(_identity(body.get("app")))
            database = fake.database(_identity(body.get("addon")))
            if app is None or database is None:
                self._error(404, "not_found", "Couldn't find that app or add-on.")
                return
            name = str(body["name"]) if body.get("name") else None
            if name is not None and name in app.attachments and body.get("confirm") != app.name:
                self._error(
                    422,
                    "confirmation_required",
                    f"{name} is taken on {app.name}: confirm with the app's name.",
                )
                return
            lost = fake.lose_answer(("POST", "addon-attachments"))
            name = app.attach_database(database, name)
            if lost == "503":
                self._error(503, "unavailable", "The service is temporarily unavailable.")
                return
            self._send(201, next(a for a in app.attachments_json() if a["name"] == name))

        def _create_addon(self, app: FakeApp, body: dict[str, Any]) -> None:
            """`heroku addons:create heroku-postgresql:PLAN -- --follow DATABASE_URL` or `--rollback
            DATABASE_URL --to TIME`: a new database, provisioning for a while, attached under a color (or
            `attachment.name`). A rollback outside the plan's window is refused, as Heroku refuses it."""
            plan = str(_identity(body.get("plan"))).removeprefix("heroku-postgresql:")
            config = body.get("config") or {}
            source = app.attachments.get(
                str(config.get("follow") or config.get("rollback") or "").removesuffix("_URL")
            )
            if source is None:
                self._error(
                    422, "invalid_params", "Specify --follow or --rollback with a database of this app."
                )
                return
            try:
                if config.get("follow"):
                    database = FakeDatabase.follower_of(source, plan)
                else:
                    database = FakeDatabase.rolled_back(source, _moment(str(config.get("to", ""))), plan)
            except ValueError as exc:
                self._error(422, "invalid_params", str(exc))
                return
            app.databases[database.id] = database
            lost = fake.lose_answer(("POST", "addons"))
            # Heroku attaches it, sets its config var and restarts the app once it is provisioned; until
            # then `pg:wait` says it is preparing.
            ready_in, database.ready_at = max(0.0, database.ready_at - time.monotonic()), float("inf")

            def provisioned() -> None:
                app.attach_database(database, (body.get("attachment") or {}).get("name"))
                database.ready_at = 0.0

            threading.Timer(ready_in, provisioned).start()
            if lost == "503":
                self._error(503, "unavailable", "The service is temporarily unavailable.")
                return
            self._send(201, app.addon_json(database))

        def _resolve_attachment(self, body: dict[str, Any]) -> None:
            """`POST /actions/addon-attachments/resolve`, as the official CLI resolves DATABASE_URL."""
            app = fake.find(str(body.get("app", "")))
            name = str(body.get("addon_attachment", ""))
            found = [a for a in app.attachments_json() if a["name"] == name] if app else []
            if not found:
                self._error(404, "not_found", f"Couldn't find that add-on attachment ({name}).")
                return
            self._send(200, found)

        def _rollback(self, app: FakeApp, body: Any) -> None:
            """`heroku releases:rollback vN`: a new release running the named one's slug and config. The
            API takes the release's id (the CLI looks the version up first), and refuses one that is not
            eligible (it failed, or changed add-ons)."""
            wanted = str((body or {}).get("release", ""))
            target = next((r for r in app.releases if r["id"] == wanted), None)
            if target is None:
                self._error(404, "not_found", "Couldn't find that release.")
                return
            if not target["eligible_for_rollback"]:
                self._error(
                    422, "invalid_params", f"Release v{target['version']} is not eligible for rollback."
                )
                return
            lost = fake.lose_answer(("POST", "releases"))
            released = app.release(
                f"Rollback to v{target['version']}", target["slug"]["id"], app.release_phase_seconds
            )
            if lost == "503":
                self._error(503, "unavailable", "The service is temporarily unavailable.")
                return
            self._send(201, released)

        def _created(self, method: str, kind: str, transfer: dict[str, Any]) -> None:
            """201 with the transfer, or, when told to lose this answer, 503 after having acted (the harsh case)."""
            lost = fake.lose_answer((method, kind))
            if lost == "503":
                self._error(503, "unavailable", "Heroku API is temporarily unavailable.")
                return
            if lost == "timeout":
                time.sleep(ANSWER_DELAY)
            self._send(201, transfer)

        def _patch_formation(self, app: FakeApp, body: Any) -> None:
            updates = (body or {}).get("updates")
            if not isinstance(updates, list):
                self._error(422, "invalid_params", "updates must be an array.")
                return
            for update in updates:
                kind = update.get("type")
                if kind not in app.formation:
                    self._error(404, "not_found", f"Couldn't find that process type ({kind}).")
                    return
            for update in updates:
                process = app.formation[update["type"]]
                if "quantity" in update:
                    process["quantity"] = int(update["quantity"])
                if "size" in update:
                    process["size"] = update["size"]
            app.scale_dynos()
            self._send(200, app.formation_json())

    return Handler


def _start_transfer(
    fake: HerokuFake, database: FakeDatabase, to_type: str, work: Callable[[], bool]
) -> dict[str, Any]:
    """A transfer as Heroku runs one: pending when the POST answers, finished (or failed) later."""
    transfer: dict[str, Any] = {
        "uuid": str(uuid.uuid4()), "num": len(fake.transfers) + 1, "from_type": "pg_dump", "to_type": to_type,
        "app_uuid": database.owner["id"], "created_at": _now(), "started_at": _now(), "finished_at": None, "succeeded": False,
        "canceled_at": None,
    }  # fmt: skip
    fake.transfers[transfer["uuid"]] = transfer

    def run() -> None:
        succeeded = work()
        with fake._lock:
            transfer.update(finished_at=_now(), succeeded=succeeded)

    answer = dict(transfer)  # what the POST says: pending, whatever happens next
    threading.Thread(target=run, daemon=True, name=f"transfer-{transfer['num']}").start()
    return answer


def _restore_from_url(fake: HerokuFake, url: str, database: FakeDatabase) -> dict[str, Any]:
    """Do what Heroku does for `pg:backups:restore URL`: fetch the dump, pg_restore it over DATABASE_URL."""

    def work() -> bool:
        with tempfile.TemporaryDirectory(prefix="heroku-fake-restore-") as folder:
            dump = Path(folder) / "dump"
            try:
                # requests, not urllib: under moto's in-process mock (the tests') requests is what
                # reaches its S3; elsewhere it is a plain HTTP GET of the presigned URL.
                import requests  # moto's dependency, as is this fake

                with requests.get(url, timeout=60, stream=True) as answer, dump.open("wb") as out:
                    answer.raise_for_status()
                    for chunk in answer.iter_content(1024 * 1024):
                        out.write(chunk)
                result = subprocess.run(
                    [fake.pg_restore or "pg_restore", "--clean", "--if-exists", "--no-owner", "--no-acl",
                     f"--dbname={fake.url_of(database)}", str(dump)],
                    capture_output=True, text=True, timeout=600,
                )  # fmt: skip
            except (OSError, KeyError):  # requests' errors are OSErrors
                return False
            # Heroku ignores the errors pg_restore reports for objects it cannot drop; so does the fake.
            return result.returncode in (0, 1) and "could not connect" not in result.stderr

    return _start_transfer(fake, database, "pg_restore", work)


def _capture(fake: HerokuFake, database: FakeDatabase) -> dict[str, Any]:
    """Do what Heroku does for `pg:backups:capture`: pg_dump the database into its own storage."""
    name = f"b{len(fake.transfers) + 1:03d}"

    def work() -> bool:
        try:
            result = subprocess.run(
                [fake.pg_dump or "pg_dump", "--format=custom", f"--dbname={fake.url_of(database)}"],
                capture_output=True, timeout=600,
            )  # fmt: skip
        except (OSError, KeyError):
            return False
        if result.returncode == 0:
            fake.backups[name] = result.stdout
        return result.returncode == 0

    return _start_transfer(fake, database, "gof3r", work)
