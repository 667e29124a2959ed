"""The catalog index: the same answers as reading every manifest, in a number of requests that does not
grow with the history, and never trusted over the manifests."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from standby import catalog
from standby.backup import BackupRequest, run_backup
from standby.backup_store import EXPIRABLE, S3Store, StoreError
from standby.catalog import BackupManifest, BackupState, CatalogEntry
from standby.catalog_index import INDEX, load_catalog, write_index
from standby.integrity import KmsMac
from standby.pg_tools import find_tool
from standby.pg_url import parse_database_url
from tests.runbook_scene import Scene

APP = "acme"
BASE = catalog.backup_prefix("backups", APP)


def _bucket() -> S3Store:
    bucket = f"index-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-east-2"}
    )
    return S3Store(bucket)


@pytest.fixture
def store(aws_env: dict[str, str]) -> S3Store:
    return _bucket()


@pytest.fixture
def mac(aws_env: dict[str, str]) -> KmsMac:
    key = boto3.client("kms").create_key(KeyUsage="GENERATE_VERIFY_MAC", KeySpec="HMAC_256")
    return KmsMac(key["KeyMetadata"]["Arn"])


def _backup(store: S3Store, mac: KmsMac, minutes_ago: float, state: str = "complete", rows: int = 10) -> str:
    """A backup folder as the backup writes it (without touching the index)."""
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    backup_id = catalog.new_backup_id(at)
    base = f"{BASE}{backup_id}/"
    store.client.put_object(Bucket=store.bucket, Key=f"{base}dump", Body=b"PGDMP-not-really")
    if state == "complete":
        manifest = BackupManifest(
            backup_id, APP, f"{base}dump", 16, "0" * 64, "17.5", "17.5", at, at, at, {"public.t": rows}, "x"
        )
        store.put_json(f"{base}manifest.json", mac.sign(manifest.to_json()))
    elif state == "failed":
        store.put_json(
            f"{base}failure.json", {"phase": "dumping", "error": "boom", "started_at": at.isoformat()}
        )
    return backup_id


def _history(store: S3Store, mac: KmsMac, count: int) -> list[str]:
    """`count` backups 15 minutes apart, every seventh failed; the newest is complete."""
    return [
        _backup(store, mac, 15 * (count - i) + 5, "failed" if i % 7 == 3 else "complete")
        for i in range(count)
    ]


def _summary(entries: list[CatalogEntry]) -> list[tuple[str, BackupState, Any]]:
    return [(e.backup_id, e.state, e.manifest) for e in entries]


def _counted(store: S3Store, mac: KmsMac) -> Counter[str]:
    requests: Counter[str] = Counter()
    for client in (store.client, mac.client):
        client.meta.events.register("before-call", lambda model, **_: requests.update([model.name]))
    return requests


def _index(store: S3Store) -> dict[str, Any]:
    document = store.get_json(BASE + INDEX)
    assert isinstance(document, dict)
    return document


def test_the_index_answers_as_every_manifest_does_in_requests_that_do_not_grow(
    aws_env: dict[str, str], mac: KmsMac
) -> None:
    counts = []
    for backups in (6, 60):
        store = _bucket()
        _history(store, mac, backups)
        _backup(store, mac, 1, "incomplete")  # a backup running while the index is written
        write_index(store, "backups", APP, mac)
        requests = _counted(store, mac)

        read = load_catalog(store, "backups", APP, verifier=mac)

        counts.append(sum(requests.values()))
        assert read.indexed, read.note
        assert _summary(read.entries) == _summary(catalog.scan_catalog(store, "backups", APP, verifier=mac))
        mac.client.meta.events.unregister("before-call")
    # The index and its MAC, the keys from its newest folder on (the running backup), the newest manifest.
    assert counts[0] == counts[1] == 4, counts


def test_backups_the_index_has_not_seen_finish_are_read_from_their_folders(
    store: S3Store, mac: KmsMac
) -> None:
    _history(store, mac, 4)
    running = _backup(store, mac, 2, "incomplete")
    write_index(store, "backups", APP, mac)
    # The running backup finishes, and a newer one completes, neither rewriting the index (a crash).
    manifest = BackupManifest(
        running, APP, f"{BASE}{running}/dump", 16, "0" * 64, "17.5", "17.5",
        *(catalog.backup_time(running),) * 3, {"public.t": 10}, "x",  # type: ignore[arg-type]
    )  # fmt: skip
    store.put_json(f"{BASE}{running}/manifest.json", mac.sign(manifest.to_json()))
    newer = _backup(store, mac, 0)

    read = load_catalog(store, "backups", APP, verifier=mac)

    assert read.indexed, read.note
    states = {e.backup_id: e.state for e in read.entries}
    assert states[running] is BackupState.COMPLETE and states[newer] is BackupState.COMPLETE
    assert catalog.select_backup(read.entries).backup_id == newer


def test_a_tampered_index_is_not_used(store: S3Store, mac: KmsMac) -> None:
    ids = _history(store, mac, 5)
    write_index(store, "backups", APP, mac)
    document = _index(store)
    document["backups"] = [b for b in document["backups"] if b["backup_id"] != ids[-1]]  # hide the newest
    store.put_json(BASE + INDEX, document)  # without the key: its MAC no longer matches

    read = load_catalog(store, "backups", APP, verifier=mac)

    assert not read.indexed and "cannot be trusted" in read.note
    assert catalog.select_backup(read.entries).backup_id == ids[-1]


def test_an_index_that_disagrees_with_a_manifest_is_rebuilt_and_never_trusted_over_it(
    store: S3Store, mac: KmsMac
) -> None:
    newest = _history(store, mac, 5)[-1]
    _backup(store, mac, 1, "incomplete")  # running: the newest complete one is answered from the index
    write_index(store, "backups", APP, mac)
    # A validly signed index whose copy of the newest manifest says other counts than the manifest
    # (written by a bug, say): the manifest is what counts.
    document = _index(store)
    for item in document["backups"]:
        if item["backup_id"] == newest:
            item["manifest"] = mac.sign({**item["manifest"], "tables": {"public.t": 999}})
    store.put_json(BASE + INDEX, mac.sign({k: v for k, v in document.items() if k != "mac"}))

    read = load_catalog(store, "backups", APP, verifier=mac)
    assert not read.indexed and f"disagrees with backup {newest}" in read.note
    assert catalog.select_backup(read.entries).manifest.tables == {"public.t": 10}  # type: ignore[union-attr]

    write_index(store, "backups", APP, mac)  # the next backup rewrites it from the manifests
    again = load_catalog(store, "backups", APP, verifier=mac)
    assert again.indexed, again.note
    assert catalog.select_backup(again.entries).manifest.tables == {"public.t": 10}  # type: ignore[union-attr]


def test_a_folder_whose_keys_contradict_the_index_is_read_and_wins(store: S3Store, mac: KmsMac) -> None:
    ids = _history(store, mac, 3)
    write_index(store, "backups", APP, mac)
    store.client.delete_object(Bucket=store.bucket, Key=f"{BASE}{ids[-1]}/manifest.json")  # complete, it said

    read = load_catalog(store, "backups", APP, verifier=mac)

    assert {e.backup_id: e.state for e in read.entries}[ids[-1]] is BackupState.INCOMPLETE
    assert catalog.select_backup(read.entries).backup_id == ids[-2]


def test_a_backup_in_the_same_second_as_the_indexed_newest_is_found(store: S3Store, mac: KmsMac) -> None:
    """Ids sort by their start to the second, then a random suffix: a later backup may sort first."""
    newest = _history(store, mac, 2)[-1]
    write_index(store, "backups", APP, mac)
    at = BackupManifest.from_json(store.get_json(f"{BASE}{newest}/manifest.json")).snapshot_at
    same_second = f"{newest.split('-')[0]}-000000"
    base = f"{BASE}{same_second}/"
    store.client.put_object(Bucket=store.bucket, Key=f"{base}dump", Body=b"PGDMP")
    manifest = BackupManifest(same_second, APP, f"{base}dump", 5, "0" * 64, "17.5", "17.5",
                              at, at + timedelta(milliseconds=1), at, {"public.t": 11}, "x")  # fmt: skip
    store.put_json(f"{base}manifest.json", mac.sign(manifest.to_json()))

    read = load_catalog(store, "backups", APP, verifier=mac)

    assert read.indexed and catalog.select_backup(read.entries).backup_id == same_second


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: {**d, "app": "another-app"}, id="another app's"),
        pytest.param(lambda d: {**d, "kind": "manifest"}, id="not an index"),
        pytest.param(
            lambda d: {**d, "backups": [{"backup_id": "../x", "state": "complete"}]}, id="malformed"
        ),
        pytest.param(lambda d: {**d, "through": "20000101T000000Z-000000"}, id="entries after its own end"),
    ],
)
def test_an_index_of_the_wrong_shape_is_not_used_even_when_signed(
    store: S3Store, mac: KmsMac, change: Any
) -> None:
    ids = _history(store, mac, 3)
    write_index(store, "backups", APP, mac)
    document = {k: v for k, v in _index(store).items() if k != "mac"}
    store.put_json(BASE + INDEX, mac.sign(change(document)))

    read = load_catalog(store, "backups", APP, verifier=mac)

    assert not read.indexed
    assert catalog.select_backup(read.entries).backup_id == ids[-1]


def test_a_rewrite_keeps_what_it_can_trust_and_drops_what_is_gone(store: S3Store, mac: KmsMac) -> None:
    ids = _history(store, mac, 8)
    write_index(store, "backups", APP, mac)
    for key in store.list_keys(f"{BASE}{ids[0]}/"):  # the lifecycle rule expired the oldest
        store.client.delete_object(Bucket=store.bucket, Key=key)
    requests = _counted(store, mac)

    assert write_index(store, "backups", APP, mac) == 7

    # Trusted entries are kept as they are: only the index and the newest manifest are read again.
    assert requests["GetObject"] == 2 and requests["VerifyMac"] == 1
    covered = [b["backup_id"] for b in _index(store)["backups"]]
    assert covered == ids[1:]


def test_a_store_without_a_key_still_gets_an_index(tmp_path: Any) -> None:
    from standby.backup_store import LocalStore

    store = LocalStore(tmp_path)
    at = datetime.now(UTC)
    backup_id = catalog.new_backup_id(at)
    base = f"{BASE}{backup_id}/"
    store.write_stream(f"{base}dump", [b"x"])
    manifest = BackupManifest(backup_id, APP, f"{base}dump", 1, "0" * 64, "17", "17", at, at, at, {}, "x")
    store.put_json(f"{base}manifest.json", manifest.to_json())
    write_index(store, "backups", APP, None)

    read = load_catalog(store, "backups", APP)

    assert read.indexed and [e.manifest for e in read.entries] == [manifest]


def test_the_writer_reads_every_manifest_again_once_a_day(store: S3Store, mac: KmsMac) -> None:
    ids = _history(store, mac, 4)
    write_index(store, "backups", APP, mac)
    # A wrong copy of an older manifest, which the readers' look at the newest would not notice.
    document = {k: v for k, v in _index(store).items() if k != "mac"}
    for item in document["backups"]:
        if item["backup_id"] == ids[0]:
            item["manifest"] = mac.sign({**item["manifest"], "tables": {"public.t": 999}})
    stale = (datetime.now(UTC) - timedelta(days=1, minutes=1)).isoformat()
    store.put_json(BASE + INDEX, mac.sign({**document, "rebuilt_at": stale}))

    write_index(store, "backups", APP, mac)

    rebuilt = _index(store)
    assert datetime.fromisoformat(rebuilt["rebuilt_at"]) > datetime.now(UTC) - timedelta(minutes=1)
    first = next(b for b in rebuilt["backups"] if b["backup_id"] == ids[0])
    assert first["manifest"]["tables"] == {"public.t": 10}


def test_each_backup_rewrites_the_index_and_one_that_cannot_still_counts(scene: Scene) -> None:
    mac = KmsMac(scene.manifest.backup_mac_key or "", scene.manifest.region)
    store = S3Store(scene.manifest.backup_bucket)
    first = load_catalog(store, "backups", scene.app, verifier=mac)
    assert first.indexed, first.note  # the scene's backup wrote it, signed

    class IndexRefused(S3Store):
        def put_json(self, key: str, document: Any, compress: bool = False) -> None:
            if key.endswith(INDEX):
                raise StoreError("S3 PutObject failed: AccessDenied")
            super().put_json(key, document, compress)

    said: list[str] = []
    newer = run_backup(
        BackupRequest(scene.app, parse_database_url(scene.source), IndexRefused(store.bucket),
                      find_tool("pg_dump"), signer=mac),
        said.append,
    )  # fmt: skip

    assert any("the catalog index was not rewritten" in line and "AccessDenied" in line for line in said)
    read = load_catalog(store, "backups", scene.app, verifier=mac)
    assert read.indexed and catalog.select_backup(read.entries).backup_id == newer.backup_id


def test_a_folder_dated_ahead_cannot_push_the_readers_window_past_now(store: S3Store, mac: KmsMac) -> None:
    ids = _history(store, mac, 3)
    planted = "99991231T235959Z-000000"  # with the bucket's rights alone
    store.client.put_object(Bucket=store.bucket, Key=f"{BASE}{planted}/dump", Body=b"x")

    write_index(store, "backups", APP, mac)

    assert _index(store)["through"] == ids[-1]  # the writer's window ends now
    # An index that says otherwise (signed by a writer with a wrong clock) is not used.
    document = {k: v for k, v in _index(store).items() if k != "mac"}
    store.put_json(BASE + INDEX, mac.sign({**document, "through": planted}))
    read = load_catalog(store, "backups", APP, verifier=mac)
    assert not read.indexed and "in the future" in read.note
    assert catalog.select_backup(read.entries).backup_id == ids[-1]


def test_each_version_of_the_index_may_expire(store: S3Store, mac: KmsMac) -> None:
    """The bucket keeps every version under object lock; only tagged ones expire (BackupVault)."""
    _history(store, mac, 2)
    write_index(store, "backups", APP, mac)
    tags = store.client.get_object_tagging(Bucket=store.bucket, Key=BASE + INDEX)["TagSet"]
    assert {"Key": EXPIRABLE[0], "Value": EXPIRABLE[1]} in tags


def test_an_index_the_reader_may_not_read_leaves_it_to_the_manifests(store: S3Store, mac: KmsMac) -> None:
    """A role whose policy does not name the index yet (a new image before `pulumi up`) still reads."""
    ids = _history(store, mac, 3)
    write_index(store, "backups", APP, mac)

    class IndexDenied(S3Store):
        def get_json(self, key: str) -> Any:
            if key.endswith(INDEX):
                raise StoreError(f"cannot read s3://{self.bucket}/{key}: AccessDenied")
            return super().get_json(key)

    read = load_catalog(IndexDenied(store.bucket), "backups", APP, verifier=mac)

    assert not read.indexed and "cannot be read" in read.note and "AccessDenied" in read.note
    assert catalog.select_backup(read.entries).backup_id == ids[-1]
    assert write_index(IndexDenied(store.bucket), "backups", APP, mac) == 3  # rebuilt from every manifest
