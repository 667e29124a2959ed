"""Who may do what: each role's policy, evaluated against what its code really calls in the local world
(tests/aws_calls.py) and against what a compromised task would try. The operator's is evaluated on the
calls of the failback test (a cutover and its failback, tests/test_cutover.py) and the drill's; the
readiness reader's in tests/test_status.py, on its ready standby."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from standby.aws import duties
from standby.aws.access import Request, allows, decide, statements_of
from standby.aws.duties import BackupPlace
from standby.commands import backup, restore
from standby.names import BACKUP_METRICS_NAMESPACE, METRICS_NAMESPACE
from standby.standby_manifest import StandbyManifest
from tests.aws_calls import ACCOUNT, record_calls, refused
from tests.pulumi_harness import RecordingMocks
from tests.runbook_scene import Scene
from tests.test_standby_stack import APP, run_standby

STANDBY_REGION = "us-east-2"


def _place(manifest: StandbyManifest) -> BackupPlace:
    return BackupPlace(
        app=manifest.app,
        region=manifest.region,
        account=ACCOUNT,
        bucket_arn=f"arn:aws:s3:::{manifest.backup_bucket}",
        bucket_key_arn=f"arn:aws:kms:{manifest.region}:{ACCOUNT}:key/bucket",
        mac_key_arn=str(manifest.backup_mac_key),
    )


def test_the_backup_writer_allows_every_call_of_a_scheduled_backup(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = scene.manifest
    writer = duties.backup_writer(_place(m), str(m.primary_database_secret), m.database_secret)
    with record_calls(monkeypatch) as calls:
        assert backup.main(["--app", scene.app, "--region", m.region]) == 0
    assert refused(writer, calls) == []
    assert any(c.action == "cloudwatch:PutMetricData" for c in calls)  # the metrics were published


def test_the_restore_reader_allows_every_call_of_a_restore_ahead(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = scene.manifest
    reader = duties.restore_reader(
        _place(m),
        [str(m.database_secret), str(m.app_database_secret)],
        f"arn:aws:dynamodb:{m.region}:{ACCOUNT}:table/{m.lock_table}",
    )
    with record_calls(monkeypatch) as calls:
        assert restore.main(["--app", scene.app, "--region", m.region, "--ahead", "--yes"]) == 0
    assert refused(reader, calls) == []
    assert not [c for c in calls if c.action in ("s3:PutObject", "kms:GenerateMac")]


# --- what a compromised task would try: evaluated on the policies the standby program declares ------


@pytest.fixture(scope="module")
def declared() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """The statements of each duty's policy in the standby region, as `pulumi up` would create them
    (the program runs once for the module: these tests only read what it declared)."""
    pulumi_mocks = RecordingMocks()
    pulumi.runtime.set_mocks(pulumi_mocks, project="standby", stack="test", preview=False)
    try:
        run_standby(pulumi_mocks, {"standby:herokuApiKey": "heroku-key-not-for-logs"})
    finally:
        pulumi.runtime.set_all_config({}, [])
    found: dict[str, list[dict[str, Any]]] = {}
    for policy in pulumi_mocks.of_type("aws:iam/rolePolicy:RolePolicy"):
        if (
            policy.inputs.get("name") in ("backup-writer", "restore-reader")
            and policy.region_role == "standby"
        ):
            found[policy.inputs["name"]] = [dict(s) for s in statements_of([policy.inputs["policy"]])]
    for policy in pulumi_mocks.of_type("aws:iam/policy:Policy"):
        if policy.inputs["name"].endswith(f"-operator-{STANDBY_REGION}"):
            found["operator"] = [dict(s) for s in statements_of([policy.inputs["policy"]])]
    assert set(found) == {"backup-writer", "restore-reader", "operator"}
    yield found


BUCKET = f"arn:aws:s3:::{APP}-backups-standby-region-vault-bucket"  # the mocks' (the allowed cases prove it)
BACKUP = f"{BUCKET}/backups/{APP}/20261201T000000Z-abcdef"
LOCKS = f"arn:aws:dynamodb:{STANDBY_REGION}:123456789012:table/{APP}-standby-locks"
WRITER_REFUSED = {
    "read a backup's dump": Request("s3:GetObject", f"{BACKUP}/dump"),
    "write a journal": Request("s3:PutObject", f"{BUCKET}/runbooks/{APP}/cutover/current.json"),
    "write outside its prefix": Request("s3:PutObject", f"{BUCKET}/backups/other-app/x/manifest.json"),
    "write at the bucket's top": Request("s3:PutObject", f"{BUCKET}/manifest.json"),
    "publish the failover metric": Request(
        "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": METRICS_NAMESPACE}
    ),
    "set the live mode": Request("ssm:PutParameter", f"arn:aws:ssm:{STANDBY_REGION}:123456789012:parameter/standby/{APP}/mode"),
    "list another app's backups": Request("s3:ListBucket", BUCKET, {"s3:prefix": "backups/other-app/"}),
    "take the runbooks' lock": Request("dynamodb:PutItem", LOCKS, {"dynamodb:LeadingKeys": APP}),
    "scan the lock table": Request("dynamodb:Scan", LOCKS),
}  # fmt: skip


def test_the_backup_writer_is_refused_what_would_steer_a_recovery(
    declared: dict[str, list[dict[str, Any]]],
) -> None:
    allowed = [
        attempt
        for attempt, request in WRITER_REFUSED.items()
        if decide(declared["backup-writer"], request) != "not allowed"
    ]
    assert allowed == []


def test_the_backup_writer_still_writes_its_backups_and_signals(
    declared: dict[str, list[dict[str, Any]]],
) -> None:
    writer = declared["backup-writer"]
    assert allows(writer, Request("s3:PutObject", f"{BACKUP}/dump"))
    assert allows(writer, Request("s3:GetObject", f"{BACKUP}/manifest.json"))  # retention reads manifests
    assert allows(
        writer, Request("s3:GetObject", f"{BUCKET}/backups/{APP}/index.json")
    )  # and rewrites the index
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):  # one backup at a time
        assert allows(writer, Request(action, LOCKS, {"dynamodb:LeadingKeys": f"{APP}/backup"}))
    assert allows(
        writer, Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": BACKUP_METRICS_NAMESPACE})
    )


def test_the_restore_reader_reads_backups_and_writes_nothing(
    declared: dict[str, list[dict[str, Any]]],
) -> None:
    reader = declared["restore-reader"]
    assert allows(reader, Request("s3:GetObject", f"{BACKUP}/dump"))
    for attempt in ("write a journal", "publish the failover metric", "set the live mode"):
        assert not allows(reader, WRITER_REFUSED[attempt]), attempt
    assert not allows(reader, Request("s3:PutObject", f"{BACKUP}/manifest.json"))
    assert not any("kms:GenerateMac" in s["Action"] for s in reader)


def test_only_the_operator_may_move_production(declared: dict[str, list[dict[str, Any]]]) -> None:
    operator = declared["operator"]
    assert allows(operator, WRITER_REFUSED["write a journal"])
    assert allows(operator, WRITER_REFUSED["publish the failover metric"])
    assert allows(operator, WRITER_REFUSED["set the live mode"])
    assert not allows(operator, WRITER_REFUSED["write outside its prefix"])
