"""`StandbyDatabase`: RDS PostgreSQL at the size mapped from the primary's plan, and its DATABASE_URL secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from standby.names import APP_ROLE
from standby.sizing import PostgresPlan
from standby.vocabulary import Mode

USER: Final = "standby"
DBNAME: Final = "app"
PILOT_LIGHT_CLASS: Final = "db.t4g.small"  # enough to receive restores; a cutover scales it up
BACKUP_RETENTION_DAYS: Final = 7


@dataclass(frozen=True)
class DatabaseArgs:
    app: str
    plan: PostgresPlan
    major_version: int
    mode: Mode
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    # The standby region's database is never replaced or deleted by Pulumi. The second region's comes and
    # goes with the config and the live mode (its deletion protection still asks for a hand to remove it).
    protect: bool = True


class StandbyDatabase(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("standby:aws:StandbyDatabase", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword(f"{name}-password", length=40, special=False, opts=child)
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, opts=child)
        full_size = args.mode is not Mode.PILOT_LIGHT
        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=f"{args.app}-standby",
            engine="postgres",
            engine_version=str(args.major_version),
            instance_class=args.plan.rds_class if full_size else PILOT_LIGHT_CLASS,
            allocated_storage=args.plan.allocated_storage_gib,
            max_allocated_storage=max(args.plan.allocated_storage_gib * 2, 100),
            storage_type="gp3",
            storage_encrypted=True,
            multi_az=args.plan.multi_az and full_size,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[args.security_group_id],
            publicly_accessible=False,
            deletion_protection=True,
            backup_retention_period=BACKUP_RETENTION_DAYS,
            copy_tags_to_snapshot=True,
            final_snapshot_identifier=f"{args.app}-standby-final",
            username=USER,
            password=password.result,
            db_name=DBNAME,
            # A cutover resizes the database; it must not wait for the maintenance window.
            apply_immediately=True,
            auto_minor_version_upgrade=True,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect),
        )
        # Two URLs: the master user's, for the runbooks and the restores; the application role's, which owns
        # the data (the restores create it and hand it the restored database, standby.loader_role), for the
        # app's and the drill's tasks.
        self.url_secret = self._url_secret(
            f"{name}-url", f"standby/{args.app}/database-url", USER, password.result,
            f"DATABASE_URL of {args.app}'s standby database, as its master user",
        )  # fmt: skip
        app_password = random.RandomPassword(f"{name}-app-password", length=40, special=False, opts=child)
        self.app_url_secret = self._url_secret(
            f"{name}-app-url", f"standby/{args.app}/app-database-url", APP_ROLE, app_password.result,
            f"DATABASE_URL of {args.app} on the standby: the application role, not the master user",
        )  # fmt: skip
        self.register_outputs({"endpoint": self.instance.address, "urlSecret": self.url_secret.arn})

    def _url_secret(
        self, name: str, secret_name: str, user: str, password: pulumi.Output[str], description: str
    ) -> aws.secretsmanager.Secret:
        child = pulumi.ResourceOptions(parent=self)
        secret = aws.secretsmanager.Secret(name, name=secret_name, description=description, opts=child)
        url = pulumi.Output.concat(
            "postgres://", user, ":", password, "@", self.instance.address, ":",
            self.instance.port.apply(str), "/", DBNAME, "?sslmode=require",
        )  # fmt: skip
        # The password is a secret output, and so is every value built from it: the URL stays encrypted.
        aws.secretsmanager.SecretVersion(f"{name}-value", secret_id=secret.id, secret_string=url, opts=child)
        return secret
