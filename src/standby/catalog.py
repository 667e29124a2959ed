"""The backup catalog: what a backup's manifest says, and which backup to use.

Everything here is a pure function of its inputs but `scan_catalog`, `read_documents` and the dump checks,
which read through a store. `standby.catalog_index` answers the same from one index document.

A backup lives under `<prefix>/<app>/<backup id>/`: the dump (`dump`), or for a parallel backup its
schema (`schema`) and one file per data stream (`data-1`, ...); then, written last, its manifest
(`manifest.json`). A dump without a manifest is not a backup; a failed run leaves `failure.json`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from standby.errors import ConfigError, SafetyRefusal, StandbyError

if TYPE_CHECKING:
    from standby.backup_store import BackupStore

MANIFEST_FORMAT: Final = 1
# A parallel backup's manifest: a reader from before parallel backups asks for an upgrade rather than
# reading its schema file as a whole dump.
PARALLEL_FORMAT: Final = 2
DUMP: Final = "dump"
SCHEMA: Final = "schema"  # a parallel backup's schema archive (pre- and post-data)
DATA: Final = "data-"  # a parallel backup's data streams: data-1, data-2, ...
MANIFEST: Final = "manifest.json"
FAILURE: Final = "failure.json"
_ID_TIME: Final = "%Y%m%dT%H%M%SZ"
_ID_PATTERN: Final = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{6}")
CLOCK_SKEW: Final = timedelta(minutes=5)  # a database server's clock may run this far ahead of ours


class ManifestError(StandbyError):
    """A manifest is missing fields, of an unknown format, or not JSON: the backup cannot be trusted."""

    exit_code = 3


def new_backup_id(at: datetime) -> str:
    """Sortable by time, unique across concurrent runs: 20261122T101500Z-3f2a9c."""
    return f"{at.astimezone(UTC).strftime(_ID_TIME)}-{secrets.token_hex(3)}"


def first_id_at(at: datetime) -> str:
    """Sorts before (or with) the id of every backup started at `at` or later."""
    return at.astimezone(UTC).strftime(_ID_TIME)


def backup_time(backup_id: str) -> datetime | None:
    match = _ID_PATTERN.fullmatch(backup_id)
    return datetime.strptime(match.group(1), _ID_TIME).replace(tzinfo=UTC) if match else None


def backup_prefix(prefix: str, app: str, backup_id: str = "") -> str:
    return f"{prefix.strip('/')}/{app}/" + (f"{backup_id}/" if backup_id else "")


class Section(StrEnum):
    """What a dump file holds: the whole database, or (a parallel backup) its schema or some tables' rows."""

    ALL = "all"
    SCHEMA = "schema"
    DATA = "data"


@dataclass(frozen=True)
class DumpFile:
    """One file of a backup, as its manifest records it: each is checked on its own before a restore uses it."""

    key: str
    size: int
    sha256: str
    section: Section = Section.ALL
    tables: tuple[str, ...] = ()  # a data file: the tables whose rows it holds

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "section": self.section.value,
            "size": self.size,
            "sha256": self.sha256,
            "tables": list(self.tables),
        }

    @classmethod
    def from_json(cls, doc: Any) -> DumpFile:
        return cls(
            key=str(doc["key"]),
            size=int(doc["size"]),
            sha256=str(doc["sha256"]),
            section=Section(doc["section"]),
            tables=tuple(str(t) for t in doc["tables"]),
        )


