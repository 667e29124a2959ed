"""A standby as `pulumi up -s standby` would leave it, created through the AWS APIs of any endpoint
(moto's server for the tests and the local rehearsal): the bucket, the lock table, the database secret,
the live mode, the ECS services, the drill's secret and target group, the hosted zone with its records pointing at Heroku, the topic, the
failover alarm, and the standby manifest naming all of it.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import boto3
import psycopg

from standby.backup_store import S3Store
from standby.local.standby_side import WEB, WEB_TASK_IP
from standby.names import (
    APP_ROLE,
    DRILL_CLOSED,
    DRILL_HEADER,
    FAILOVER_METRIC,
    METRICS_NAMESPACE,
    failover_alarm,
    lock_table,
    manifest_parameter,
    mirrored_setting,
    mode_parameter,
    runbook_topic,
)
from standby.pg_url import parse_database_url
from standby.standby_manifest import StandbyManifest
from standby.vocabulary import DnsMode, Mode

UNREACHED_ENGINE = "17.5"
APP_PASSWORD = "app-password-not-for-logs"  # the local world's application role


@dataclass(frozen=True)
class WorldSpec:
    app: str
    region: str
    database_url: str  # the standby's DATABASE_URL (goes into Secrets Manager, not the manifest)
    zone: str
    records: dict[str, str]  # hostname -> Heroku DNS target
    formation: dict[str, int]  # process type -> the primary's dyno count
    load_balancer_dns: str
    dns_mode: DnsMode = DnsMode.RECORD
    mode: Mode = Mode.WARM
    sanity_sql: tuple[str, ...] = ()
    hosted_zone_id: str | None = None  # Route 53 is global: a second region's world reuses the first's zone
    app_settings: dict[str, str] | None = None  # the app's config vars on AWS (one JSON secret)
    ai: dict[str, Any] | None = None  # the AI providers (AiConfig, camelCase)
    mac_primary_keys: tuple[str, str] | None = None  # the second region's world: the first's MAC keys
    second_region: str | None = None  # the other region of the standby, when the world has one
    sizes: dict[str, str] | None = None  # process type -> the primary's dyno size (default Standard-1X)
    image: str | None = None  # what the services run (default <app>:latest)


def build_standby_world(spec: WorldSpec) -> StandbyManifest:
    def client(service: str) -> Any:
        return _client(service, spec.region, os.environ.get("AWS_ENDPOINT_URL"))

    app = spec.app
    bucket = f"{app}-backups-{spec.region}"
    s3 = client("s3")
    s3.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": spec.region},
        ObjectLockEnabledForBucket=True,
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client("dynamodb").create_table(
        TableName=lock_table(app),
        KeySchema=[{"AttributeName": "lock", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lock", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    secret = client("secretsmanager").create_secret(
        Name=f"standby/{app}/database-url", SecretString=spec.database_url
    )
    # The application role, as StandbyDatabase declares it: the restores create it and hand it the data.
    url = urlsplit(spec.database_url)
    app_url = urlunsplit(url._replace(netloc=f"{APP_ROLE}:{APP_PASSWORD}@{url.netloc.rpartition('@')[2]}"))
    app_secret = client("secretsmanager").create_secret(
        Name=f"standby/{app}/app-database-url", SecretString=app_url
    )["ARN"]
    client("ssm").put_parameter(
        Name=mode_parameter(app), Value=spec.mode.value, Type="String", Overwrite=True
    )
    topic = client("sns").create_topic(Name=runbook_topic(app))["TopicArn"]

    # ECS services need a network to be created, as on AWS.
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as StandbyNetwork declares
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.128.0/20")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{app}-services", Description="services", VpcId=vpc)[
        "GroupId"
    ]
    engine_version = _server_version(spec.database_url)
    # The standby's RDS instance as StandbyDatabase declares it; moto describes it, nothing runs in it.
    client("rds").create_db_instance(
        DBInstanceIdentifier=f"{app}-standby", DBInstanceClass="db.t4g.small", Engine="postgres",
        EngineVersion=engine_version, AllocatedStorage=20, MasterUsername="standby",
        MasterUserPassword="not-used-by-the-world", StorageEncrypted=True,
    )  # fmt: skip
    image = spec.image or f"{app}:latest"
    ecs = client("ecs")
    cluster = f"{app}-standby"
    ecs.create_cluster(clusterName=cluster)
    services: dict[str, str] = {}
    for kind, quantity in spec.formation.items():
        family = f"{app}-{kind}"
        ecs.register_task_definition(
            family=family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            executionRoleArn=f"arn:aws:iam::123456789012:role/{app}-execution",
            # moto's run_task wants a container memory, which Fargate leaves optional.
            containerDefinitions=[{"name": kind, "image": image, "essential": True, "memory": 512,
                                   "secrets": [{"name": "DATABASE_URL", "valueFrom": app_secret}]}],
        )  # fmt: skip
        ecs.create_service(
            cluster=cluster,
            serviceName=family,
            taskDefinition=family,
            desiredCount=1 if spec.mode is Mode.WARM and quantity else 0,
            launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}},
        )
        services[kind] = family

    settings_secret = client("secretsmanager").create_secret(
        Name=f"standby/{app}/config-vars", SecretString=json.dumps(spec.app_settings or {}, sort_keys=True)
    )["ARN"]
    drill_secret = client("secretsmanager").create_secret(Name=f"standby/{app}/drill-database-url")["ARN"]
    primary_secret = client("secretsmanager").create_secret(Name=f"standby/{app}/heroku-database-url")["ARN"]
    if spec.mac_primary_keys:
        # The second region verifies with replicas of the first region's multi-Region keys on AWS; moto's
        # server cannot replicate keys (ReplicateKey answers 500), so this world names the first's keys.
        mac_key, runbook_key = spec.mac_primary_keys
    else:
        mac_key, runbook_key = (
            client("kms").create_key(KeyUsage="GENERATE_VERIFY_MAC", KeySpec="HMAC_256", MultiRegion=True)[
                "KeyMetadata"
            ]["Arn"]
            for _ in range(2)
        )
    web_group = client("elbv2").create_target_group(
        Name=f"{app}-web"[-32:], Protocol="HTTP", Port=5000, VpcId=vpc, TargetType="ip",
        HealthCheckPath="/health",
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    if spec.mode is Mode.WARM and spec.formation.get(WEB):
        client("elbv2").register_targets(TargetGroupArn=web_group, Targets=[{"Id": WEB_TASK_IP}])
    drill_group = client("elbv2").create_target_group(
        Name=f"{app}-drill"[-32:], Protocol="HTTP", Port=5000, VpcId=vpc, TargetType="ip",
        HealthCheckPath="/health",
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    drill_rule = _drill_rule(client("elbv2"), app, subnet, web_group, drill_group)

    zone_id = spec.hosted_zone_id or _zone_with_records(client("route53"), spec)
    alarm = None
    if spec.dns_mode is DnsMode.FAILOVER:
        alarm = failover_alarm(app)
        client("cloudwatch").put_metric_alarm(
            AlarmName=alarm,
            Namespace=METRICS_NAMESPACE,
            MetricName=FAILOVER_METRIC,
            Dimensions=[{"Name": "App", "Value": app}],
            Statistic="Minimum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="LessThanThreshold",
            TreatMissingData="ignore",
        )
    manifest = StandbyManifest(
        app=app,
        region=spec.region,
        backup_bucket=bucket,
        database_secret=secret["ARN"],
        app_database_secret=app_secret,
        database_instance=f"{app}-standby",  # as StandbyDatabase names it
        sanity_sql=spec.sanity_sql,
        topic_arn=topic,
        cluster=cluster,
        services=services,
        subnets=(subnet,),
        task_security_group=group,
        load_balancer_dns=spec.load_balancer_dns,
        load_balancer_zone_id="Z35SXDOTRQ7X7K",
        target_group_arn=web_group,
        drill_database_secret=drill_secret,
        drill_target_group_arn=drill_group,
        drill_rule_arn=drill_rule,
        settings_secret=settings_secret,
        primary_database_secret=primary_secret,
        backup_mac_key=mac_key,
        runbook_mac_key=runbook_key,
        ai=spec.ai,
        hosted_zone_id=zone_id,
        dns_mode=spec.dns_mode,
        records=tuple({"hostname": h, "heroku_target": t} for h, t in spec.records.items()),
        failover_alarm=alarm,
        base_mode=spec.mode,
        second_region=spec.second_region,
        primary_formation={
            kind: {"quantity": n, "size": (spec.sizes or {}).get(kind, "Standard-1X")}
            for kind, n in spec.formation.items()
        },
        setting_names=tuple(sorted(k for k in (spec.app_settings or {}) if mirrored_setting(k))),
        image=image,
        postgres_version=int(engine_version.split(".")[0]),
    )
    client("ssm").put_parameter(
        Name=manifest_parameter(app), Value=manifest.to_json(), Type="String", Overwrite=True
    )
    return manifest


# A read of every service a world uses: the first call to each loads its models in moto and botocore (over
# two seconds in all, mostly JSON), which a caller can pay in a thread while it waits on something else.
WARM_UP_CALLS: Final = (
    ("ssm", "describe_parameters"),
    ("ec2", "describe_vpcs"),
    ("rds", "describe_db_instances"),
    ("ecs", "list_clusters"),
    ("elbv2", "describe_target_groups"),
    ("kms", "list_keys"),
    ("route53", "list_hosted_zones"),
    ("s3", "list_buckets"),
    ("dynamodb", "list_tables"),
    ("secretsmanager", "list_secrets"),
    ("sns", "list_topics"),
)


def warm_up(region: str) -> None:
    """Make the first world in `region` as quick to build as the next (see WARM_UP_CALLS)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    for service, call in WARM_UP_CALLS:
        getattr(_client(service, region, endpoint), call)()


