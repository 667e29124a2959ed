"""Bad input, as a new user or a hurried operator gives it: each gets one line on stderr that says what is
wrong and what to do, the documented exit code (2 usage or configuration, 1 infrastructure or a tool,
3 refused by a safety check), no traceback, and nothing lost."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from standby import aws_clients
from standby.backup import BackupRequest, run_backup
from standby.backup_store import LocalStore, S3Store
from standby.catalog import MANIFEST, backup_prefix, new_backup_id, newest_complete
from standby.catalog_index import read_catalog
from standby.commands import backup, check_config, cutover, restore
from standby.local.postgres import LocalPostgres
from standby.names import manifest_parameter
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from standby.standby_manifest import StandbyManifest

APP = "acme-bad-input"


@dataclass
class Said:
    code: int
    err: str
    out: str = ""

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def said(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> Said:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return Said(code, captured.err, captured.out)


def one_error_line(result: Said) -> str:
    """The one line that says what went wrong: the last one, after whatever progress came before."""
    errors = [line for line in result.lines if line.startswith("error:")]
    assert len(errors) == 1 and result.lines[-1] == errors[0], result.err
    return errors[0]


@dataclass
class Shelf:
    """A folder store holding one good backup of the sample app, and the database it came from."""

    folder: Path
    source: str
    server: LocalPostgres

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.folder)


@pytest.fixture(scope="module")
def shelf(pg_server: LocalPostgres, pagila_template: str, tmp_path_factory: pytest.TempPathFactory) -> Shelf:
    folder = tmp_path_factory.mktemp("shelf")
    source = pg_server.create_database("bad_input", template=pagila_template)
    run_backup(BackupRequest(APP, parse_database_url(source), LocalStore(folder), find_tool("pg_dump")))
    return Shelf(folder, source, pg_server)


def _broken_backup(shelf: Shelf, name: str, content: bytes) -> Path:
    """A second, newer backup whose `name` file holds `content`."""
    good = newest_complete(read_catalog(shelf.store, "backups", APP))
    assert good is not None
    newer = new_backup_id(datetime.now(UTC))
    path = shelf.folder / backup_prefix("backups", APP, newer) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    assert good.backup_id != newer
    return path


def _backup_argv(shelf: Shelf, *extra: str) -> list[str]:
    return ["--app", APP, "--folder", str(shelf.folder), "--source-url", shelf.source, "--no-metrics", *extra]


# --- configuration and usage (exit 2) ----------------------------------------------------------------


def test_a_stack_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = tmp_path / "Pulumi.primary.yaml"
    stack.write_bytes(b"config:\n  standby:role: primary\n  standby:app: \xff\xfe caf\xe9\n")
    result = said(check_config.main, [str(stack)], capsys)
    assert result.code == 2
    assert "not UTF-8" in one_error_line(result)


def test_a_heroku_api_url_without_a_scheme(
    shelf: Shelf, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEROKU_API_URL", "api.heroku.com")
    monkeypatch.setenv("HEROKU_API_KEY", "token-not-for-logs")
    result = said(backup.main, ["--app", APP, "--folder", str(shelf.folder), "--no-metrics"], capsys)
    assert result.code == 2
    line = one_error_line(result)
    assert "HEROKU_API_URL" in line and "https://" in line and "token-not-for-logs" not in line


@pytest.mark.parametrize("jobs", ["0", "-2", "two", "1000"])
@pytest.mark.parametrize("script", [restore, cutover], ids=["restore", "cutover"])
def test_a_number_of_jobs_out_of_range_is_a_usage_error(
    script: Any, jobs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:  # argparse's own usage error, before anything is read
        script.main(["--app", APP, "--folder", str(tmp_path), "--jobs", jobs])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert f"--jobs: must be a whole number of jobs from 1 to 64, got '{jobs}'" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_compression_is_a_usage_error(shelf: Shelf, capsys: pytest.CaptureFixture[str]) -> None:
    result = said(backup.main, _backup_argv(shelf, "--compress", "bogus:9"), capsys)
    assert result.code == 2
    assert "--compress" in one_error_line(result)


def test_a_missing_scratch_folder(shelf: Shelf, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = shelf.server.url("restored_here")
    argv = ["--app", APP, "--folder", str(shelf.folder), "--target-url", target, "--yes",
            "--scratch", str(tmp_path / "no-such-folder")]  # fmt: skip
    result = said(restore.main, argv, capsys)
    assert result.code == 2
    assert "--scratch" in one_error_line(result)


# --- a tool or the infrastructure fails (exit 1) ------------------------------------------------------


def test_a_pg_dump_that_exits_1(shelf: Shelf, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pg_dump"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo "pg_dump (PostgreSQL) 18.1"; exit 0; }\n'
        'echo "pg_dump: error: out of memory" >&2\nexit 1\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    before = [e.backup_id for e in read_catalog(shelf.store, "backups", APP) if e.manifest is not None]
    result = said(backup.main, _backup_argv(shelf, "--pg-bin", str(bin_dir)), capsys)
    assert result.code == 1
    assert "out of memory" in one_error_line(result)
    assert [
        e.backup_id for e in read_catalog(shelf.store, "backups", APP) if e.manifest is not None
    ] == before


@pytest.mark.parametrize("ahead", [False, True], ids=["restore", "restore --ahead"])
def test_an_unreachable_target_database(
    shelf: Shelf, ahead: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "postgresql://app@127.0.0.1:1/app?connect_timeout=2&password=secret-not-for-logs"
    argv = ["--app", APP, "--folder", str(shelf.folder), "--target-url", target, "--yes"]
    result = said(restore.main, [*argv, *(["--ahead"] if ahead else [])], capsys)
    assert result.code == 1
    line = one_error_line(result)
    assert "127.0.0.1" in line and "secret-not-for-logs" not in line


def test_an_ssm_throttle_is_an_infrastructure_failure_not_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class ThrottledSsm:
        def get_parameter(self, **_: object) -> None:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetParameter"
            )

    monkeypatch.setattr(aws_clients, "client", lambda *a, **k: ThrottledSsm())
    result = said(cutover.main, ["--app", APP, "--yes", "--region", "us-east-2"], capsys)
    assert result.code == 1
    line = one_error_line(result)
    assert "Rate exceeded" in line and "invalid configuration" not in line


# --- broken backups: skipped with their reason, never a traceback -------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (MANIFEST, b'{"format": "standby-backup/1", "backup_id": "20', "Unterminated string"),
        ("failure.json", b'["not", "an", "object"]', "not a JSON object"),
        (MANIFEST, None, "has no timezone"),
    ],
    ids=["truncated manifest", "failure record that is a list", "manifest time without a timezone"],
)
def test_a_broken_newer_backup_is_listed_as_failed_and_the_good_one_is_restored(
    shelf: Shelf, name: str, content: bytes | None, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = newest_complete(read_catalog(shelf.store, "backups", APP))
    assert good is not None and good.manifest is not None
    if content is None:  # the good manifest, its times stripped of their timezone
        doc = good.manifest.to_json()
        doc["snapshot_at"] = doc["snapshot_at"][:19]
        content = json.dumps(doc).encode()
    broken = _broken_backup(shelf, name, content)
    try:
        listing = said(backup.main, ["list", "--app", APP, "--folder", str(shelf.folder)], capsys)
        assert listing.code == 0
        assert reason in listing.out
        plan = said(restore.main, ["--app", APP, "--folder", str(shelf.folder), "--target-url",
                                   shelf.server.url("unused"), "--dry-run"], capsys)  # fmt: skip
        assert plan.code == 0
        assert good.backup_id in plan.err
    finally:
        broken.unlink()


# --- the runbook journal ------------------------------------------------------------------------------


@pytest.fixture
def manifest_in_ssm(aws_env: dict[str, str]) -> Iterator[StandbyManifest]:
    manifest = StandbyManifest(
        app=f"{APP}-journal", region="us-east-2", backup_bucket=f"{APP}-journal-backups"
    )
    boto3.client("s3").create_bucket(
        Bucket=manifest.backup_bucket, CreateBucketConfiguration={"LocationConstraint": "us-east-2"}
    )
    boto3.client("ssm").put_parameter(
        Name=manifest_parameter(manifest.app), Value=manifest.to_json(), Type="String", Overwrite=True
    )
    yield manifest
    S3Store(manifest.backup_bucket).client.delete_bucket(Bucket=manifest.backup_bucket)


def test_a_truncated_journal_on_dry_run(
    manifest_in_ssm: StandbyManifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / f"{manifest_in_ssm.app}-cutover.json").write_text('{"app": "acme", "runbook": "cut')
    result = said(
        cutover.main, ["--app", manifest_in_ssm.app, "--journal-dir", str(journal), "--dry-run"], capsys
    )
    assert result.code == 2
    line = one_error_line(result)
    assert "journal" in line and str(journal) in line


def test_a_journal_dir_that_is_a_file(
    manifest_in_ssm: StandbyManifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "journal"
    not_a_folder.write_text("my notes")
    result = said(
        cutover.main, ["--app", manifest_in_ssm.app, "--journal-dir", str(not_a_folder), "--yes"], capsys
    )
    assert result.code == 2
    assert "--journal-dir" in one_error_line(result)
    assert not_a_folder.read_text() == "my notes"


def test_an_unknown_key_in_the_standby_manifest(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(StandbyManifest(app=f"{APP}-future", region="us-east-2", backup_bucket="b").to_json())
    doc["written_by_a_newer_standby"] = True
    boto3.client("ssm").put_parameter(
        Name=manifest_parameter(f"{APP}-future"), Value=json.dumps(doc), Type="String", Overwrite=True
    )
    result = said(cutover.main, ["--app", f"{APP}-future", "--dry-run"], capsys)
    assert result.code == 2
    assert "written_by_a_newer_standby" in one_error_line(result)


def test_no_complete_backup_is_a_refusal_in_every_command(
    tmp_path: Path, shelf: Shelf, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-store"
    empty.mkdir()
    argv = ["--app", APP, "--folder", str(empty), "--target-url", shelf.server.url("unused"), "--yes"]
    result = said(restore.main, argv, capsys)
    assert result.code == 3
    assert "no complete backup" in one_error_line(result)
