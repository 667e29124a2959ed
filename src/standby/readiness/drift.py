"""Drift: Heroku now against what the standby was built from at its last `pulumi up` (the standby
manifest records it), and the PostgreSQL versions a backup and a restore depend on."""

from __future__ import annotations

import re
from typing import Final

from standby import heroku_postgres
from standby.heroku_postgres import DatabaseInfo
from standby.live_side import describe
from standby.names import mirrored_setting
from standby.pg_tools import PgVersion, find_tool
from standby.readiness.check import Check, critical, ok, warning
from standby.readiness.sources import Sources

COMMIT: Final = re.compile(r"[0-9a-f]{7,40}")
REBUILD: Final = "run `pulumi up -s primary` (or fix Pulumi.primary.yaml to what Heroku runs), then `pulumi up -s standby`."


def _not_compared(name: str, src: Sources) -> Check | None:
    """While the standby is live, Heroku is fenced: its formation and release are not the app's."""
    if src.live_on_heroku:
        return None
    return ok(name, f"not compared: the app is live on {describe(src.live)} and Heroku is fenced")


def formation(src: Sources) -> Check:
    if skipped := _not_compared("formation", src):
        return skipped
    heroku = {str(p["type"]): (int(p["quantity"]), str(p["size"])) for p in src.heroku.formation(src.app)}
    built = {t: (int(p["quantity"]), str(p["size"])) for t, p in src.manifest.primary_formation.items()}
    unmirrored = sorted(t for t, (count, _) in heroku.items() if count and t not in src.manifest.services)
    if unmirrored:
        return critical(
            "formation",
            f"Heroku runs {', '.join(f'{t}={heroku[t][0]}' for t in unmirrored)}, for which the standby has no "
            "service: a cutover would not run it",
            f"declare it in Pulumi.primary.yaml's formation; {REBUILD}",
        )
    changed = []
    for kind, (count, size) in sorted(built.items()):
        now_count, now_size = heroku.get(kind, (0, "-"))
        if (now_count, now_size.lower()) != (count, size.lower()):
            changed.append(f"{kind}: Heroku {now_count} {now_size}, standby built for {count} {size}")
    if changed:
        return warning(
            "formation",
            f"the formation changed since the standby was built ({'; '.join(changed)}): a cutover starts the old counts",
            REBUILD,
        )
    counts = ", ".join(f"{t}={n}" for t, (n, _) in sorted(heroku.items()))
    return ok("formation", f"process types and counts match Heroku's ({counts or 'none'})")


def config_vars(src: Sources) -> Check:
    if skipped := _not_compared("config-vars", src):
        return skipped
    heroku = {name for name in src.heroku.config_vars(src.app) if mirrored_setting(name)}  # names only
    standby = set(src.manifest.setting_names)
    missing = sorted(heroku - standby)
    stale = sorted(standby - heroku - set(src.manifest.override_names))
    if missing:
        return critical(
            "config-vars",
            f"Heroku sets {', '.join(missing)}, which the app on AWS would not get",
            f"add them to Pulumi.primary.yaml (configVars or secretConfigVars); {REBUILD}",
        )
    if stale:
        return warning(
            "config-vars",
            f"the app on AWS gets {', '.join(stale)}, which Heroku no longer sets",
            f"remove them from Pulumi.primary.yaml; {REBUILD}",
        )
    return ok("config-vars", f"the same {len(heroku)} config var names on both sides")


def image(src: Sources) -> Check:
    declared = src.manifest.image
    if not declared:
        return warning(
            "image", "the standby manifest names no image (an older stack)", "run `pulumi up -s standby`."
        )
    ecs = src.standby.client("ecs")
    services = ecs.describe_services(
        cluster=src.manifest.cluster, services=list(src.manifest.services.values())
    )
    others = []
    for service in services["services"]:
        definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        images = sorted({str(c["image"]) for c in definition["containerDefinitions"]})
        if declared not in images:
            others.append(f"{service['serviceName']} runs {', '.join(images)}")
    if others:
        return warning(
            "image",
            f"the stack declares {declared}, but {'; '.join(others)}",
            "run `pulumi up -s standby` (something changed the services outside Pulumi).",
        )
    if skipped := _not_compared("image", src):
        return skipped
    release = next((r for r in src.heroku.releases(src.app, 10) if r.get("current")), None)
    slug = (release or {}).get("slug") or {}
    commit = str(src.heroku.slug(src.app, str(slug["id"])).get("commit") or "") if slug.get("id") else ""
    if not commit:
        return warning(
            "image",
            f"the services run {declared}; Heroku's current release names no commit: whether it is Heroku's "
            "code cannot be told",
            "deploy to Heroku from git (its slug records the commit), and tag the standby's image with that commit.",
        )
    tag = "" if "@" in declared else declared.rpartition(":")[2]
    version = f"v{release['version']}" if release else "?"
    if not COMMIT.fullmatch(tag):
        return warning(
            "image",
            f"Heroku runs commit {commit[:12]} ({version}); whether {declared} holds it cannot be told",
            "tag the standby's image with the git commit it is built from (as Heroku builds that commit).",
        )
    if not (commit.startswith(tag) or tag.startswith(commit)):
        return warning(
            "image",
            f"Heroku runs commit {commit[:12]} ({version}), the standby {tag[:12]}: a cutover serves older code",
            f"build and push the image of {commit[:12]}, set standby:image to it, run `pulumi up -s standby`.",
        )
    return ok("image", f"the standby runs commit {tag[:12]}, as Heroku's {version}")


