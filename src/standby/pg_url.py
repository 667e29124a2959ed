"""Database URLs: keep the password out of sight and insist on TLS for anything off this machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from standby.errors import ConfigError

LOCAL_HOSTS: Final = frozenset({"", "localhost", "127.0.0.1", "::1"})
SAFE_SSLMODES: Final = frozenset({"require", "verify-ca", "verify-full"})
# Where standby connects to the standby's RDS database it verifies the server: docs/standby-stack.md.
RDS_DOMAIN: Final = ".rds.amazonaws.com"
RDS_CA_BUNDLE_ENV: Final = "STANDBY_RDS_CA_BUNDLE"
RDS_CA_BUNDLE_DEFAULT: Final = Path("/etc/ssl/certs/rds-global-bundle.pem")  # where the backup image has it
RDS_CA_BUNDLE_URL: Final = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


@dataclass(frozen=True)
class Database:
    """Where a database is, split so the password travels in the environment, never in argv or logs."""

    conninfo: str  # without the password
    password: str | None

    @property
    def env(self) -> dict[str, str]:
        """Environment for libpq tools (pg_dump, pg_restore): the password, if any."""
        return {"PGPASSWORD": self.password} if self.password else {}

    @property
    def redacted(self) -> str:
        """A printable name: user, host, port and database; no password."""
        params = conninfo_to_dict(self.conninfo)
        host = str(params.get("host") or "local socket")
        port = f":{params['port']}" if params.get("port") else ""
        return f"{params.get('user', '')}@{host}{port}/{params.get('dbname', '')}"

    def connect(self, **params: Any) -> psycopg.Connection[tuple[Any, ...]]:
        """Open a connection; extra libpq parameters (connect_timeout, ...) go in `params`."""
        if self.password:
            params["password"] = self.password
        return psycopg.connect(self.conninfo, **params)

    def with_dbname(self, dbname: str) -> Database:
        return Database(make_conninfo(self.conninfo, dbname=dbname), self.password)

    @property
    def dbname(self) -> str:
        return str(conninfo_to_dict(self.conninfo).get("dbname", ""))


def _rds_verification(what: str) -> dict[str, str]:
    """The TLS parameters for an RDS host: its certificate verified against the RDS CA bundle."""
    bundle = os.environ.get(RDS_CA_BUNDLE_ENV) or (
        str(RDS_CA_BUNDLE_DEFAULT) if RDS_CA_BUNDLE_DEFAULT.is_file() else ""
    )
    if bundle == "none":  # an explicit choice: TLS, but the server's certificate is not checked
        return {"sslmode": "require"}
    if not bundle or not Path(bundle).is_file():
        raise ConfigError(
            [
                f"the {what} points at RDS, whose certificate standby verifies (sslmode=verify-full), but "
                f"{'no RDS CA bundle is at ' + bundle if bundle else RDS_CA_BUNDLE_ENV + ' is not set'}. Download "
                f"it (curl -o rds-ca.pem {RDS_CA_BUNDLE_URL}) and set {RDS_CA_BUNDLE_ENV} to its path; or set "
                f"{RDS_CA_BUNDLE_ENV}=none to connect without checking the certificate."
            ]
        )
    return {"sslmode": "verify-full", "sslrootcert": bundle}


def is_local(conninfo: str) -> bool:
    host = str(conninfo_to_dict(conninfo).get("host") or "")
    return host.startswith("/") or all(h in LOCAL_HOSTS or h.startswith("/") for h in host.split(","))


def parse_database_url(url: str, what: str = "database URL") -> Database:
    """Parse a postgres:// URL or conninfo string; require TLS when the host is not this machine.

    Heroku's DATABASE_URL has no sslmode; Heroku Postgres requires TLS, and so does every other database
    reached over a network, so `sslmode=require` is added unless the URL asks for stronger verification.
    """
    try:
        params = conninfo_to_dict(url)
    except Exception:  # psycopg raises ProgrammingError with the URL in it: keep the URL out
        raise ConfigError([f"the {what} is not a valid postgres:// URL or connection string."]) from None
    password = params.pop("password", None)
    if str(params.get("host", "")).endswith(RDS_DOMAIN) and "sslrootcert" not in params:
        params.update(_rds_verification(what))
    conninfo = make_conninfo("", **params)
    if not is_local(conninfo):
        sslmode = params.get("sslmode")
        if sslmode is None:
            conninfo = make_conninfo(conninfo, sslmode="require")
        elif sslmode not in SAFE_SSLMODES:
            raise ConfigError(
                [
                    f"the {what} points at a remote host with sslmode={sslmode}. Remote databases are only "
                    f"reached over TLS: use sslmode=require, verify-ca or verify-full."
                ]
            )
    return Database(conninfo, None if password is None else str(password))


def url_with_dbname(url: str, dbname: str) -> str:
    """The same DATABASE_URL naming another database on the same server, in the form it came in."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))
    return make_conninfo(url, dbname=dbname)


def same_database(a: Database, b: Database) -> bool:
    """Whether two connections reach the same database: host, port and name (users may differ)."""

    def where(db: Database) -> tuple[str, str, str]:
        params = conninfo_to_dict(db.conninfo)
        host = str(params.get("host") or "localhost")
        return (
            "localhost" if host in LOCAL_HOSTS else host.lower(),
            str(params.get("port") or "5432"),
            db.dbname,
        )

    return where(a) == where(b)
