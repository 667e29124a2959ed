"""The standby stack, run as `pulumi up -s standby` runs it (infra/__main__.py), under mocks, with the
primary's outputs supplied through a mocked StackReference."""

from __future__ import annotations

import json
import runpy
from typing import Any

import pulumi
import pytest

from standby.config.models import Mode
from standby.names import lock_table, manifest_parameter, mode_parameter, runbook_topic
from standby.standby_manifest import StandbyManifest
from tests.conftest import ROOT, sample_config, set_pulumi_config
from tests.pulumi_harness import OPTIONS, Declared, RecordingMocks, is_secret, run_program, unwrap

APP = "acme-shop"
SECRET_VARS = {"SECRET_KEY_BASE": "kb-not-for-logs", "STRIPE_KEY": "sk-not-for-logs"}
PRIMARY_OUTPUTS: dict[str, Any] = {
    "appName": APP,
    "appId": "uuid-acme",
    "appRegion": "us",
    "webUrl": "https://acme-shop.herokuapp.com/",
    "domains": [
        {"hostname": "www.acme-shop.example", "dnsTarget": "www-1.herokudns.com"},
        {"hostname": "api.acme-shop.example", "dnsTarget": "api-1.herokudns.com"},
    ],
    "formation": {
        "web": {"quantity": 3, "size": "Standard-2X"},
        "worker": {"quantity": 2, "size": "Performance-L"},
        "clock": {"quantity": 0, "size": "Standard-1X"},
    },
    "configVarNames": ["LOG_LEVEL", "RACK_ENV", "HEROKU_APP_NAME", *SECRET_VARS],
    "plainConfigVars": {"RACK_ENV": "production", "LOG_LEVEL": "info", "HEROKU_APP_NAME": APP},
    "secretConfigVars": SECRET_VARS,
    "postgresPlan": "premium-4",
    "postgresVersion": 16,
    "postgresAddonName": "postgresql-x",
    "followerAddonName": None,
}