def files_digest(files: Iterable[DumpFile]) -> str:
    """A parallel backup's one fingerprint: the sha256 of its files' keys, sizes and hashes, in order."""
    lines = "".join(f"{f.key} {f.size} {f.sha256}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


@dataclass(frozen=True)
class BackupManifest:
    backup_id: str
    app: str
    dump_key: str
    size: int
    sha256: str
    server_version: str
    pg_dump_version: str
    started_at: datetime
    snapshot_at: datetime  # the moment the data is from: the RPO of a restore is measured from here
    finished_at: datetime
    tables: dict[str, int]  # "schema.table" -> rows in the snapshot
    source: str  # redacted: user@host:port/db
    # Which side's database was dumped: "heroku", "standby:<region>" once the standby is live (the chain
    # goes on there), or "url" for a database named on the command line.
    source_side: str = "heroku"
    # Which server was dumped: the primary, or its follower (then `snapshot_at` is the primary's moment the
    # follower had replayed, reached after `source_lag_seconds`). Older manifests: the primary.
    source_role: str = "primary"
    source_lag_seconds: float = 0.0
    database_size: int = 0  # bytes the source database took (pg_database_size); 0 in older manifests
    dump_format: str = "custom"
    compression: str = "gzip:1"
    # A parallel backup's files (its schema first); empty for a single-stream one, whose one file is
    # `dump_key`. A parallel backup's `dump_key` is its schema, `size` the sum and `sha256` `files_digest`.
    files: tuple[DumpFile, ...] = ()
    format: int = MANIFEST_FORMAT

    @property
    def parallel(self) -> bool:
        return bool(self.files)

    def dump_files(self) -> tuple[DumpFile, ...]:
        """Every file a restore reads, each with its size and sha256."""
        return self.files or (DumpFile(self.dump_key, self.size, self.sha256),)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PARALLEL_FORMAT if self.files else self.format,
            "backup_id": self.backup_id,
            "app": self.app,
            "dump_key": self.dump_key,
            "dump_format": self.dump_format,
            "compression": self.compression,
            "size": self.size,
            "sha256": self.sha256,
            "server_version": self.server_version,
            "pg_dump_version": self.pg_dump_version,
            "started_at": self.started_at.isoformat(),
            "snapshot_at": self.snapshot_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "tables": dict(sorted(self.tables.items())),
            "source": self.source,
            "source_side": self.source_side,
            "source_role": self.source_role,
            "source_lag_seconds": self.source_lag_seconds,
            "database_size": self.database_size,
            # Only a parallel backup has the field: the single-stream manifests read as they always have.
            **({"files": [f.to_json() for f in self.files]} if self.files else {}),
        }

    @classmethod
    def from_json(cls, doc: Any) -> BackupManifest:
        if not isinstance(doc, dict):
            raise ManifestError("the manifest is not a JSON object.")
        if doc.get("format") not in (MANIFEST_FORMAT, PARALLEL_FORMAT) or (
            (doc.get("format") == PARALLEL_FORMAT) != bool(doc.get("files"))
        ):
            raise ManifestError(
                f"manifest format {doc.get('format')!r} is not one this standby reads ({MANIFEST_FORMAT}, or "
                f"{PARALLEL_FORMAT} with its files). Upgrade standby, or choose another backup."
            )
        try:
            return cls(
                backup_id=str(doc["backup_id"]),
                app=str(doc["app"]),
                dump_key=str(doc["dump_key"]),
                dump_format=str(doc["dump_format"]),
                compression=str(doc["compression"]),
                size=int(doc["size"]),
                sha256=str(doc["sha256"]),
                server_version=str(doc["server_version"]),
                pg_dump_version=str(doc["pg_dump_version"]),
                started_at=_aware(doc["started_at"]),
                snapshot_at=_aware(doc["snapshot_at"]),
                finished_at=_aware(doc["finished_at"]),
                tables={str(k): int(v) for k, v in doc["tables"].items()},
                source=str(doc["source"]),
                source_side=str(doc.get("source_side", "heroku")),  # manifests from before it was recorded
                source_role=str(doc.get("source_role", "primary")),
                source_lag_seconds=float(doc.get("source_lag_seconds", 0.0)),
                database_size=int(doc.get("database_size", 0)),
                files=tuple(DumpFile.from_json(f) for f in doc.get("files", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(
                f"the manifest is incomplete or malformed ({type(exc).__name__}: {exc})."
            ) from None


def _aware(text: str) -> datetime:
    """A time with its timezone: a manifest's times are compared with now (UTC), never guessed."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"the time {text!r} has no timezone")
    return at


class NoCompleteBackup(SafetyRefusal):
    """Nothing verified to restore: every restore refuses, whichever command asked (exit 3)."""


class BackupState(StrEnum):
    COMPLETE = "complete"  # manifest written: a backup
    FAILED = "failed"  # the run recorded its failure
    INCOMPLETE = "incomplete"  # a dump without a manifest: running, or crashed; never used


@dataclass(frozen=True)
class CatalogEntry:
    backup_id: str
    state: BackupState
    started_at: datetime
    manifest: BackupManifest | None = None
    failure: Mapping[str, Any] = field(default_factory=dict)

    def age(self, now: datetime) -> float:
        """Seconds between the data's moment (the snapshot, or the start) and `now`."""
        moment = self.manifest.snapshot_at if self.manifest else self.started_at
        return (now - moment).total_seconds()


def build_catalog(
    keys: Iterable[str],
    manifests: Mapping[str, BackupManifest],
    failures: Mapping[str, Mapping[str, Any]],
) -> list[CatalogEntry]:
    """Group the keys under an app's prefix by backup id, oldest first.

    `keys` are relative to the app's prefix (`<id>/dump`, ...); `manifests` and `failures` are the parsed
    documents by backup id.
    """
    ids = {key.split("/", 1)[0] for key in keys if "/" in key}
    entries = []
    for backup_id in ids:
        started = backup_time(backup_id)
        if started is None:
            continue  # not ours
        # The documents carry the start to the microsecond; the id only to the second.
        if backup_id in manifests:
            manifest = manifests[backup_id]
            entries.append(CatalogEntry(backup_id, BackupState.COMPLETE, manifest.started_at, manifest))
        elif backup_id in failures:
            failure = failures[backup_id]
            precise = _parse_time(failure.get("started_at")) or started
            entries.append(CatalogEntry(backup_id, BackupState.FAILED, precise, failure=failure))
        else:
            entries.append(CatalogEntry(backup_id, BackupState.INCOMPLETE, started))
    return sorted(entries, key=lambda e: (e.started_at, e.backup_id))


def _parse_time(value: Any) -> datetime | None:
    """A time from a failure record; one without a timezone is UTC (what every writer here means)."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def newest_complete(catalog: Iterable[CatalogEntry], before: datetime | None = None) -> CatalogEntry | None:
    """The complete backup with the newest data, optionally whose data is from before `before`."""
    complete = [
        e
        for e in catalog
        if e.state is BackupState.COMPLETE
        and e.manifest is not None
        and (before is None or e.manifest.snapshot_at < before)
    ]
    return max(complete, key=lambda e: e.manifest.snapshot_at if e.manifest else e.started_at, default=None)


def select_backup(
    catalog: list[CatalogEntry], choice: str = "latest", before: datetime | None = None
) -> CatalogEntry:
    """Pick a backup: "latest", a backup id, or the newest before a time. Only complete backups qualify."""
    if choice == "latest":
        found = newest_complete(catalog, before)
        if found is None:
            when = f" with data from before {before.isoformat()}" if before else ""
            raise NoCompleteBackup(
                f"no complete backup{when}: nothing to restore. Run `python scripts/backup.py` first, or check "
                "the bucket."
            )
        return found
    entry = next((e for e in catalog if e.backup_id == choice), None)
    if entry is None:
        raise ConfigError([f"no backup {choice!r}. List them with `python scripts/backup.py list`."])
    if entry.state is not BackupState.COMPLETE:
        raise SafetyRefusal(
            f"backup {choice!r} is {entry.state.value}: it has no manifest and cannot be trusted. Choose another "
            "(`python scripts/backup.py list`)."
        )
    return entry


def check_belongs(manifest: BackupManifest, backup_id: str, app: str, base: str, now: datetime) -> None:
    """Refuse a manifest that is not this folder's backup of this app, or whose data is from the future.

    A manifest copied from another backup's folder, or dated ahead to stay "newest" for ever, would make
    every restore pick it.
    """
    if manifest.backup_id != backup_id or manifest.app != app:
        raise ManifestError(
            f"the manifest in {base}{backup_id}/ describes backup {manifest.backup_id} of {manifest.app}: it "
            "was copied or forged. Investigate the bucket."
        )
    folder = f"{base}{backup_id}/"
    if manifest.dump_key != folder + (SCHEMA if manifest.parallel else DUMP):
        raise ManifestError(f"the manifest points at a dump outside its folder ({manifest.dump_key}).")
    if manifest.parallel:
        _check_files(manifest, folder)
    if manifest.snapshot_at > now + CLOCK_SKEW:
        raise ManifestError(
            f"its data is dated {manifest.snapshot_at.isoformat()}, in the future: a manifest dated ahead "
            "would stay newest for ever. Investigate the bucket."
        )


def _check_files(manifest: BackupManifest, folder: str) -> None:
    """A parallel backup's files: its schema first, then data streams, all in its folder, adding up."""
    files = manifest.files
    expected = [folder + SCHEMA] + [f"{folder}{DATA}{n}" for n in range(1, len(files))]
    sections = [Section.SCHEMA] + [Section.DATA] * (len(files) - 1)
    if [f.key for f in files] != expected or [f.section for f in files] != sections or len(files) < 2:
        raise ManifestError(
            f"the manifest's files are not a parallel backup's ({', '.join(f.key for f in files)}): it was altered."
        )
    if manifest.size != sum(f.size for f in files) or manifest.sha256 != files_digest(files):
        raise ManifestError("the manifest's size or sha256 does not add up from its files: it was altered.")


class Verifier(Protocol):
    """Tells why a document cannot be trusted (standby.integrity.KmsMac), or None."""

    def problem(self, document: dict[str, Any]) -> str | None: ...


def scan_catalog(
    store: BackupStore,
    prefix: str,
    app: str,
    now: datetime | None = None,
    verifier: Verifier | None = None,
) -> list[CatalogEntry]:
    """Read `app`'s catalog from every folder: its keys, manifests and failure records (two requests a
    backup; `standby.catalog_index.read_catalog` answers from the index in a handful).

    A manifest that does not parse, or does not belong to its folder (`check_belongs`), makes its backup
    count as failed, never as complete; so does one whose MAC `verifier` refuses (unsigned or forged).
    """
    base = backup_prefix(prefix, app)
    keys = [k.removeprefix(base) for k in store.list_keys(base)]
    found = read_documents(store, base, keys, app, now or datetime.now(UTC), verifier)
    return build_catalog(keys, found.manifests, found.failures)


@dataclass
class Documents:
    """What some backup folders hold: their parsed manifests (and the documents as stored) and failures."""

    manifests: dict[str, BackupManifest] = field(default_factory=dict)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # the manifests as read, MAC and all
    failures: dict[str, Mapping[str, Any]] = field(default_factory=dict)


def read_documents(
    store: BackupStore, base: str, keys: Iterable[str], app: str, now: datetime, verifier: Verifier | None
) -> Documents:
    """Read the manifests and failure records among `keys` (relative to `base`), each checked."""
    found = Documents()
    manifests, failures = found.manifests, found.failures
    for key in keys:
        backup_id, _, name = key.partition("/")
        if name == MANIFEST:
            try:
                doc: Any = store.get_json(base + key)
                forged = verifier.problem(doc) if verifier is not None and isinstance(doc, dict) else None
                if forged and isinstance(doc, dict):
                    failures[backup_id] = {"phase": "verifying the manifest", "error": f"the manifest cannot be "
                                           f"trusted: {forged}", "started_at": doc.get("started_at")}  # fmt: skip
                    continue
                manifest = BackupManifest.from_json(doc)
            except (ManifestError, ValueError) as exc:  # a bad manifest, or JSON cut short
                failures[backup_id] = {"phase": "reading the manifest", "error": _one_line(exc)}
                continue
            try:
                check_belongs(manifest, backup_id, app, base, now)
                manifests[backup_id] = manifest
                found.stored[backup_id] = doc  # a dict: from_json took it
            except ManifestError as exc:
                failures[backup_id] = {"phase": "checking the manifest", "error": _one_line(exc),
                                       "started_at": manifest.started_at.isoformat()}  # fmt: skip
        elif name == FAILURE:
            try:
                record = store.get_json(base + key)
            except ValueError as exc:
                record = {"phase": "unknown", "error": f"its failure record is unreadable: {_one_line(exc)}"}
            if not isinstance(record, dict):
                record = {"phase": "unknown", "error": "its failure record is not a JSON object"}
            failures.setdefault(backup_id, record)
    return found


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


@dataclass(frozen=True)
class BackupChoice:
    """Which backup a restore wants: the newest ("latest"), a backup id, or the newest from before a time."""

    backup: str = "latest"
    before: datetime | None = None

    @property
    def pinned(self) -> bool:
        """The operator named one backup: no other may stand in for it."""
        return self.backup != "latest"

    def candidates(self, catalog: list[CatalogEntry]) -> list[CatalogEntry]:
        """The complete backups that qualify, newest data first."""
        if self.pinned:
            return [select_backup(catalog, self.backup)]
        found = [
            e
            for e in catalog
            if e.state is BackupState.COMPLETE
            and e.manifest is not None
            and (self.before is None or e.manifest.snapshot_at < self.before)
        ]
        return sorted(
            found, key=lambda e: e.manifest.snapshot_at if e.manifest else e.started_at, reverse=True
        )


@dataclass(frozen=True)
class Skipped:
    """A backup passed over because its dump is broken, and the data that costs (seconds of RPO)."""

    backup_id: str
    reason: str
    rpo_cost_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "reason": self.reason, "rpo_cost_seconds": self.rpo_cost_seconds}


def dump_problem(store: BackupStore, manifest: BackupManifest) -> str | None:
    """What is wrong with a backup's dump that one look per file can tell (missing, or not the size its
    manifest says)."""
    for file in manifest.dump_files():
        what = "its dump" if file.section is Section.ALL else f"its file {file.key.rsplit('/', 1)[-1]}"
        size = store.size(file.key)
        if size is None:
            return f"{what} is missing"
        if size != file.size:
            return f"{what} is {size} bytes, its manifest says {file.size}: truncated or replaced"
    return None


def first_intact(
    store: BackupStore, candidates: list[CatalogEntry], skipped: list[Skipped]
) -> CatalogEntry | None:
    """The first candidate whose dump is whole; each one passed over is added to `skipped`."""
    broken: list[tuple[CatalogEntry, str]] = []
    found = None
    for entry in candidates:
        assert entry.manifest is not None
        problem = dump_problem(store, entry.manifest)
        if problem is None:
            found = entry
            break
        broken.append((entry, problem))
    skipped.extend(Skipped(e.backup_id, problem, rpo_cost(e, found)) for e, problem in broken)
    return found


def rpo_cost(skipped: CatalogEntry, instead: CatalogEntry | None) -> float:
    """The data lost by restoring `instead` of `skipped`: the time between their snapshots."""
    if instead is None or skipped.manifest is None or instead.manifest is None:
        return 0.0
    return round((skipped.manifest.snapshot_at - instead.manifest.snapshot_at).total_seconds(), 1)


NEWEST: Final = BackupChoice()  # the default choice of every restore
