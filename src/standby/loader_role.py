"""The role an archive is loaded as: created for one restore, owner of the new database and nothing else.

`pg_restore` executes what the archive holds (functions, index expressions, defaults) while it loads,
before the dump's hash can be checked at its end. Run as the server's master user, a malicious archive
could create roles or alter other databases; run as this role it can only fill the database it owns,
and anything else fails the restore (the new database is dropped, the one in use stays as it was).
Once the restored data is verified, its objects are handed to the connection's own user and the role is
dropped.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from standby.errors import ConfigError
from standby.pg_url import Database

PREFIX: Final = "standby_restore_"
# No attribute beyond LOGIN: not a superuser, cannot create databases or roles, bypasses no row security.
_ATTRIBUTES: Final = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
_APP_ATTRIBUTES: Final = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


@dataclass(frozen=True)
class LoaderRole:
    name: str
    password: str

    @classmethod
    def create(cls, server: Database, database: str, connections: int) -> LoaderRole:
        """A fresh role that owns `database` (created, empty, by the server's user), and may hold at most
        `connections` sessions (the restore's pg_restore workers and checks)."""
        role = cls(f"{PREFIX}{secrets.token_hex(6)}", secrets.token_urlsafe(24))
        with server.connect(autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} " + _ATTRIBUTES + " CONNECTION LIMIT {} PASSWORD {}").format(
                    sql.Identifier(role.name),
                    sql.Literal(connections),
                    sql.Literal(_verifier(conn, role.name, role.password)),
                )
            )
            # Membership lets the server's user (an RDS master is no superuser) hand the objects back.
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role.name)))
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(database), sql.Identifier(role.name)
                )
            )
        return role

    def connection(self, server: Database, database: str) -> Database:
        """Where pg_restore and the checks connect: the new database, as this role."""
        return Database(make_conninfo(server.conninfo, dbname=database, user=self.name), self.password)

    def hand_over(self, server: Database, database: str, owner: Owner | None = None) -> None:
        """Give the database and everything in it to `owner` (the app's role; none: the server's user),
        then drop this role."""
        if owner is not None:
            owner.ensure(server)
        new_owner = sql.Identifier(owner.name) if owner else sql.SQL("CURRENT_USER")
        db = sql.Identifier(database)
        with server.with_dbname(database).connect(autocommit=True) as conn:
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(sql.Identifier(self.name), new_owner))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(self.name)))
            # The database itself stays the server user's: its comment is the restore marker the restores and
            # the cutover trust, which the app (or whoever takes its credential) must not be able to forge.
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(db))
            # Undo what an archive could have set as the database's owner, and keep other roles out.
            conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(db))
            conn.execute(sql.SQL("ALTER DATABASE {} WITH CONNECTION LIMIT -1 IS_TEMPLATE false").format(db))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            if owner is not None:
                conn.execute(
                    sql.SQL("GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {} TO {}").format(db, new_owner)
                )
                if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'public'").fetchone():
                    conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(new_owner))
        drop_role(server, self.name)


@dataclass(frozen=True)
class Owner:
    """The application role: what the app (and a drill's task) connects as, owner of the app's data.
    It can do anything to its own database and nothing else: no role, no other database."""

    name: str
    password: str

    @classmethod
    def of(cls, database: Database) -> Owner:
        """The owner a database URL connects as (the standby's app URL, from its secret)."""
        name = str(conninfo_to_dict(database.conninfo).get("user") or "")
        if not name or not database.password:
            raise ConfigError(
                ["the app's database URL names no user and password: run `pulumi up -s standby`."]
            )
        return cls(name, database.password)

    def ensure(self, server: Database) -> None:
        """The role exists, may log in with this password, and has no other attribute."""
        with server.connect(autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [self.name]).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} " + _APP_ATTRIBUTES + " PASSWORD {}").format(
                    sql.Identifier(self.name), sql.Literal(_verifier(conn, self.name, self.password))
                )
            )
            current = conn.execute("SELECT current_user").fetchone()
            if current and current[0] != self.name:
                # Membership lets the server's user hand it objects and later rename or drop its databases.
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(self.name)))


def _verifier(conn: psycopg.Connection[tuple[object, ...]], role: str, password: str) -> str:
    """The password as a SCRAM verifier, made here: a failed statement in the server's log shows no password."""
    return bytes(conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")).decode()


def drop_role(server: Database, name: str) -> None:
    with server.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def leftover_roles(server: Database) -> list[str]:
    """Loader roles a crashed restore left: they own no database any more (a restore under way owns its
    new one). Names are compared here, not with LIKE, where `_` is a wildcard."""
    with server.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles r WHERE NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datdba = r.oid)"
        )
        names = [str(r[0]) for r in rows]
    return sorted(n for n in names if n.startswith(PREFIX))
