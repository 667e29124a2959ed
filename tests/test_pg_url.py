"""Database URLs: TLS for anything remote, passwords never in argv or output."""

from __future__ import annotations

import pytest

from standby.errors import ConfigError
from standby.pg_url import parse_database_url


def test_a_heroku_url_gets_tls_required_and_its_password_split_off() -> None:
    db = parse_database_url("postgres://u:s3cret@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d8abc")
    assert "sslmode=require" in db.conninfo
    assert "s3cret" not in db.conninfo and "s3cret" not in db.redacted
    assert db.env == {"PGPASSWORD": "s3cret"}
    assert db.redacted == "u@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d8abc"


def test_stronger_tls_modes_are_kept_and_weaker_ones_refused() -> None:
    assert "verify-full" in parse_database_url("postgres://u@db.example.com/x?sslmode=verify-full").conninfo
    with pytest.raises(ConfigError, match=r"sslmode=disable.*Remote databases are only reached over TLS"):
        parse_database_url("postgres://u@db.example.com/x?sslmode=disable")


@pytest.mark.parametrize(
    "url", ["postgres://u@localhost/x", "postgres://u@127.0.0.1:5433/x", "postgresql://u@/x?host=/tmp/sock"]
)
def test_local_databases_need_no_tls(url: str) -> None:
    assert "sslmode" not in parse_database_url(url).conninfo


def test_garbage_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_database_url("postgres://u:pw@host:notaport:/x y z")
    assert "pw" not in str(raised.value)
