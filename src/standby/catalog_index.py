"""The catalog's index: one signed document per app, so a catalog read costs a handful of requests
however long the history grows (`bench/catalog.py`).

`<prefix>/<app>/index.json` holds every backup's state and, for the complete ones, its manifest exactly as
stored (MAC and all). The backup writer rewrites it after each manifest (`write_index`), reconciled with a
full listing of the folders, and signs it with the backup MAC key like a manifest. A reader
(`read_catalog`) then needs:

- the index, and one VerifyMac: an unsigned, forged or malformed index is never used;
- one listing of the folders from a day before the newest one the index covers (`through`) on: a folder
  whose keys say what the index says is taken from the index, any other (a backup the index has not seen,
  or seen running) is read from its folder. Backup ids sort by their start to the second only, and a
  backup may finish after a later one started: the day covers both;
- the newest complete backup's own manifest, compared with the index's copy.

The manifests stay the truth. Whenever the index cannot be trusted or disagrees with them, the reader
reads every folder instead (`catalog.scan_catalog`), and the next backup writes a fresh index; the writer
also reads every manifest again once a day, whatever it trusts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from standby.backup_store import StoreError
from standby.catalog import (
    CLOCK_SKEW,
    DUMP,
    FAILURE,
    MANIFEST,
    BackupManifest,
    BackupState,
    CatalogEntry,
    ManifestError,
    Verifier,
    backup_prefix,
    backup_time,
    build_catalog,
    check_belongs,
    first_id_at,
    newest_complete,
    read_documents,
    scan_catalog,
)

if TYPE_CHECKING:
    from standby.backup_store import BackupStore
    from standby.integrity import Mac

INDEX: Final = "index.json"
INDEX_KIND: Final = "standby-backup-index"  # a manifest put in its place, or it in a manifest's, is refused
INDEX_FORMAT: Final = 1
# The folders a reader lists again, before the newest the index covers: longer than any backup runs.
WINDOW: Final = timedelta(days=1)
# The writer reads every manifest again at least this often, whatever it trusts: a wrong entry the
# readers' checks would not catch lives a day at most.
REBUILD_EVERY: Final = timedelta(days=1)


class IndexUnusable(Exception):
    """Why the index cannot answer: the catalog is read from every folder instead."""


@dataclass(frozen=True)
class CatalogRead:
    """A catalog, and whether the index answered it (`note` says why not)."""

    entries: list[CatalogEntry]
    indexed: bool
    note: str = ""


@dataclass
class _Index:
    through: str = ""  # the newest backup id in the listing the index was built from ("" for none)
    rebuilt_at: datetime | None = None  # when every manifest was last read into it
    states: dict[str, BackupState] = field(default_factory=dict)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # complete: the manifest as stored
    failures: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def agrees(self, backup_id: str, names: set[str]) -> bool:
        """Whether a folder's keys (`manifest.json`, `failure.json`, `dump`) say what the index says."""
        state = self.states.get(backup_id)
        if state is BackupState.COMPLETE:
            return MANIFEST in names
        if state is BackupState.FAILED:
            # A manifest refused once (dated ahead by a clock, say) is looked at again: it may pass now.
            return FAILURE in names and MANIFEST not in names
        return state is BackupState.INCOMPLETE and not names & {MANIFEST, FAILURE}

    def item(self, backup_id: str) -> dict[str, Any]:
        state = self.states[backup_id]
        if state is BackupState.COMPLETE:
            return {"state": state.value, "manifest": self.stored[backup_id]}
        if state is BackupState.FAILED:
            return {"state": state.value, "failure": dict(self.failures[backup_id])}
        return {"state": state.value}


def read_catalog(
    store: BackupStore,
    prefix: str,
    app: str,
    now: datetime | None = None,
    verifier: Verifier | None = None,
) -> list[CatalogEntry]:
    """`app`'s catalog, oldest first: from the index when it can be trusted, else from every folder."""
    return load_catalog(store, prefix, app, now, verifier).entries


