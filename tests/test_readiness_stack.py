"""The readiness checks, pushed (issue 17): the standby stack runs the status task after each backup and
daily, alarms on critical checks and on silence, and shows them on a dashboard; the status role reads only.

The standby program runs once for the module under mocks (these tests only read what it declared); the
readiness reader's duty is evaluated with `standby.aws.access` on a sample manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from standby.aws import duties
from standby.aws.access import Request, allows, statements_of
from standby.metrics import BACKUP_AGE as BACKUP_METRIC_AGE
from standby.names import BACKUP_METRICS_NAMESPACE, METRICS_NAMESPACE, READINESS_NAMESPACE, manifest_parameter
from standby.readiness.check import CHECKS
from standby.readiness.publish import (
    BACKUP_AGE,
    CHECK_LEVEL,
    DRILL_AGE,
    RESTORE_THROUGHPUT,
    RTO_FORECAST,
    SCORE,
)
from standby.security_rules import WRITES
from standby.standby_manifest import StandbyManifest
from tests.conftest import sample_config
from tests.pulumi_harness import Declared, RecordingMocks, unwrap
from tests.test_standby_stack import APP, PRIMARY_OUTPUTS, run_standby, task_definitions

STANDBY, SECOND = "us-east-2", "us-west-2"
# Values unlike the defaults, so the manifest shows the config's, not the dataclass's.
OVERRIDES: dict[str, Any] = {
    "standby:herokuApiKey": "heroku-key-not-for-logs",
    "standby:drillIntervalDays": 21,
    "standby:backupIntervalMinutes": 10,
    "standby:rtoMinutes": 40,
    "standby:configOverrides": {"RACK_ENV": "standby"},
    "standby:secretConfigOverrides": {"REDIS_URL": "redis-secret-not-for-logs"},
}
STATUS_TASK = "arn:aws:mock:::ecs/taskDefinition/standby-region-readiness-task"  # the mocks' ARN
ALERT_TOPIC = "arn:aws:mock:::sns/topic/monitoring-alerts"


def _run(live: dict[str, str] | None = None) -> RecordingMocks:
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="standby", stack="test", preview=False)
    try:
        run_standby(mocks, OVERRIDES, live=live)
    finally:
        pulumi.runtime.set_all_config({}, [])
    return mocks


@pytest.fixture(scope="module")
def declared() -> Iterator[RecordingMocks]:
    """The standby program as `pulumi up` runs it with a Heroku key (so with the backup schedule)."""
    yield _run()


def _status_task(mocks: RecordingMocks) -> Declared:
    (task,) = [
        t
        for t in mocks.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if t.inputs["family"] == f"{APP}-status"
    ]
    return task


def _alarms(mocks: RecordingMocks, metric: str) -> list[dict[str, Any]]:
    found = mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    return [
        a.inputs
        for a in found
        if a.inputs.get("namespace") == READINESS_NAMESPACE and a.inputs["metricName"] == metric
    ]


def _readiness_policy(mocks: RecordingMocks) -> Declared:
    (policy,) = [
        p
        for p in mocks.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.inputs.get("name") == "readiness-reader"
    ]
    return policy


def test_the_status_task_runs_status_py_in_the_backup_image_with_the_heroku_key(
    declared: RecordingMocks,
) -> None:
    task = _status_task(declared)
    assert task.region_role == "standby"
    (container,) = json.loads(task.inputs["containerDefinitions"])
    assert container["image"] == sample_config("standby")["standby:backupImage"]
    # The image's entry point is the backup script: the task replaces it with the status command.
    assert [*container["entryPoint"], *container["command"]] == [
        "python", "scripts/status.py", "--app", APP, "--region", STANDBY, "--publish"
    ]  # fmt: skip
    backup = json.loads(task_definitions(declared)["backup"].inputs["containerDefinitions"])[0]
    assert container["secrets"] == backup["secrets"] == [
        {"name": "HEROKU_API_KEY", "valueFrom": "arn:aws:mock:::secretsmanager/secret/standby-region-services-heroku-key"}
    ]  # fmt: skip
    assert container["logConfiguration"]["options"]["awslogs-group"] == f"/standby/{APP}"
    assert task.inputs["taskRoleArn"] == "arn:aws:mock:::iam/role/standby-region-readiness-role"
    assert "heroku-key-not-for-logs" not in json.dumps(task.inputs)


def test_each_completed_backup_starts_the_status_task(declared: RecordingMocks) -> None:
    (rule,) = [r for r in declared.of_type("aws:cloudwatch/eventRule:EventRule") if "readiness" in r.name]
    detail = json.loads(rule.inputs["eventPattern"])["detail"]
    assert detail["group"] == [f"family:{APP}-backup"]
    assert (detail["lastStatus"], detail["containers"]) == (["STOPPED"], {"exitCode": [0]})
    (target,) = [
        t for t in declared.of_type("aws:cloudwatch/eventTarget:EventTarget") if "readiness" in t.name
    ]
    assert target.inputs["ecsTarget"]["taskDefinitionArn"] == STATUS_TASK
    # Its role may start that task on that cluster and pass its two roles, nothing more.
    events = statements_of([declared.named("standby-region-readiness-events-policy").inputs["policy"]])
    assert [s["Action"] for s in events] == [["ecs:RunTask"], ["iam:PassRole"]]
    assert events[0]["Resource"] == [STATUS_TASK]
    assert events[1]["Resource"] == [
        "arn:aws:mock:::iam/role/standby-region-services-execution", "arn:aws:mock:::iam/role/standby-region-readiness-role"
    ]  # fmt: skip


def test_the_status_task_also_runs_daily(declared: RecordingMocks) -> None:
    (daily,) = [
        s.inputs for s in declared.of_type("aws:scheduler/schedule:Schedule") if "status" in s.inputs["name"]
    ]
    assert daily["name"] == f"{APP}-standby-status-daily"
    assert daily["scheduleExpression"] == "rate(1 day)"
    assert daily["target"]["ecsParameters"]["taskDefinitionArn"] == STATUS_TASK
    assert daily["target"]["roleArn"] == "arn:aws:mock:::iam/role/standby-region-readiness-scheduler"


def test_every_check_alarms_to_the_alert_topic_when_critical(declared: RecordingMocks) -> None:
    alarms = _alarms(declared, CHECK_LEVEL)
    assert sorted(a["dimensions"]["Check"] for a in alarms) == sorted(CHECKS)
    for alarm in alarms:
        assert alarm["dimensions"]["App"] == APP
        assert (alarm["statistic"], alarm["period"], alarm["evaluationPeriods"]) == ("Maximum", 3600, 1)
        assert (alarm["comparisonOperator"], alarm["threshold"]) == ("GreaterThanOrEqualToThreshold", 2)
        assert alarm["treatMissingData"] == "notBreaching"  # silence has an alarm of its own
        assert alarm["alarmActions"] == alarm["okActions"] == [ALERT_TOPIC]


def test_a_status_task_that_stopped_running_alarms(declared: RecordingMocks) -> None:
    (silent,) = _alarms(declared, SCORE)
    assert silent["name"] == f"{APP}-readiness-silent"
    assert (silent["statistic"], silent["period"], silent["evaluationPeriods"]) == ("SampleCount", 3600, 25)
    assert (silent["comparisonOperator"], silent["threshold"]) == ("LessThanThreshold", 1)
    assert silent["treatMissingData"] == "breaching"
    assert silent["alarmActions"] == [ALERT_TOPIC]


def test_the_dashboard_shows_backups_restores_drills_the_forecast_and_every_check(
    declared: RecordingMocks,
) -> None:
    (dashboard,) = declared.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == f"{APP}-standby-readiness"
    widgets = [w["properties"] for w in json.loads(dashboard.inputs["dashboardBody"])["widgets"]]
    assert {w["region"] for w in widgets} == {STANDBY}

    def series(widget: dict[str, Any]) -> set[tuple[str, ...]]:
        return {tuple(str(p) for p in m if not isinstance(p, dict)) for m in widget["metrics"]}

    def widget(metric: str) -> dict[str, Any]:
        return next(w for w in widgets if any(m[1] == metric for m in w["metrics"]))

    shown = set().union(*(series(w) for w in widgets))
    app = ("App", APP)
    assert {(BACKUP_METRICS_NAMESPACE, BACKUP_METRIC_AGE, *app), (READINESS_NAMESPACE, BACKUP_AGE, *app),
            (READINESS_NAMESPACE, RESTORE_THROUGHPUT, *app), (READINESS_NAMESPACE, DRILL_AGE, *app),
            (READINESS_NAMESPACE, RTO_FORECAST, *app), (READINESS_NAMESPACE, SCORE, *app)} <= shown  # fmt: skip
    assert (READINESS_NAMESPACE, CHECK_LEVEL, *app, "Check", "drill") in series(widget(DRILL_AGE))
    levels = {s[-1] for s in shown if s[1] == CHECK_LEVEL}
    assert levels == set(CHECKS)
    assert widget(RTO_FORECAST)["annotations"]["horizontal"][0]["value"] == 40 * 60  # rtoMinutes
    assert widget(SCORE)["annotations"]["horizontal"][0]["value"] == 100


def test_the_manifest_records_what_the_standby_was_built_from(declared: RecordingMocks) -> None:
    (parameter,) = [
        p for p in declared.of_type("aws:ssm/parameter:Parameter")
        if p.inputs["name"] == manifest_parameter(APP) and p.region_role == "standby"
    ]  # fmt: skip
    manifest = StandbyManifest.from_json(unwrap(parameter.inputs["value"]))
    assert manifest.primary_formation == PRIMARY_OUTPUTS["formation"]
    assert manifest.setting_names == ("LOG_LEVEL", "RACK_ENV", "REDIS_URL", "SECRET_KEY_BASE", "STRIPE_KEY")
    assert manifest.override_names == ("RACK_ENV", "REDIS_URL")
    assert manifest.image == sample_config("standby")["standby:image"]
    assert manifest.postgres_version == 16
    assert (manifest.backup_interval_seconds, manifest.drill_interval_days) == (600, 21)
    assert "redis-secret-not-for-logs" not in unwrap(parameter.inputs["value"])


def test_the_status_role_reads_this_region_and_lists_the_second_region_s_replica(
    declared: RecordingMocks,
) -> None:
    policy = _readiness_policy(declared)
    assert policy.region_role == "standby"
    statements = statements_of([policy.inputs["policy"]])
    replica = f"arn:aws:s3:::{APP}-backups-second-region-vault-bucket"
    assert allows(statements, Request("s3:ListBucket", replica, {"s3:prefix": f"backups/{APP}/"}))
    assert allows(statements, Request("s3:GetObject", f"arn:aws:s3:::{APP}-backups-standby-region-vault-bucket/drills/{APP}/x.json"))  # fmt: skip
    # The backup MAC key's own policy names it a verifier, never a signer.
    key_policy = json.loads(declared.named("standby-region-backup-mac-policy").inputs["policy"])
    role = "arn:aws:mock:::iam/role/standby-region-readiness-role"
    granted = {a for s in key_policy["Statement"] if role in s["Principal"]["AWS"] for a in s["Action"]}
    assert granted == {"kms:VerifyMac"}


def test_once_the_second_region_is_live_its_status_task_watches_and_the_standby_region_s_alarms_go() -> None:
    mocks = _run(live={f"/standby/{APP}/mode": "active"})  # the mocks answer it in both regions
    assert _status_task(mocks).region_role == "second"
    statements = statements_of([_readiness_policy(mocks).inputs["policy"]])
    replica = f"arn:aws:s3:::{APP}-backups-standby-region-vault-bucket"
    assert allows(statements, Request("s3:ListBucket", replica, {"s3:prefix": f"backups/{APP}/"}))
    # Alarms act on a topic in their own region: the standby region's would only hear silence.
    assert _alarms(mocks, CHECK_LEVEL) == [] and _alarms(mocks, SCORE) == []


# --- the readiness reader's duty, on a sample manifest -------------------------------------------------

ACCOUNT = "123456789012"
MANIFEST = StandbyManifest(
    app=APP,
    region=STANDBY,
    second_region=SECOND,
    backup_bucket=f"{APP}-backups-1",
    database_secret=f"arn:aws:secretsmanager:{STANDBY}:{ACCOUNT}:secret:standby/{APP}/database-url-a",
    app_database_secret=f"arn:aws:secretsmanager:{STANDBY}:{ACCOUNT}:secret:standby/{APP}/app-database-url-b",
    cluster=f"{APP}-standby",
    services={"web": f"{APP}-web"},
    hosted_zone_id="ZONE123",
    backup_mac_key=f"arn:aws:kms:{STANDBY}:{ACCOUNT}:key/mac",
)
READER = duties.readiness_reader(
    MANIFEST, ACCOUNT, f"arn:aws:kms:{STANDBY}:{ACCOUNT}:key/bucket", f"{APP}-backups-2"
)
BUCKET, REPLICA = f"arn:aws:s3:::{APP}-backups-1", f"arn:aws:s3:::{APP}-backups-2"
BACKUP = f"{BUCKET}/backups/{APP}/20261201T000000Z-abcdef"


def test_the_readiness_reader_reads_manifests_never_a_dump() -> None:
    assert allows(READER, Request("s3:GetObject", f"{BACKUP}/manifest.json"))
    assert allows(READER, Request("s3:GetObject", f"{BACKUP}/failure.json"))
    assert not allows(READER, Request("s3:GetObject", f"{BACKUP}/dump"))
    assert not allows(READER, Request("s3:GetObject", f"{BUCKET}/backups/other-app/x/manifest.json"))
    assert allows(READER, Request("s3:ListBucket", REPLICA, {"s3:prefix": f"backups/{APP}/"}))
    assert not allows(READER, Request("s3:ListBucket", REPLICA, {"s3:prefix": f"runbooks/{APP}/"}))
    assert not allows(READER, Request("s3:GetObject", f"{REPLICA}/backups/{APP}/x/manifest.json"))


def test_the_readiness_reader_publishes_only_in_the_readiness_namespace() -> None:
    def publishes(namespace: str) -> bool:
        return allows(READER, Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace}))

    assert publishes(READINESS_NAMESPACE)
    assert not publishes(METRICS_NAMESPACE) and not publishes(BACKUP_METRICS_NAMESPACE)


def test_the_readiness_reader_reads_the_app_s_database_url_never_the_master_s() -> None:
    assert allows(READER, Request("secretsmanager:GetSecretValue", str(MANIFEST.app_database_secret)))
    assert not allows(READER, Request("secretsmanager:GetSecretValue", str(MANIFEST.database_secret)))


def test_the_readiness_reader_writes_nothing_it_can_name() -> None:
    named = [str(r) for s in READER for r in s["Resource"]]
    written = [
        (action, resource)
        for action in WRITES
        for resource in [*named, f"{BACKUP}/manifest.json", f"{BUCKET}/runbooks/{APP}/cutover/current.json"]
        if allows(READER, Request(action, resource, {"aws:RequestedRegion": STANDBY}))
    ]
    assert written == []
    assert allows(
        READER,
        Request("ssm:GetParameter", f"arn:aws:ssm:{SECOND}:{ACCOUNT}:parameter/standby/{APP}/manifest"),
    )
    assert allows(
        READER, Request("dynamodb:GetItem", f"arn:aws:dynamodb:{STANDBY}:{ACCOUNT}:table/{APP}-standby-locks")
    )