@cache
def _client(service: str, region: str, endpoint: str | None) -> Any:
    """One client per service, region and endpoint for the life of the process: a test session builds
    hundreds of worlds, and making a client costs about as much as a call."""
    return boto3.client(service, region_name=region, endpoint_url=endpoint)  # type: ignore[call-overload]


def _server_version(database_url: str) -> str:
    """The version of the PostgreSQL server the world's standby database lives on (its maintenance DB);
    a world whose database is nowhere (the AI switch's) gets UNREACHED_ENGINE."""
    server = parse_database_url(database_url, "the world's database URL").with_dbname("postgres")
    try:
        with server.connect(connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError:
        return UNREACHED_ENGINE
    return str(row[0]).split()[0] if row else UNREACHED_ENGINE


def _zone_with_records(route53: Any, spec: WorldSpec) -> str:
    zone_id = str(
        route53.create_hosted_zone(Name=spec.zone, CallerReference=f"{spec.app}-{spec.zone}")["HostedZone"][
            "Id"
        ]
    )
    zone_id = zone_id.split("/")[-1]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": host,
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": target}],
                    },
                }
                for host, target in spec.records.items()
            ]
        },
    )
    return zone_id


def _drill_rule(elbv2: Any, app: str, subnet: str, web_group: str, drill_group: str) -> str:
    """The load balancer's listener and its drill rule, as StandbyServices declares them (closed)."""
    balancer = elbv2.create_load_balancer(Name=f"{app}-lb"[-32:], Subnets=[subnet], Type="application")
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancers"][0]["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": web_group}],
    )["Listeners"][0]["ListenerArn"]  # fmt: skip
    header = {"HttpHeaderName": DRILL_HEADER, "Values": [DRILL_CLOSED + uuid.uuid4().hex]}
    return str(
        elbv2.create_rule(
            ListenerArn=listener, Priority=1,
            Conditions=[{"Field": "http-header", "HttpHeaderConfig": header}],
            Actions=[{"Type": "forward", "TargetGroupArn": drill_group}],
        )["Rules"][0]["RuleArn"]
    )  # fmt: skip


def replicate_backups(source_bucket: str, destination_bucket: str, region: str) -> None:
    """What S3 replication does between the regions (moto stores the rule but does not replicate)."""
    source = S3Store(source_bucket)
    destination = S3Store(destination_bucket, region)
    for key in source.list_keys("backups/"):
        destination.write_stream(key, source.read_stream(key))
