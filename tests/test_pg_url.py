"""Database URLs: TLS for anything remote, passwords never in argv or output."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

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


RDS = "postgres://standby:pw@acme-standby.abc123.us-east-2.rds.amazonaws.com:5432/app?sslmode=require"


def test_the_standby_database_on_rds_is_verified_against_the_rds_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "rds-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("STANDBY_RDS_CA_BUNDLE", str(bundle))
    params = conninfo_to_dict(parse_database_url(RDS).conninfo)
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", str(bundle))
    # Heroku's databases and the URL the app itself gets are not RDS: they keep what they had.
    assert (
        conninfo_to_dict(parse_database_url("postgres://u:p@ec2-1-2.compute-1.amazonaws.com/d").conninfo)[
            "sslmode"
        ]
        == "require"
    )


def test_without_the_bundle_an_rds_url_is_refused_with_the_download_and_the_opt_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("standby.pg_url.RDS_CA_BUNDLE_DEFAULT", tmp_path / "absent.pem")
    monkeypatch.delenv("STANDBY_RDS_CA_BUNDLE", raising=False)
    with pytest.raises(ConfigError) as refused:
        parse_database_url(RDS, "standby database URL")
    message = str(refused.value)
    assert "truststore.pki.rds.amazonaws.com" in message and "STANDBY_RDS_CA_BUNDLE=none" in message
    assert ":pw@" not in message  # never the URL itself
    monkeypatch.setenv("STANDBY_RDS_CA_BUNDLE", "none")
    assert conninfo_to_dict(parse_database_url(RDS).conninfo)["sslmode"] == "require"