def load_catalog(
    store: BackupStore,
    prefix: str,
    app: str,
    now: datetime | None = None,
    verifier: Verifier | None = None,
) -> CatalogRead:
    now = now or datetime.now(UTC)
    try:
        return CatalogRead(_from_index(store, backup_prefix(prefix, app), app, now, verifier), indexed=True)
    except IndexUnusable as why:
        return CatalogRead(scan_catalog(store, prefix, app, now, verifier), indexed=False, note=str(why))


def _folders(keys: list[str]) -> dict[str, set[str]]:
    """Backup id -> the names in its folder, for the keys (relative to the app's prefix) in folders."""
    folders: dict[str, set[str]] = {}
    for key in keys:
        backup_id, _, name = key.partition("/")
        if name and backup_time(backup_id) is not None:
            folders.setdefault(backup_id, set()).add(name)
    return folders


def _from_index(
    store: BackupStore, base: str, app: str, now: datetime, verifier: Verifier | None
) -> list[CatalogEntry]:
    index = _read_index(store, base, app, verifier)
    newest = backup_time(index.through)
    if newest is not None and newest > now + CLOCK_SKEW:
        raise IndexUnusable(f"the index covers up to {index.through}, in the future: a folder dated ahead")
    since = first_id_at(newest - WINDOW) if newest is not None else ""
    folders = _folders([k.removeprefix(base) for k in store.list_keys(base, start_after=base + since)])
    to_read = [f"{i}/{name}" for i, names in folders.items() if not index.agrees(i, names) for name in names]
    fresh = read_documents(store, base, to_read, app, now, verifier)

    # Outside the window the index answers; inside it, only for folders whose keys agree with it.
    trusted = [i for i in index.states if i < since or (i in folders and index.agrees(i, folders[i]))]
    manifests: dict[str, BackupManifest] = {}
    for backup_id in trusted:
        if backup_id in index.stored:
            manifests[backup_id] = _parsed(index.stored[backup_id], backup_id, app, base, now)
    failures = {i: index.failures[i] for i in trusted if i in index.failures}
    manifests.update(fresh.manifests)
    failures.update(fresh.failures)
    entries = build_catalog([f"{i}/{DUMP}" for i in trusted] + to_read, manifests, failures)

    newest_entry = newest_complete(entries)
    if newest_entry is not None and newest_entry.backup_id not in fresh.manifests:
        _check_copy(store, base, index, newest_entry.backup_id)
    return entries


def _parsed(doc: dict[str, Any], backup_id: str, app: str, base: str, now: datetime) -> BackupManifest:
    try:
        manifest = BackupManifest.from_json(doc)
        check_belongs(manifest, backup_id, app, base, now)
    except ManifestError as exc:
        raise IndexUnusable(f"the index holds a manifest for {backup_id} that is not valid: {exc}") from None
    return manifest


def _check_copy(store: BackupStore, base: str, index: _Index, backup_id: str) -> None:
    """The index's copy of a manifest must be what the backup's folder holds."""
    try:
        stored = store.get_json(f"{base}{backup_id}/{MANIFEST}")
    except ValueError:
        stored = None
    if stored != index.stored[backup_id]:
        raise IndexUnusable(
            f"the index disagrees with backup {backup_id}'s manifest (missing or different there)"
        )