def run_standby(
    mocks: RecordingMocks,
    overrides: dict[str, Any] | None = None,
    live: dict[str, str] | None = None,
    outputs: dict[str, Any] | None = None,
) -> None:
    mocks.stack_outputs = dict(outputs or PRIMARY_OUTPUTS)
    mocks.ssm_parameters = dict(live or {})
    config = sample_config("standby")
    config.update(overrides or {})
    secret_keys = [k for k in config if k in ("standby:herokuApiKey", "standby:secretConfigOverrides")]
    set_pulumi_config(config, secret_keys)
    run_program(lambda: runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__"))


def services(mocks: RecordingMocks, role: str = "standby") -> dict[str, Declared]:
    return {
        d.inputs["name"].removeprefix(f"{APP}-"): d
        for d in mocks.of_type("aws:ecs/service:Service")
        if d.name.startswith(role)
    }


def task_definitions(mocks: RecordingMocks, role: str = "standby") -> dict[str, Declared]:
    return {
        d.inputs["family"].removeprefix(f"{APP}-"): d
        for d in mocks.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if d.name.startswith(role)
    }


def test_every_process_type_gets_a_service_of_the_mapped_fargate_size(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks)
    tasks = task_definitions(pulumi_mocks)
    assert set(services(pulumi_mocks)) == {"web", "worker", "clock"}
    assert (tasks["web"].inputs["cpu"], tasks["web"].inputs["memory"]) == ("512", "1024")  # Standard-2X
    assert (tasks["worker"].inputs["cpu"], tasks["worker"].inputs["memory"]) == (
        "8192",
        "16384",
    )  # Performance-L
    assert (tasks["clock"].inputs["cpu"], tasks["clock"].inputs["memory"]) == ("256", "512")
    assert json.loads(tasks["worker"].inputs["containerDefinitions"])[0]["entryPoint"] == [
        "/cnb/process/worker"
    ]


@pytest.mark.parametrize(
    ("mode", "desired", "database_class"),
    [
        ("pilot-light", {"web": 0, "worker": 0, "clock": 0}, "db.t4g.small"),
        ("warm", {"web": 1, "worker": 1, "clock": 0}, "db.r7g.xlarge"),
        ("active", {"web": 3, "worker": 2, "clock": 0}, "db.r7g.xlarge"),
    ],
)
def test_each_mode_gives_its_desired_counts_and_database(
    pulumi_mocks: RecordingMocks, mode: str, desired: dict[str, int], database_class: str
) -> None:
    run_standby(pulumi_mocks, {"standby:mode": mode})
    assert {t: int(s.inputs["desiredCount"]) for t, s in services(pulumi_mocks).items()} == desired
    databases = [d for d in pulumi_mocks.of_type("aws:rds/instance:Instance") if d.region_role == "standby"]
    assert [d.inputs["instanceClass"] for d in databases] == [database_class]
    assert databases[0].inputs["multiAz"] is (mode != "pilot-light")  # premium is an HA tier
    assert databases[0].inputs["engineVersion"] == "16"
    assert databases[0].inputs["allocatedStorage"] == 768


def test_the_live_mode_set_by_a_cutover_wins_over_the_config(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks, {"standby:mode": "warm"}, live={mode_parameter(APP): "active"})
    assert {t: int(s.inputs["desiredCount"]) for t, s in services(pulumi_mocks).items()} == {
        "web": 3,
        "worker": 2,
        "clock": 0,
    }
    records = [r for r in pulumi_mocks.of_type("aws:route53/record:Record") if r.name.startswith("dns-")]
    assert {r.inputs["type"] for r in records} == {"A"}  # DNS stays on the load balancer
    assert all(r.inputs["aliases"][0]["name"].endswith("elb.amazonaws.com") for r in records)


def test_dns_points_at_heroku_with_a_60s_ttl_until_a_cutover(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks)
    records = {
        r.inputs["name"]: r.inputs
        for r in pulumi_mocks.of_type("aws:route53/record:Record")
        if r.name.startswith("dns-")
    }
    assert records["www.acme-shop.example"]["records"] == ["www-1.herokudns.com"]
    assert records["www.acme-shop.example"]["ttl"] == 60
    assert records["api.acme-shop.example"]["type"] == "CNAME"


def test_failover_mode_declares_primary_and_secondary_records_following_an_alarm(
    pulumi_mocks: RecordingMocks,
) -> None:
    run_standby(pulumi_mocks, {"standby:dns": "failover"})
    records = [
        r.inputs for r in pulumi_mocks.of_type("aws:route53/record:Record") if r.name.startswith("dns-www")
    ]
    assert sorted(r["failoverRoutingPolicies"][0]["type"] for r in records) == ["PRIMARY", "SECONDARY"]
    (check,) = [
        h.inputs
        for h in pulumi_mocks.of_type("aws:route53/healthCheck:HealthCheck")
        if h.name.startswith("dns-")
    ]
    assert check["type"] == "CLOUDWATCH_METRIC"
    assert check["cloudwatchAlarmName"] == f"{APP}-primary-in-service"
    alarm = pulumi_mocks.named("dns-primary-in-service").inputs
    assert alarm["treatMissingData"] == "ignore"


def test_config_vars_become_one_secret_with_overrides_applied(pulumi_mocks: RecordingMocks) -> None:
    run_standby(
        pulumi_mocks,
        {
            "standby:configOverrides": {"RACK_ENV": "standby"},
            "standby:secretConfigOverrides": {"REDIS_URL": "redis://x"},
        },
    )
    (settings,) = [
        d
        for d in pulumi_mocks.of_type("aws:secretsmanager/secretVersion:SecretVersion")
        if d.name == "standby-region-services-settings-value"
    ]
    assert is_secret(settings.inputs["secretString"])
    values = json.loads(unwrap(settings.inputs["secretString"]))
    assert values["RACK_ENV"] == "standby"  # override
    assert values["REDIS_URL"] == "redis://x"  # secret override
    assert values["STRIPE_KEY"] == "sk-not-for-logs"  # mirrored secret
    assert "HEROKU_APP_NAME" not in values and "DATABASE_URL" not in values  # must differ on AWS
    web = json.loads(task_definitions(pulumi_mocks)["web"].inputs["containerDefinitions"])[0]
    injected = {s["name"]: s["valueFrom"] for s in web["secrets"]}
    assert set(injected) == {
        "LOG_LEVEL",
        "RACK_ENV",
        "REDIS_URL",
        "SECRET_KEY_BASE",
        "STRIPE_KEY",
        "DATABASE_URL",
    }
    assert injected["STRIPE_KEY"].endswith(":STRIPE_KEY::")
    assert "sk-not-for-logs" not in json.dumps(web)


def test_resources_exist_in_both_regions(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks)
    providers = {
        d.name: d.inputs.get("region") for d in pulumi_mocks.declared if d.typ == "pulumi:providers:aws"
    }
    assert providers == {"aws-standby": "us-east-2", "aws-second": "us-west-2", "aws-global": "us-east-1"}
    for typ in (
        "aws:s3/bucket:Bucket",
        "aws:ec2/vpc:Vpc",
        "aws:ecs/cluster:Cluster",
        "aws:ssm/parameter:Parameter",
        "aws:dynamodb/table:Table",
    ):
        assert {d.region_role for d in pulumi_mocks.of_type(typ)} >= {"standby", "second"}, typ
    # The second region is ready but holds no database unless asked.
    assert [d.region_role for d in pulumi_mocks.of_type("aws:rds/instance:Instance")] == ["standby"]
    assert not [s for s in services(pulumi_mocks, "second").values() if int(s.inputs["desiredCount"])]


def test_the_second_region_database_is_declared_when_configured(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks, {"standby:secondRegionDatabase": "true"})
    assert sorted(d.region_role for d in pulumi_mocks.of_type("aws:rds/instance:Instance")) == [
        "second",
        "standby",
    ]


def test_the_manifest_holds_what_the_runbooks_need_in_both_regions(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks)
    manifests = [
        d
        for d in pulumi_mocks.of_type("aws:ssm/parameter:Parameter")
        if d.inputs["name"] == manifest_parameter(APP)
    ]
    assert sorted(d.region_role for d in manifests) == ["second", "standby"]
    text = unwrap(next(d for d in manifests if d.region_role == "standby").inputs["value"])
    parsed = StandbyManifest.from_json(text)  # what the runbooks read: strict, every key known
    assert parsed.region == "us-east-2" and parsed.second_region == "us-west-2"
    assert parsed.base_mode is Mode.WARM and parsed.lock_table == lock_table(APP)
    second = StandbyManifest.from_json(
        unwrap(next(d for d in manifests if d.region_role == "second").inputs["value"])
    )
    assert (second.region, second.second_region) == ("us-west-2", "us-east-2")
    manifest = json.loads(text)
    for key in (
        "backup_bucket",
        "database_secret",
        "cluster",
        "services",
        "lock_table",
        "topic_arn",
        "load_balancer_dns",
        "hosted_zone_id",
        "records",
        "mode_parameter",
        "backup_task_definition",
        "subnets",
        "rpo_seconds",
    ):
        assert manifest[key], key
    assert manifest["schema_version"] == 1
    assert manifest["services"] == {"web": f"{APP}-web", "worker": f"{APP}-worker", "clock": f"{APP}-clock"}
    assert manifest["records"][0] == {
        "hostname": "www.acme-shop.example",
        "heroku_target": "www-1.herokudns.com",
    }
    text = json.dumps(manifest)
    assert "mock-password-not-for-logs" not in text and "sk-not-for-logs" not in text


def test_a_drill_has_its_secret_target_group_and_header_rule_named_in_the_manifest(
    pulumi_mocks: RecordingMocks,
) -> None:
    run_standby(pulumi_mocks)
    standby = [d for d in pulumi_mocks.of_type("aws:ssm/parameter:Parameter") if d.region_role == "standby"]
    manifest = json.loads(
        unwrap(next(d for d in standby if d.inputs["name"] == manifest_parameter(APP)).inputs["value"])
    )
    secret = next(
        d for d in pulumi_mocks.of_type("aws:secretsmanager/secret:Secret")
        if d.inputs["name"] == f"standby/{APP}/drill-database-url" and d.region_role == "standby"
    )  # fmt: skip
    assert manifest["drill_database_secret"] == f"arn:aws:mock:::secretsmanager/secret/{secret.name}"
    # The task execution role may read it, or the drill's task could not start.
    policies = [
        d
        for d in pulumi_mocks.of_type("aws:iam/rolePolicy:RolePolicy")
        if d.name.endswith("-execution-secrets")
    ]
    assert any(secret.name in json.dumps(unwrap(d.inputs["policy"])) for d in policies)
    rule = next(
        d for d in pulumi_mocks.of_type("aws:lb/listenerRule:ListenerRule") if d.region_role == "standby"
    )
    # Closed with a random value nobody holds (never the app's guessable name); each drill sets its own,
    # and `pulumi up` leaves the value to the drills.
    (condition,) = unwrap(rule.inputs["conditions"])
    assert condition["httpHeader"]["httpHeaderName"] == "X-Standby-Drill"
    (value,) = [unwrap(v) for v in condition["httpHeader"]["values"]]
    assert value == "closed-mock-password-not-for-logs" and APP not in value
    assert OPTIONS[rule.name].ignore_changes == ["conditions"]
    assert manifest["drill_rule_arn"] == f"arn:aws:mock:::lb/listenerRule/{rule.name}"
    drill_group = unwrap(rule.inputs["actions"])[0]["targetGroupArn"]
    assert manifest["drill_target_group_arn"] == drill_group
    assert drill_group != manifest["target_group_arn"]  # production's target group is never touched


def test_an_apex_domain_is_refused(pulumi_mocks: RecordingMocks) -> None:
    outputs = dict(PRIMARY_OUTPUTS)
    outputs["domains"] = [{"hostname": "acme-shop.example", "dnsTarget": "apex.herokudns.com"}]
    with pytest.raises(
        pulumi.RunError, match=r"acme-shop\.example is the zone apex.*Serve the app on a subdomain"
    ):
        run_standby_with(pulumi_mocks, outputs)


def run_standby_with(mocks: RecordingMocks, outputs: dict[str, Any]) -> None:
    config = sample_config("standby")
    set_pulumi_config(config, [])
    mocks.stack_outputs = outputs
    run_program(lambda: runpy.run_path(str(ROOT / "infra" / "__main__.py"), run_name="__main__"))


def test_the_ai_provider_a_switch_chose_wins_over_the_primary_s_declared_one(
    pulumi_mocks: RecordingMocks,
) -> None:
    ai = {
        "active": "openai",
        "providerSetting": "AI_PROVIDER",
        "providers": {"openai": {"keyVar": "OPENAI_API_KEY"}, "anthropic": {"keyVar": "ANTHROPIC_API_KEY"}},
        "models": {"AI_MODEL": {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5"}},
    }
    outputs = dict(PRIMARY_OUTPUTS, ai=ai)
    outputs["plainConfigVars"] = {
        **PRIMARY_OUTPUTS["plainConfigVars"],
        "AI_PROVIDER": "openai",
        "AI_MODEL": "gpt-4o",
    }
    outputs["configVarNames"] = [*PRIMARY_OUTPUTS["configVarNames"], "AI_PROVIDER", "AI_MODEL"]

    def settings_after(live: dict[str, str]) -> dict[str, str]:
        pulumi_mocks.declared.clear()
        run_standby(pulumi_mocks, live=live, outputs=outputs)
        (version,) = [d for d in pulumi_mocks.of_type("aws:secretsmanager/secretVersion:SecretVersion")
                      if d.name == "standby-region-services-settings-value"]  # fmt: skip
        return dict(json.loads(unwrap(version.inputs["secretString"])))

    assert settings_after({})["AI_PROVIDER"] == "openai"
    switched = settings_after({f"/standby/{APP}/ai-provider": "anthropic"})
    assert (switched["AI_PROVIDER"], switched["AI_MODEL"]) == ("anthropic", "claude-sonnet-4-5")
    manifest = json.loads(unwrap(next(
        d for d in pulumi_mocks.of_type("aws:ssm/parameter:Parameter")
        if d.inputs["name"] == manifest_parameter(APP) and d.region_role == "standby").inputs["value"]))  # fmt: skip
    assert manifest["ai"]["models"] == ai["models"] and manifest["settings_secret"]


def test_the_people_alerted_also_hear_of_every_runbook_in_both_regions(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks)
    emails = sample_config("standby")["standby:alertEmails"]
    topics = {
        d.name: d.region_role
        for d in pulumi_mocks.of_type("aws:sns/topic:Topic")
        if d.inputs.get("name") == runbook_topic(APP)
    }
    assert sorted(topics.values()) == ["second", "standby"]
    subscribed = [
        (d.region_role, d.inputs["endpoint"])
        for d in pulumi_mocks.of_type("aws:sns/topicSubscription:TopicSubscription")
        if "runbook-email" in d.name
    ]
    assert sorted(subscribed) == sorted((role, e) for role in ("second", "standby") for e in emails)


def test_warm_mode_restores_each_completed_backup_ahead_and_stands_down_once_live(
    pulumi_mocks: RecordingMocks,
) -> None:
    keyed = {"standby:mode": "warm", "standby:herokuApiKey": "heroku-key-not-for-logs"}
    run_standby(pulumi_mocks, keyed)
    rules = [
        r for r in pulumi_mocks.of_type("aws:cloudwatch/eventRule:EventRule") if "restore-ahead" in r.name
    ]
    assert [r.region_role for r in rules] == ["standby"]
    pattern = json.loads(rules[0].inputs["eventPattern"])
    assert pattern["detail"]["group"] == [f"family:{APP}-backup"]
    assert pattern["detail"]["lastStatus"] == ["STOPPED"] and pattern["detail"]["containers"] == {
        "exitCode": [0]
    }
    task = task_definitions(pulumi_mocks)["restore-ahead"]
    container = json.loads(task.inputs["containerDefinitions"])[0]
    assert container["entryPoint"] == ["python", "scripts/restore.py"]
    assert container["command"] == ["--app", APP, "--ahead", "--yes"]
    (target,) = [
        t for t in pulumi_mocks.of_type("aws:cloudwatch/eventTarget:EventTarget") if "restore-ahead" in t.name
    ]
    assert target.inputs["ecsTarget"]["taskDefinitionArn"].endswith("restore-ahead-task")
    # The backup follows the live side: it may read the standby database's URL.
    backup_policy = json.loads(pulumi_mocks.named("standby-region-services-backup-policy").inputs["policy"])
    assert any("secretsmanager:GetSecretValue" in s["Action"] for s in backup_policy["Statement"])
    # ... and keep Heroku's DATABASE_URL for a cutover with Heroku's API dark.
    assert any("secretsmanager:PutSecretValue" in s["Action"] for s in backup_policy["Statement"])
    manifest = json.loads(unwrap(pulumi_mocks.named("standby-region-runbooks-manifest").inputs["value"]))
    assert manifest["primary_database_secret"].endswith("heroku-database-url")

    pulumi_mocks.declared.clear()
    run_standby(pulumi_mocks, keyed, live={mode_parameter(APP): "active"})
    assert [
        r for r in pulumi_mocks.of_type("aws:cloudwatch/eventRule:EventRule") if "restore-ahead" in r.name
    ] == []
    assert pulumi_mocks.of_type("aws:scheduler/schedule:Schedule")  # the backups go on, from the standby
    assert "restore-ahead" not in task_definitions(pulumi_mocks)


def test_the_databases_buckets_and_keys_are_protected_from_replacement_and_deletion(
    pulumi_mocks: RecordingMocks,
) -> None:
    run_standby(pulumi_mocks, {"standby:secondRegionDatabase": True})
    kept = [
        *pulumi_mocks.of_type("aws:s3/bucket:Bucket"),
        *pulumi_mocks.of_type("aws:kms/key:Key"),
        *pulumi_mocks.of_type("aws:rds/instance:Instance"),
    ]
    assert {d.region_role for d in kept} == {"standby", "second"}
    for declared in kept:
        # The second region's database comes and goes with the live mode; its deletion protection stays.
        protected = declared.region_role == "standby" or declared.typ != "aws:rds/instance:Instance"
        assert OPTIONS[declared.name].protect is protected, declared.name
        assert OPTIONS[declared.name].retain_on_delete is protected, declared.name


def test_the_lifecycle_rule_expires_only_what_the_retention_tagged(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks)
    for lifecycle in pulumi_mocks.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"):
        expiring = [
            r for r in lifecycle.inputs["rules"] if "expiration" in r or "noncurrentVersionExpiration" in r
        ]
        assert expiring and all(
            r["filter"]["and"]["tags"] == {"standby-retention": "expirable"} for r in expiring
        ), "a rule by age alone could delete the last good backup"


def test_the_app_tasks_connect_as_the_application_role_never_the_master_user(
    pulumi_mocks: RecordingMocks,
) -> None:
    run_standby(pulumi_mocks)
    secrets = {
        d.inputs["name"]: d
        for d in pulumi_mocks.of_type("aws:secretsmanager/secret:Secret")
        if d.region_role == "standby"
    }
    app, master = secrets[f"standby/{APP}/app-database-url"], secrets[f"standby/{APP}/database-url"]
    for definition in task_definitions(pulumi_mocks).values():
        if definition.inputs["family"].endswith("-backup"):
            continue
        (container,) = json.loads(unwrap(definition.inputs["containerDefinitions"]))
        urls = [s["valueFrom"] for s in container["secrets"] if s["name"] == "DATABASE_URL"]
        assert urls == [f"arn:aws:mock:::secretsmanager/secret/{app.name}"], definition.inputs["family"]
    execution = next(
        d
        for d in pulumi_mocks.of_type("aws:iam/rolePolicy:RolePolicy")
        if d.name.endswith("-execution-secrets") and d.region_role == "standby"
    )
    readable = json.dumps(unwrap(execution.inputs["policy"]))
    assert f"secret/{app.name}" in readable and f"secret/{master.name}" not in readable
    versions = {
        d.name: unwrap(d.inputs["secretString"])
        for d in pulumi_mocks.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    assert str(versions["standby-region-database-app-url-value"]).startswith("postgres://app_user:")


def test_the_backup_tasks_reach_only_https_and_postgresql(pulumi_mocks: RecordingMocks) -> None:
    run_standby(pulumi_mocks, {"standby:herokuApiKey": "heroku-key-not-for-logs"})
    (schedule,) = [
        s
        for s in pulumi_mocks.of_type("aws:scheduler/schedule:Schedule")
        if s.inputs["name"] == f"{APP}-standby-backup"
    ]
    (group_id,) = schedule.inputs["target"]["ecsParameters"]["networkConfiguration"]["securityGroups"]
    group = next(
        g for g in pulumi_mocks.of_type("aws:ec2/securityGroup:SecurityGroup") if f"{g.name}-id" == group_id
    )
    assert sorted((e["protocol"], e["fromPort"], e["toPort"]) for e in group.inputs["egress"]) == [
        ("tcp", 443, 443),
        ("tcp", 5432, 5432),
    ]
    assert not group.inputs.get("ingress")
    database = next(
        g
        for g in pulumi_mocks.of_type("aws:ec2/securityGroup:SecurityGroup")
        if g.name.endswith("-database") and g.region_role == "standby"
    )
    assert group_id in database.inputs["ingress"][0]["securityGroups"]  # it dumps the standby once live


def test_the_backup_task_has_two_cores_and_takes_the_configured_streams(pulumi_mocks: RecordingMocks) -> None:
    """Two cores compress two streams of a large database at once; backupStreams: 1 keeps one file."""
    run_standby(
        pulumi_mocks, {"standby:herokuApiKey": "heroku-key-not-for-logs", "standby:backupStreams": "1"}
    )
    tasks = [
        t
        for t in pulumi_mocks.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if t.inputs["family"] == f"{APP}-backup"
    ]
    assert tasks and {(t.inputs["cpu"], t.inputs["memory"]) for t in tasks} == {("2048", "4096")}
    for task in tasks:
        (container,) = json.loads(task.inputs["containerDefinitions"])
        assert container["command"] == ["--app", APP, "--streams", "1"]


def test_the_operator_role_trusts_the_configured_principals_or_the_account_with_mfa(
    pulumi_mocks: RecordingMocks,
) -> None:
    run_standby(pulumi_mocks)
    (role,) = [r for r in pulumi_mocks.of_type("aws:iam/role:Role") if r.name == "operator"]
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"AWS": ["arn:aws:iam::123456789012:root"]}
    assert trust["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    attached = pulumi_mocks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert sorted(a.name for a in attached if a.name.startswith("operator-")) == [
        "operator-second",
        "operator-standby",
    ]

    pulumi_mocks.declared.clear()
    run_standby(pulumi_mocks, {"standby:operators": ["arn:aws:iam::123456789012:role/oncall"]})
    (role,) = [r for r in pulumi_mocks.of_type("aws:iam/role:Role") if r.name == "operator"]
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert (
        trust["Principal"] == {"AWS": ["arn:aws:iam::123456789012:role/oncall"]} and "Condition" not in trust
    )


def test_only_their_writers_may_sign_with_the_mac_keys_whatever_iam_grants(
    pulumi_mocks: RecordingMocks,
) -> None:
    run_standby(pulumi_mocks, {"standby:herokuApiKey": "heroku-key-not-for-logs", "standby:mode": "warm"})
    policies = {
        d.name: json.loads(unwrap(d.inputs["policy"]))
        for d in pulumi_mocks.of_type("aws:kms/keyPolicy:KeyPolicy")
    }
    roles = {r.name: f"arn:aws:mock:::iam/role/{r.name}" for r in pulumi_mocks.of_type("aws:iam/role:Role")}

    def who(policy: dict[str, Any], action: str) -> set[str]:
        return {
            p for s in policy["Statement"] if action in s["Action"] for p in _listed(s["Principal"]["AWS"])
        }

    backup, runbook = (
        policies["standby-region-backup-mac-policy"],
        policies["standby-region-runbook-mac-policy"],
    )
    assert who(backup, "kms:GenerateMac") == {roles["standby-region-services-backup"], roles["operator"]}
    assert who(backup, "kms:VerifyMac") == who(backup, "kms:GenerateMac") | {
        roles["standby-region-restore-ahead-role"],
        roles["standby-region-readiness-role"],  # the status task verifies the backups it reports on
    }
    assert who(runbook, "kms:GenerateMac") == who(runbook, "kms:VerifyMac") == {roles["operator"]}
    for policy in policies.values():  # the account administers the keys, through IAM, but cannot use them
        admin, *replicate = [
            s for s in policy["Statement"] if s["Principal"]["AWS"] == "arn:aws:iam::123456789012:root"
        ]
        forbidden = ("kms:GenerateMac", "kms:VerifyMac", "kms:CreateGrant", "kms:ReplicateKey")
        assert not [a for a in admin["Action"] if a in forbidden or a.endswith("*")]
        # A replica holds the same key material under its own policy: only the one in the second region.
        assert [(s["Action"], s["Condition"]) for s in replicate] in (
            [],
            [(["kms:ReplicateKey"], {"StringEquals": {"kms:ReplicaRegion": "us-west-2"}})],
        )
    assert {n.split("-")[0] for n in policies} == {"standby", "second"}  # the replicas have theirs too


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
