"""The failback from the AWS standby to Heroku, as runbook steps.

preflight -> fence the standby (services to zero: no more writes) -> dump it -> restore the dump into
Heroku Postgres from a presigned URL (Heroku's own `pg:backups:restore`) -> verify Heroku's row counts ->
unfence Heroku (dynos back, maintenance off) -> DNS back to Heroku -> the standby back to its base mode.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from standby import catalog
from standby.backup import BackupRequest, run_backup
from standby.dns_switch import DnsSwitch
from standby.errors import SafetyRefusal
from standby.pg_url import parse_database_url
from standby.restore import verify_counts
from standby.runbook.engine import RunContext, Step
from standby.runbooks.cutover import CutoverEnv, EnvStep

URL_LIFETIME: Final = 3600  # seconds the presigned URL for Heroku stays valid
TRANSFER_TIMEOUT: Final = 6 * 3600.0


class FailbackPreflight(EnvStep):
    name = "preflight"

    def is_done(self, ctx: RunContext) -> bool:
        return "started_at" in ctx.facts

    def plan(self, ctx: RunContext) -> str:
        return "check that the standby is active and that Heroku answers"

    def apply(self, ctx: RunContext) -> None:
        mode = self.env.client("ssm").get_parameter(Name=self.env.manifest.mode_parameter)["Parameter"][
            "Value"
        ]
        if mode != "active":
            raise SafetyRefusal(f"the standby is {mode}, not active: there is nothing to fail back.")
        self.env.heroku.app(self.env.app)  # must answer: failback writes to Heroku
        ctx.facts["started_at"] = datetime.now(UTC).isoformat()


class FenceStandby(EnvStep):
    name = "fence_standby"

    def _counts(self) -> dict[str, int]:
        manifest = self.env.manifest
        found = self.env.client("ecs").describe_services(
            cluster=manifest.cluster, services=list(manifest.services.values())
        )
        by_name = {s["serviceName"]: int(s["desiredCount"]) for s in found["services"]}
        return {kind: by_name.get(name, 0) for kind, name in manifest.services.items()}

    def is_done(self, ctx: RunContext) -> bool:
        return "formation" in ctx.facts and not any(self._counts().values())

    def plan(self, ctx: RunContext) -> str:
        return "ECS services to zero: the standby stops taking writes"

    def apply(self, ctx: RunContext) -> None:
        if "formation" not in ctx.facts:  # Heroku gets these counts back
            ctx.facts["formation"] = self._counts()
        ecs = self.env.client("ecs")
        for name in self.env.manifest.services.values():
            ecs.update_service(cluster=self.env.manifest.cluster, service=name, desiredCount=0)

    def verify(self, ctx: RunContext) -> None:
        if any(self._counts().values()):
            raise SafetyRefusal(f"standby services still run: {self._counts()}")


class DumpStandby(EnvStep):
    name = "dump_standby"

    def is_done(self, ctx: RunContext) -> bool:
        return bool(ctx.facts.get("failback_backup"))

    def plan(self, ctx: RunContext) -> str:
        return "back up the standby database (a verified backup like any other)"

    def apply(self, ctx: RunContext) -> None:
        manifest = run_backup(
            BackupRequest(
                self.env.app,
                self.env.standby_database(),
                self.env.store,
                self.env.pg_dump,
                self.env.manifest.backup_prefix,
            )
        )
        ctx.facts["failback_backup"] = manifest.backup_id


class RestoreHeroku(EnvStep):
    name = "restore_heroku"

    def _backup(self, ctx: RunContext) -> catalog.BackupManifest:
        entries = catalog.read_catalog(self.env.store, self.env.manifest.backup_prefix, self.env.app)
        entry = catalog.select_backup(entries, ctx.facts["failback_backup"])
        assert entry.manifest is not None
        return entry.manifest

    def is_done(self, ctx: RunContext) -> bool:
        return bool(ctx.facts.get("heroku_restored"))

    def plan(self, ctx: RunContext) -> str:
        return "Heroku restores the dump into its Postgres from a presigned URL (pg:backups:restore)"

    def apply(self, ctx: RunContext) -> None:
        heroku, app = self.env.heroku, self.env.app
        backup = self._backup(ctx)
        s3 = self.env.client("s3")
        url = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.env.manifest.backup_bucket, "Key": backup.dump_key},
            ExpiresIn=URL_LIFETIME,
        )
        addon = heroku.postgres_addon(app)
        transfer = heroku.restore_database(addon["id"], url)
        deadline = time.monotonic() + TRANSFER_TIMEOUT
        while not transfer.get("finished_at"):
            if time.monotonic() > deadline:
                raise SafetyRefusal(
                    f"Heroku's restore {transfer['uuid']} did not finish; check `heroku pg:backups`."
                )
            time.sleep(5)
            transfer = heroku.transfer(app, str(transfer["uuid"]))
        if not transfer.get("succeeded"):
            raise SafetyRefusal(f"Heroku's restore {transfer['uuid']} failed; see `heroku pg:backups:info`.")
        url = heroku.config_vars(app).get("DATABASE_URL", "")
        verify_counts(parse_database_url(url, "Heroku DATABASE_URL"), backup.tables)
        ctx.facts["heroku_restored"] = True
        ctx.facts["verified"] = True


class UnfenceHeroku(EnvStep):
    name = "unfence_heroku"

    def is_done(self, ctx: RunContext) -> bool:
        heroku, app = self.env.heroku, self.env.app
        current = {p["type"]: p["quantity"] for p in heroku.formation(app)}
        wanted = {k: v for k, v in ctx.facts.get("formation", {}).items() if k in current}
        return not heroku.app(app).get("maintenance") and all(current[k] == v for k, v in wanted.items())

    def plan(self, ctx: RunContext) -> str:
        return "Heroku dynos back to the standby's counts, maintenance mode off"

    def apply(self, ctx: RunContext) -> None:
        heroku, app = self.env.heroku, self.env.app
        known = {p["type"] for p in heroku.formation(app)}
        heroku.scale(app, {k: v for k, v in ctx.facts.get("formation", {}).items() if k in known})
        heroku.set_maintenance(app, False)

    def verify(self, ctx: RunContext) -> None:
        if not self.is_done(ctx):
            raise SafetyRefusal("Heroku is still in maintenance mode or its dynos did not come back.")


class SwitchDnsBack(EnvStep):
    name = "switch_dns_back"

    def __init__(self, env: CutoverEnv) -> None:
        super().__init__(env)
        self.switch = DnsSwitch(env.manifest, env.client)

    def is_done(self, ctx: RunContext) -> bool:
        return self.switch.is_on(on_standby=False)

    def plan(self, ctx: RunContext) -> str:
        return "DNS back to Heroku's DNS targets (TTL 60)"

    def apply(self, ctx: RunContext) -> None:
        self.switch.move(on_standby=False, reason=f"standby failback of {self.env.app}")

    def verify(self, ctx: RunContext) -> None:
        if not self.is_done(ctx):
            raise SafetyRefusal("the DNS records do not point at Heroku after the switch back.")


class StandbyToBaseMode(EnvStep):
    name = "standby_base_mode"

    def is_done(self, ctx: RunContext) -> bool:
        value = self.env.client("ssm").get_parameter(Name=self.env.manifest.mode_parameter)["Parameter"][
            "Value"
        ]
        return bool(value == self.env.manifest.base_mode)

    def plan(self, ctx: RunContext) -> str:
        return f"the standby back to {self.env.manifest.base_mode}"

    def apply(self, ctx: RunContext) -> None:
        manifest = self.env.manifest
        if manifest.base_mode == "warm":
            ecs = self.env.client("ecs")
            for kind, name in manifest.services.items():
                count = 1 if ctx.facts.get("formation", {}).get(kind) else 0
                ecs.update_service(cluster=manifest.cluster, service=name, desiredCount=count)
        self.env.client("ssm").put_parameter(
            Name=manifest.mode_parameter, Value=manifest.base_mode, Type="String", Overwrite=True
        )


def failback_steps(env: CutoverEnv) -> list[Step]:
    return [
        FailbackPreflight(env),
        FenceStandby(env),
        DumpStandby(env),
        RestoreHeroku(env),
        UnfenceHeroku(env),
        SwitchDnsBack(env),
        StandbyToBaseMode(env),
    ]
