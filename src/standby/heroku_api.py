"""A small client for the Heroku Platform API (v3): the calls the runbooks make, retried politely.

Base URL from $HEROKU_API_URL (default the real API), bearer token from $HEROKU_API_KEY; https only, but
on this machine (the fake). 429 answers are retried honouring Retry-After, for every method (Heroku did
not act on them); 5xx answers and dropped connections are retried with exponential backoff for the
methods that may be repeated (GET, PATCH with absolute values), never for a POST, which may have acted:
its caller checks what exists instead. A 429 until we give up is `HerokuRateLimited`, not "unreachable":
Heroku is up. 401, 403 and 404 become errors that say what to check. The token never appears in a message.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Final

from standby.errors import ConfigError, StandbyError

DEFAULT_API_URL: Final = "https://api.heroku.com"
DEFAULT_DATA_API_URL: Final = "https://api.data.heroku.com"  # Heroku Postgres, as the official CLI reaches it
ACCEPT: Final = "application/vnd.heroku+json; version=3"
RETRYABLE: Final = frozenset({429, 500, 502, 503, 504})
REPEATABLE: Final = frozenset({"GET", "HEAD", "PATCH", "PUT", "DELETE"})  # the runbooks' PATCHes set values
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class HerokuApiError(StandbyError):
    """Heroku answered with an error we cannot retry our way out of."""

    def __init__(self, message: str, status: int | None = None, error_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id


class HerokuUnreachable(HerokuApiError):
    """Heroku did not answer (connection refused, timeouts, or 5xx until we gave up)."""


class HerokuRateLimited(HerokuApiError):
    """Heroku answers, but 429 until we gave up: up and busy, not down (never a reason for --primary-unreachable)."""


class HerokuUncertain(HerokuApiError):
    """A request that must not be repeated got no clear answer: it may or may not have taken effect."""


class HerokuAuthError(HerokuApiError):
    """The token is missing, wrong, or lacks access: a configuration problem."""

    exit_code = ConfigError.exit_code


class HerokuNotFound(HerokuApiError):
    """No such app (or add-on, ...): a configuration problem."""

    exit_code = ConfigError.exit_code


class HerokuClient:
    def __init__(
        self,
        token: str,
        base_url: str = DEFAULT_API_URL,
        *,
        attempts: int = 6,
        timeout: float = 15.0,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        data_api_url: str = DEFAULT_DATA_API_URL,
    ) -> None:
        if not token:
            raise HerokuAuthError("no Heroku API token: set HEROKU_API_KEY (see `heroku auth:token`).")
        self._token = token
        self.base_url = _api_url(base_url, "HEROKU_API_URL")
        self.data_api_url = _api_url(data_api_url, "HEROKU_DATA_API_URL")
        self.attempts = attempts
        self.timeout = timeout
        self.backoff = backoff
        self._sleep = sleep

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **kwargs: Any) -> HerokuClient:
        """$HEROKU_API_KEY, $HEROKU_API_URL, and $HEROKU_API_ATTEMPTS (tries before "unreachable", default 6)."""
        attempts = env.get("HEROKU_API_ATTEMPTS")
        if attempts:
            if not attempts.isdigit() or int(attempts) < 1:
                raise ConfigError([f"HEROKU_API_ATTEMPTS must be a whole number >= 1. Got {attempts!r}."])
            kwargs.setdefault("attempts", int(attempts))
        kwargs.setdefault("data_api_url", env.get("HEROKU_DATA_API_URL") or DEFAULT_DATA_API_URL)
        return cls(env.get("HEROKU_API_KEY", ""), env.get("HEROKU_API_URL") or DEFAULT_API_URL, **kwargs)

    def __repr__(self) -> str:  # never show the token
        return f"HerokuClient({self.base_url!r})"

    # --- the calls the runbooks make ---------------------------------------------------------------

    def app(self, app: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/apps/{_q(app)}"))

    def config_vars(self, app: str) -> dict[str, str]:
        return dict(self.request("GET", f"/apps/{_q(app)}/config-vars"))

    def update_config_vars(self, app: str, changes: Mapping[str, str | None]) -> dict[str, str]:
        """Set (or with None, remove) config vars; Heroku restarts the dynos with them."""
        return dict(self.request("PATCH", f"/apps/{_q(app)}/config-vars", dict(changes)))

    def set_maintenance(self, app: str, on: bool) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/apps/{_q(app)}", {"maintenance": on}))

    def newest_release(self, app: str) -> dict[str, Any] | None:
        """The app's newest release (a config var change makes one and restarts the dynos with it)."""
        found = self.request(
            "GET",
            f"/apps/{_q(app)}/releases",
            headers={"Range": "version ..; order=desc, max=1"},
            every_page=False,
        )
        return dict(found[0]) if found else None

    def releases(self, app: str, newest: int = 50) -> list[dict[str, Any]]:
        """The app's newest releases, newest first."""
        found = self.request(
            "GET",
            f"/apps/{_q(app)}/releases",
            headers={"Range": f"version ..; order=desc, max={newest}"},
            every_page=False,
        )
        return [dict(r) for r in found]

    def release(self, app: str, release: str) -> dict[str, Any]:
        """One release, by id or version number."""
        return dict(self.request("GET", f"/apps/{_q(app)}/releases/{_q(release)}"))

    def rollback(self, app: str, release_id: str) -> dict[str, Any]:
        """`heroku releases:rollback`: a new release running the slug and config of `release_id` (a
        UUID). Not retried: a lost answer may have created the release (HerokuUncertain)."""
        return dict(self.request("POST", f"/apps/{_q(app)}/releases", {"release": release_id}))

    def slug(self, app: str, slug_id: str) -> dict[str, Any]:
        """A release's slug: its `commit` is the git commit Heroku built it from."""
        return dict(self.request("GET", f"/apps/{_q(app)}/slugs/{_q(slug_id)}"))

    def domains(self, app: str) -> list[dict[str, Any]]:
        """The app's domains: the herokuapp.com one (kind heroku) and the custom ones with their `cname`."""
        return list(self.request("GET", f"/apps/{_q(app)}/domains"))

    def formation(self, app: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/apps/{_q(app)}/formation"))

    def scale(self, app: str, quantities: Mapping[str, int]) -> list[dict[str, Any]]:
        """Set the dyno count of each process type in one batch update."""
        updates = [{"type": t, "quantity": q} for t, q in quantities.items()]
        return list(self.request("PATCH", f"/apps/{_q(app)}/formation", {"updates": updates}))

    def dynos(self, app: str) -> list[dict[str, Any]]:
        """Every dyno of the app: the formation's, and one-off, scheduler and release-phase dynos."""
        return list(self.request("GET", f"/apps/{_q(app)}/dynos"))

    def stop_dyno(self, app: str, dyno: str) -> None:
        """Stop one dyno (SIGTERM, then SIGKILL after 30 s). Repeating it is harmless: a PUT-like action."""
        self.request("POST", f"/apps/{_q(app)}/dynos/{_q(dyno)}/actions/stop", {}, repeatable=True)

    def postgres_addon(self, app: str) -> dict[str, Any]:
        """The Heroku Postgres add-on attached as DATABASE_URL, owned by the app or only attached to it:
        resolved as the official CLI resolves it (the attachment DATABASE, of the heroku-postgresql service)."""
        found = self.request(
            "POST",
            "/actions/addon-attachments/resolve",
            {"app": app, "addon_attachment": "DATABASE", "addon_service": "heroku-postgresql"},
            repeatable=True,  # a lookup, though a POST
        )
        if not found:
            raise HerokuNotFound(f"{app} has no Heroku Postgres add-on attached as DATABASE_URL.")
        return dict(found[0]["addon"])

    def addons(self, app: str) -> list[dict[str, Any]]:
        """The add-ons the app owns or has attached."""
        return list(self.request("GET", f"/apps/{_q(app)}/addons"))

    def addon_attachments(self, app: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/apps/{_q(app)}/addon-attachments"))

    def create_addon(self, app: str, plan: str, config: Mapping[str, str]) -> dict[str, Any]:
        """`heroku addons:create PLAN -- --follow X` or `--rollback X --to T`. Not retried: a lost answer
        may have created the add-on (HerokuUncertain); its caller looks for it instead."""
        body = {"plan": {"name": plan}, "config": dict(config), "attachment": {}}
        return dict(self.request("POST", f"/apps/{_q(app)}/addons", body))

    def attach_addon(self, app: str, addon_id: str, name: str | None = None) -> dict[str, Any]:
        """`POST /addon-attachments`, as `heroku pg:promote` sends it: under `name` (replacing the add-on
        attached so, confirmed with the app's name), or under a name Heroku picks. Not retried."""
        body: dict[str, Any] = {"addon": {"id": addon_id}, "app": {"name": app}, "confirm": app}
        if name:
            body["name"] = name
        return dict(self.request("POST", "/addon-attachments", body))

    def database_info(self, addon_id: str) -> dict[str, Any]:
        """What `heroku pg:info` shows: `info` entries (Following, Behind By, Rollback, ...), `following`."""
        return dict(self.request("GET", f"/client/v11/databases/{_q(addon_id)}", base=self.data_api_url))

    def database_wait_status(self, addon_id: str) -> dict[str, Any]:
        """What `heroku pg:wait` polls: `waiting?`, `message`, `error?`."""
        path = f"/client/v11/databases/{_q(addon_id)}/wait_status"
        return dict(self.request("GET", path, base=self.data_api_url))

    def unfollow(self, addon_id: str) -> None:
        """`heroku pg:unfollow`: the follower stops following its leader and takes writes."""
        self.request("PUT", f"/client/v11/databases/{_q(addon_id)}/unfollow", base=self.data_api_url)

    def restore_database(self, addon_id: str, backup_url: str) -> dict[str, Any]:
        """Start `pg:backups:restore URL`: Heroku replaces the database's contents with the dump at the URL."""
        path = f"/client/v11/databases/{_q(addon_id)}/restores"
        return dict(self.request("POST", path, {"backup_url": backup_url}, base=self.data_api_url))

    def capture_backup(self, addon_id: str) -> dict[str, Any]:
        """Start `pg:backups:capture`: Heroku backs the database up into its own storage (a transfer)."""
        path = f"/client/v11/databases/{_q(addon_id)}/backups"
        return dict(self.request("POST", path, {}, base=self.data_api_url))

    def transfers(self, app: str) -> list[dict[str, Any]]:
        """The app's Heroku Postgres transfers (backups and restores), as `heroku pg:backups` lists them."""
        return list(self.request("GET", f"/client/v11/apps/{_q(app)}/transfers", base=self.data_api_url))

    def transfer(self, app: str, transfer_id: str) -> dict[str, Any]:
        path = f"/client/v11/apps/{_q(app)}/transfers/{_q(transfer_id)}"
        return dict(self.request("GET", path, base=self.data_api_url))

    # --- transport ----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        base: str | None = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool = False,
        every_page: bool = True,
    ) -> Any:
        """One API call, retried as the module says; `repeatable` marks a POST that may be sent again. A
        list Heroku pages (206 with Next-Range) is read to its end unless `every_page` is False."""
        repeatable = repeatable or method in REPEATABLE
        url = f"{base or self.base_url}{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Accept": ACCEPT,
            "Authorization": f"Bearer {self._token}",
            "User-Agent": "standby",
            **({"Content-Type": "application/json"} if data is not None else {}),
            **(headers or {}),
        }
        last_problem, limited = "", False
        for attempt in range(self.attempts):
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
                    answer = json.loads(payload) if payload else None
                    following = response.headers.get("Next-Range")
                if following and following == headers.get("Range"):
                    raise HerokuApiError(
                        f"Heroku repeated the page {following!r} of {method} {path}: not read twice."
                    )
                if following and every_page and isinstance(answer, list):  # 206: the list goes on
                    return answer + self.request(method, path, body, base, {**headers, "Range": following})
                return answer
            except urllib.error.HTTPError as exc:
                status = exc.code
                error = _error_body(exc)
                if status not in RETRYABLE:
                    raise _error_for(status, error, method, path) from None
                limited = status == 429
                last_problem = f"HTTP {status} ({error.get('id', 'no id')})"
                delay = _retry_after(exc.headers.get("Retry-After")) if limited else None
                if not limited and not repeatable:
                    raise HerokuUncertain(
                        f"Heroku answered {method} {path} with HTTP {status}: it may or may not have acted, so it "
                        "is not sent again.",
                        status,
                    ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last_problem = f"{type(reason).__name__}: {reason}"
                delay, limited = None, False
                if not repeatable and not _refused(reason):
                    raise HerokuUncertain(
                        f"{method} {path} got no answer from Heroku ({last_problem}): it may or may not have acted, "
                        "so it is not sent again."
                    ) from None
            if attempt + 1 < self.attempts:
                self._sleep(delay if delay is not None else self._backoff(attempt))
        if limited:
            raise HerokuRateLimited(
                f"the Heroku API rate-limited {method} {path} {self.attempts} times in a row: Heroku is up, and this "
                "token (or account) is over its request budget. Wait a few minutes, then --resume; do not pass "
                "--primary-unreachable, Heroku answers.",
                429,
            )
        raise HerokuUnreachable(
            f"the Heroku API at {self.base_url} did not answer {method} {path} after {self.attempts} attempts "
            f"(last: {last_problem}). Check https://status.heroku.com; if Heroku is down, say so explicitly "
            "to the runbook."
        )

    def _backoff(self, attempt: int) -> float:
        return float(min(30.0, self.backoff * 2**attempt) * (0.5 + random.random() / 2))


def _api_url(url: str, setting: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError([f"{setting} must be a URL like https://api.heroku.com. Got {url!r}."])
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise ConfigError(
            [
                f"{setting} must use https (the token travels with every request); http is for this machine only. Got {url!r}."
            ]
        )
    return url.rstrip("/")


def _refused(reason: object) -> bool:
    """A connection that was never made: nothing reached Heroku, so even a POST may be sent again."""
    return isinstance(reason, ConnectionRefusedError)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _error_body(exc: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        body = json.loads(exc.read() or b"{}")
    except (json.JSONDecodeError, OSError):
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error_for(status: int, error: dict[str, Any], method: str, path: str) -> HerokuApiError:
    message = str(error.get("message", "")).strip() or f"HTTP {status}"
    error_id = error.get("id")
    where = f"{method} {path}"
    if status == 401:
        return HerokuAuthError(
            f"Heroku refused the API token ({message}). Set HEROKU_API_KEY to a valid token "
            "(`heroku auth:token`, or an authorization with write access).",
            status,
            error_id,
        )
    if status == 403:
        return HerokuAuthError(
            f"the Heroku API token may not do {where} ({message}). Use a token of a user with access to the app.",
            status,
            error_id,
        )
    if status == 404:
        return HerokuNotFound(
            f"Heroku found nothing for {where} ({message}). Check the app name.",
            status,
            error_id,
        )
    return HerokuApiError(
        f"Heroku refused {where}: HTTP {status} {error_id or ''}: {message}", status, error_id
    )
