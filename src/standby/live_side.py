"""Where the app is live: on Heroku, in the standby region or in the second region. One recorded fact.

The fact is the live mode the runbooks set in each standby region (`/standby/<app>/mode`): the region
whose mode is `active` serves the app; while none is, Heroku does. A cutover makes its region active, a
failback returns it to its base mode. The backup task, restore-ahead, every runbook and both Pulumi
programs read it through here, so none of them acts on a stale idea of where the writes go.
"""

from __future__ import annotations

from typing import Any, Final

from botocore.exceptions import ClientError

from standby import aws_clients
from standby.aws_errors import AWS_ERRORS, aws_failure, error_code
from standby.errors import SafetyRefusal
from standby.names import mode_parameter
from standby.standby_manifest import StandbyManifest
from standby.vocabulary import Mode

HEROKU: Final = "heroku"


def region_mode(app: str, region: str, client: Any = None) -> Mode | None:
    """The live mode recorded in `region` (None where the standby was never deployed)."""
    ssm = client or aws_clients.client("ssm", region)
    name = mode_parameter(app)
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except AWS_ERRORS as exc:
        if isinstance(exc, ClientError) and error_code(exc) == "ParameterNotFound":
            return None
        raise aws_failure(exc, f"reading the live mode {name} in {region}") from None
    try:
        return Mode(value)
    except ValueError:
        raise SafetyRefusal(
            f"the live mode {name} in {region} holds {value!r}, not one of {', '.join(Mode)}: where the app is "
            "live is unknown, so nothing that depends on it runs. Set it to the mode the standby is really in."
        ) from None


def is_live(manifest: StandbyManifest) -> bool:
    """Whether this manifest's region serves the app now: its database is the app's live database."""
    return region_mode(manifest.app, manifest.region) is Mode.ACTIVE


def live_place(manifest: StandbyManifest) -> str:
    """`heroku`, or the standby region that serves the app now. Refuses when two regions claim it."""
    regions = [r for r in (manifest.region, manifest.second_region) if r]
    active = [r for r in regions if region_mode(manifest.app, r) is Mode.ACTIVE]
    if len(active) > 1:
        raise SafetyRefusal(
            f"both {' and '.join(active)} record the live mode active for {manifest.app}: two live databases. "
            "Find out which one the app's DNS and its writes reach, then set the other's mode back."
        )
    return active[0] if active else HEROKU


def describe(place: str) -> str:
    return "Heroku" if place == HEROKU else f"the AWS standby in {place}"


def require_heroku(manifest: StandbyManifest, what: str) -> None:
    """Refuses `what` (a change to the app on Heroku) unless Heroku is where the app is live."""
    place = live_place(manifest)
    if place != HEROKU:
        raise SafetyRefusal(
            f"{manifest.app} is live on {describe(place)}, not on Heroku: {what} on Heroku would act on a fenced "
            "app whose data is elsewhere. Work on the live side, or fail back first."
        )