def _read_index(store: BackupStore, base: str, app: str, verifier: Verifier | None) -> _Index:
    try:
        doc = store.get_json(base + INDEX)
    except ValueError as exc:
        raise IndexUnusable(f"the index is not JSON ({exc})") from None
    except (
        StoreError
    ) as exc:  # e.g. a role not yet allowed to read it (before `pulumi up`): read every folder
        raise IndexUnusable(f"the index cannot be read: {' '.join(str(exc).split())}") from None
    if doc is None:
        raise IndexUnusable("there is no index yet")
    if not isinstance(doc, dict) or doc.get("kind") != INDEX_KIND:
        raise IndexUnusable("the index is not an index document")
    problem = verifier.problem(doc) if verifier is not None else None
    if problem:
        raise IndexUnusable(f"the index cannot be trusted: {problem}")
    if doc.get("format") != INDEX_FORMAT or doc.get("app") != app:
        raise IndexUnusable(f"the index is of format {doc.get('format')!r} for app {doc.get('app')!r}")
    try:
        rebuilt_at = datetime.fromisoformat(str(doc["rebuilt_at"]))
        if rebuilt_at.tzinfo is None:
            raise ValueError("rebuilt_at has no timezone")
        index = _Index(str(doc["through"]), rebuilt_at)
        if index.through and backup_time(index.through) is None:
            raise ValueError(f"through {index.through!r} is not a backup id")
        for item in doc["backups"]:
            backup_id, state = str(item["backup_id"]), BackupState(item["state"])
            if backup_time(backup_id) is None or backup_id > index.through:
                raise ValueError(f"backup id {backup_id!r} is not one the index can cover")
            index.states[backup_id] = state
            if state is BackupState.COMPLETE:
                index.stored[backup_id] = _object(item["manifest"])
            elif state is BackupState.FAILED:
                index.failures[backup_id] = _object(item["failure"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexUnusable(f"the index is malformed ({type(exc).__name__}: {exc})") from None
    return index


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def write_index(
    store: BackupStore, prefix: str, app: str, mac: Mac | None, now: datetime | None = None
) -> int:
    """Rewrite `app`'s index from a full listing: the trusted current index answers for each folder whose
    keys say what it says, every other folder is read. Returns the backups it covers."""
    now = now or datetime.now(UTC)
    base = backup_prefix(prefix, app)
    folders = _folders([k.removeprefix(base) for k in store.list_keys(base)])
    current = _trusted_for_writing(store, base, app, mac, now)

    items = {i: current.item(i) for i, names in folders.items() if current.agrees(i, names)}
    to_read = [f"{i}/{name}" for i, names in folders.items() if i not in items for name in names]
    fresh = read_documents(store, base, to_read, app, now, mac)
    for entry in build_catalog(to_read, fresh.manifests, fresh.failures):
        item: dict[str, Any] = {"state": entry.state.value}
        if entry.state is BackupState.COMPLETE:
            item["manifest"] = fresh.stored[entry.backup_id]
        elif entry.state is BackupState.FAILED:
            item["failure"] = dict(entry.failure)
        items[entry.backup_id] = item

    document: dict[str, Any] = {
        "kind": INDEX_KIND,
        "format": INDEX_FORMAT,
        "app": app,
        "written_at": now.isoformat(),
        "rebuilt_at": (current.rebuilt_at or now).isoformat(),
        # A folder dated ahead (a wrong clock, or planted) must not push the readers' window past now.
        "through": max((i for i in folders if (backup_time(i) or now) <= now + CLOCK_SKEW), default=""),
        "backups": [{"backup_id": i, **items[i]} for i in sorted(items)],
    }
    store.put_json(base + INDEX, mac.sign(document) if mac is not None else document, compress=True)
    # Rewritten every backup, and the bucket keeps every version: the lifecycle rule expires the
    # versions it tagged (BackupVault), so the index is tagged like a redundant backup.
    store.mark_expirable([base + INDEX])
    return len(items)


def _trusted_for_writing(
    store: BackupStore, base: str, app: str, verifier: Verifier | None, now: datetime
) -> _Index:
    """The current index when the writer may build on it; else an empty one (every folder is read)."""
    try:
        current = _read_index(store, base, app, verifier)
        if current.rebuilt_at is None or now - current.rebuilt_at > REBUILD_EVERY:
            raise IndexUnusable("due for its daily rebuild")
        snapshots = {i: _parsed(doc, i, app, base, now).snapshot_at for i, doc in current.stored.items()}
        if snapshots:
            _check_copy(store, base, current, max(snapshots, key=lambda i: snapshots[i]))
    except IndexUnusable:
        return _Index(rebuilt_at=now)
    return current
