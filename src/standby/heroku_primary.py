"""`HerokuPrimary`: the Heroku app as it runs today, declared so the standby can mirror it."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumiverse_heroku as heroku

from standby.config.models import PrimaryConfig
from standby.names import PrimaryOutput as Out
from standby.sizing import ADDON_SERVICE


class HerokuPrimary(pulumi.ComponentResource):
    """The app, its config vars, its Postgres (and follower), its domains and its formation.

    Every value the standby needs is an attribute here and, through `outputs()`, a stack output.
    """

    def __init__(
        self,
        name: str,
        config: PrimaryConfig,
        opts: pulumi.ResourceOptions | None = None,
        fenced: bool = False,
    ) -> None:
        """`fenced`: the standby serves the app now; every process type is declared at zero."""
        super().__init__("standby:heroku:HerokuPrimary", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # What cannot be recreated: the app (deleting it deletes its add-ons) and its databases. Pulumi refuses
        # to replace or delete them; a `pulumi destroy` leaves them on Heroku.
        kept = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        self.config = config

        secret_vars = {k: v.get_secret_value() for k, v in config.secret_config_vars.items()}
        self.app = heroku.app.App(
            f"{name}-app",
            name=config.app.name,
            region=config.app.region,
            stack=config.app.stack,
            organization={"name": config.app.team} if config.app.team else None,
            config_vars=dict(config.config_vars),
            # The provider keeps these out of plan output; wrapping them keeps them secret in state too.
            sensitive_config_vars=pulumi.Output.secret(secret_vars),
            opts=kept,
        )

        if config.ai is not None:
            # The AI settings start at the configured provider; from then on scripts/switch_ai.py owns
            # their values (a `pulumi up` during a provider outage must not switch the app back).
            heroku.app.ConfigAssociation(
                f"{name}-ai-settings",
                app_id=self.app.id,
                vars=config.ai.settings(config.ai.active),
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["vars"]),
            )

        postgres = config.postgres
        # An add-on's `config` forces a new add-on, that is a new, empty database: it counts at creation only.
        # A major version upgrade is `heroku pg:upgrade`, in place; `postgres.version` then says what runs.
        database = pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(ignore_changes=["config"]))
        self.database = heroku.addon.Addon(
            f"{name}-postgres",
            app_id=self.app.id,
            plan=f"{ADDON_SERVICE}:{postgres.plan}",
            config={"version": str(postgres.version)},
            opts=database,
        )
        self.follower: heroku.addon.Addon | None = None
        if postgres.follower is not None:
            # A follower streams from the leader inside Heroku: the fast answer to "data deleted" is
            # not here (it follows deletes too) but to "leader lost" it is.
            self.follower = heroku.addon.Addon(
                f"{name}-postgres-follower",
                app_id=self.app.id,
                plan=f"{ADDON_SERVICE}:{postgres.follower}",
                config={"follow": self.database.name},
                opts=database,
            )

        self.domains = [
            heroku.domain.Domain(
                f"{name}-domain-{hostname}", app_id=self.app.id, hostname=hostname, opts=child
            )
            for hostname in config.domains
        ]

        # Heroku only accepts a formation for process types the deployed slug declares in its Procfile.
        self.formation = {
            process_type: heroku.formation.Formation(
                f"{name}-formation-{process_type}",
                app_id=self.app.id,
                type=process_type,
                # While the standby is live Heroku stays fenced: a `pulumi up` must not wake it (split brain).
                quantity=0 if fenced else process.quantity,
                size=process.size,
                opts=child,
            )
            for process_type, process in config.formation.items()
        }

        self.register_outputs(self.outputs())

    def outputs(self) -> dict[str, Any]:
        """The primary stack's outputs, keyed by `standby.names.PrimaryOutput`."""
        config = self.config
        ai_settings = config.ai.settings(config.ai.active) if config.ai else {}
        return {
            Out.APP_NAME: self.app.name,
            Out.APP_ID: self.app.uuid,
            Out.APP_REGION: self.app.region,
            Out.WEB_URL: self.app.web_url,
            Out.DOMAINS: [{"hostname": d.hostname, "dnsTarget": d.cname} for d in self.domains],
            # The configured counts, not the declared ones: the standby mirrors what the app needs, fenced or not.
            Out.FORMATION: {
                process_type: {"quantity": config.formation[process_type].quantity, "size": f.size}
                for process_type, f in self.formation.items()
            },
            Out.CONFIG_VAR_NAMES: sorted([*config.config_vars, *config.secret_config_vars, *ai_settings]),
            Out.PLAIN_CONFIG_VARS: {**config.config_vars, **ai_settings},
            Out.SECRET_CONFIG_VARS: self.app.sensitive_config_vars,
            Out.POSTGRES_PLAN: config.postgres.plan,
            Out.POSTGRES_VERSION: config.postgres.version,
            Out.POSTGRES_ADDON_NAME: self.database.name,
            Out.FOLLOWER_ADDON_NAME: self.follower.name if self.follower else None,
            Out.AI: config.ai.model_dump(mode="json", by_alias=True) if config.ai else None,
        }