def domains(src: Sources) -> Check:
    if skipped := _not_compared("domains", src):
        return skipped
    heroku = {
        str(d["hostname"]): str(d.get("cname") or "")
        for d in src.heroku.domains(src.app)
        if d.get("kind") == "custom"
    }
    records = {r["hostname"]: r["heroku_target"] for r in src.manifest.records}
    missing = sorted(set(heroku) - set(records))
    if missing:
        return critical(
            "domains",
            f"Heroku serves {', '.join(missing)}, which the standby has no record for: a cutover leaves them on Heroku",
            f"add them to Pulumi.primary.yaml's domains; {REBUILD}",
        )
    moved = sorted(h for h in heroku if heroku[h] and heroku[h] != records[h])
    gone = sorted(set(records) - set(heroku))
    if moved or gone:
        said = [
            f"{h}'s Heroku DNS target is now {heroku[h]}, the standby's record says {records[h]}"
            for h in moved
        ]
        said += [f"{h} is no longer on Heroku" for h in gone]
        return warning("domains", "; ".join(said), REBUILD)
    return ok("domains", f"{len(records)} domains and their Heroku DNS targets match")


def postgres_version(src: Sources) -> Check:
    heroku, where = _heroku_version(src)
    standby = _standby_version(src)
    newest = src.newest
    dump = PgVersion.parse(newest.pg_dump_version) if newest else None
    restore = find_tool("pg_restore", src.pg_bin).version
    said = (
        f"Heroku {heroku or '?'} ({where}), standby {standby or '?'}, pg_dump {dump or '?'} (the backup task's), "
        f"pg_restore {restore} (here)"
    )
    problems = []
    if heroku and standby and standby.major < heroku.major:
        problems.append(
            (f"the standby database runs PostgreSQL {standby.major}, older than Heroku's {heroku.major}: a restore "
             "into it fails", f"set postgres.version to {heroku.major} in Pulumi.primary.yaml; {REBUILD}")
        )  # fmt: skip
    if heroku and dump and dump.major < heroku.major:
        problems.append(
            (f"the backup task's pg_dump {dump} cannot dump Heroku's PostgreSQL {heroku.major}: the next backups fail",
             f"rebuild standby:backupImage with PostgreSQL {heroku.major} client programs, then `pulumi up -s standby`.")
        )  # fmt: skip
    newest_archive = max(v for v in (dump, heroku) if v is not None) if (dump or heroku) else None
    if newest_archive and restore.major < newest_archive.major:
        problems.append(
            (f"pg_restore {restore} here cannot read archives of pg_dump {newest_archive.major}",
             f"install PostgreSQL {newest_archive.major} client programs (or pass --pg-bin).")
        )  # fmt: skip
    if problems:
        return critical(
            "postgres-version",
            f"{'; '.join(p for p, _ in problems)} ({said})",
            " ".join(f for _, f in problems),
        )
    if heroku and standby and standby.major > heroku.major:
        return warning(
            "postgres-version",
            f"the standby runs a newer major version than Heroku ({said}): a failback restores its dump into an older server",
            "upgrade Heroku's database (`heroku pg:upgrade`) or pin the standby's version to Heroku's.",
        )
    return ok("postgres-version", said)


def _heroku_version(src: Sources) -> tuple[PgVersion | None, str]:
    """Heroku's server version as `pg:info` says it; with Heroku fenced, as the newest backup saw it."""
    if src.live_on_heroku:
        primary = heroku_postgres.primary_database(
            heroku_postgres.app_databases(src.heroku, src.app), src.app
        )
        info = DatabaseInfo.from_json(src.heroku.database_info(primary.id))
        if info.version:
            return PgVersion.parse(info.version), "pg:info"
    newest = src.newest
    return (PgVersion.parse(newest.server_version), "newest backup") if newest else (None, "unknown")


def _standby_version(src: Sources) -> PgVersion | None:
    if src.db_instance and src.db_instance.get("EngineVersion"):
        return PgVersion.parse(str(src.db_instance["EngineVersion"]))
    return PgVersion(src.manifest.postgres_version, 0) if src.manifest.postgres_version else None
