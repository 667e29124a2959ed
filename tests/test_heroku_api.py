"""The Heroku API client against the faithful fake: retries, clear errors, no token in messages."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from standby.errors import ConfigError, SafetyRefusal
from standby.heroku_api import (
    HerokuApiError,
    HerokuAuthError,
    HerokuClient,
    HerokuNotFound,
    HerokuRateLimited,
    HerokuUncertain,
    HerokuUnreachable,
)
from standby.local.heroku_fake import FakeApp, HerokuFake

TOKEN = "tok-secret-123"


@pytest.fixture
def fake() -> Iterator[HerokuFake]:
    with HerokuFake(TOKEN) as api:
        api.add_app(
            FakeApp(
                "acme",
                config_vars={"DATABASE_URL": "postgres://x"},
                formation={"web": {"quantity": 2, "size": "Standard-2X"}},
            )
        )
        yield api


def _client(fake: HerokuFake, token: str = TOKEN, **kwargs: object) -> HerokuClient:
    sleeps: list[float] = []
    client = HerokuClient(token, fake.url, sleep=sleeps.append, data_api_url=fake.url, **kwargs)  # type: ignore[arg-type]
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


def test_it_reads_config_vars_with_the_v3_accept_header_and_bearer_token(fake: HerokuFake) -> None:
    assert _client(fake).config_vars("acme") == {"DATABASE_URL": "postgres://x"}


def test_429_and_503_are_retried_until_they_pass(fake: HerokuFake) -> None:
    client = _client(fake)
    fake.fail_next(2, 429)
    fake.fail_next(2, 503)
    assert client.app("acme")["name"] == "acme"
    assert len(fake.requests) == 5
    assert client.sleeps[:2] == [0.0, 0.0]  # type: ignore[attr-defined]  # Retry-After: 0 honoured


def test_persistent_5xx_gives_up_with_a_clear_message(fake: HerokuFake) -> None:
    fake.fail_next(10, 503)
    with pytest.raises(
        HerokuUnreachable, match=r"did not answer GET /apps/acme after 3 attempts \(last: HTTP 503"
    ):
        _client(fake, attempts=3).app("acme")


def test_an_unreachable_api_is_reported_as_such(fake: HerokuFake) -> None:
    fake.stop()
    with pytest.raises(HerokuUnreachable, match=r"status\.heroku\.com"):
        _client(fake, attempts=2).app("acme")


def test_a_wrong_token_is_a_configuration_error_without_the_token(fake: HerokuFake) -> None:
    with pytest.raises(HerokuAuthError) as raised:
        _client(fake, token="wrong-token-456").app("acme")
    assert raised.value.exit_code == 2
    assert "HEROKU_API_KEY" in str(raised.value)
    assert "wrong-token-456" not in str(raised.value) and "wrong-token-456" not in repr(_client(fake))


def test_an_unknown_app_says_to_check_the_name(fake: HerokuFake) -> None:
    with pytest.raises(HerokuNotFound, match=r"Couldn.t find that app.*Check the app name"):
        _client(fake).config_vars("nope")


def test_maintenance_and_scaling_change_the_app(fake: HerokuFake) -> None:
    client = _client(fake)
    assert client.set_maintenance("acme", True)["maintenance"] is True
    (web,) = client.scale("acme", {"web": 0})
    assert (web["type"], web["quantity"], web["size"]) == ("web", 0, "Standard-2X")
    assert web["app"] == {"id": fake.apps["acme"].id, "name": "acme"}
    assert fake.apps["acme"].maintenance is True
    assert fake.apps["acme"].dynos == {}  # the formation's dynos stopped with it


def test_a_missing_token_is_refused_before_any_request(fake: HerokuFake) -> None:
    with pytest.raises(HerokuAuthError, match="HEROKU_API_KEY"):
        HerokuClient.from_env({"HEROKU_API_URL": fake.url})
    assert fake.requests == []


def test_429_until_the_attempts_run_out_is_a_rate_limit_not_an_outage(fake: HerokuFake) -> None:
    fake.fail_next(10, 429)
    with pytest.raises(HerokuRateLimited, match="Heroku is up") as raised:
        _client(fake, attempts=3).app("acme")
    assert not isinstance(raised.value, HerokuUnreachable)  # never an invitation to --primary-unreachable
    assert "do not pass --primary-unreachable" in str(raised.value)


def test_a_post_is_never_sent_twice_after_an_unclear_answer(fake: HerokuFake) -> None:
    fake.fail_next(1, 503)
    with pytest.raises(HerokuUncertain, match="not sent again"):
        _client(fake).capture_backup(fake.apps["acme"].postgres_addon_id)
    assert [r.method for r in fake.requests] == ["POST"]


def test_a_restore_whose_answer_was_lost_is_found_not_started_again(
    fake: HerokuFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Heroku acted, but the answer never came (a timeout, a 503): the side looks for the transfer it made."""
    from standby.primary_side import HerokuSide

    (tmp_path / "dump").write_bytes(b"not a dump")  # pg_restore's complaint is one Heroku ignores
    files = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    fake.lose_next_answer("POST", "restores")
    side = HerokuSide("acme", lambda: _client(fake))

    try:  # returns once the transfer it made is seen finished
        side.restore_database(f"http://127.0.0.1:{files.server_port}/dump")
    finally:
        files.shutdown()

    posts = [r for r in fake.requests if r.method == "POST" and r.path.startswith("/client/")]
    assert len(posts) == 1 and len(fake.transfers) == 1  # one restore, adopted, waited for


@pytest.mark.parametrize(
    ("url", "allowed"),
    [("http://127.0.0.1:5000", True), ("https://api.heroku.com", True), ("http://api.heroku.com", False)],
)
def test_the_token_only_travels_over_https_except_on_this_machine(url: str, allowed: bool) -> None:
    if allowed:
        assert HerokuClient(TOKEN, url).base_url == url
    else:
        with pytest.raises(ConfigError, match="must use https"):
            HerokuClient(TOKEN, url)


def test_the_data_api_is_where_the_official_cli_reaches_it() -> None:
    assert HerokuClient(TOKEN).data_api_url == "https://api.data.heroku.com"


def test_a_restore_is_polled_while_pending_and_its_failure_reported(fake: HerokuFake, tmp_path: Path) -> None:
    """Heroku answers the POST with a pending transfer; only later does it finish, here failing."""
    from standby.primary_side import HerokuSide

    side = HerokuSide("acme", lambda: _client(fake))

    with pytest.raises(SafetyRefusal, match=r"Heroku's restore .* failed; see `heroku pg:backups:info`"):
        side.restore_database((tmp_path / "no-such-dump").as_uri())

    assert len([r for r in fake.requests if r.method == "POST" and r.path.endswith("/restores")]) == 1
    polls = [r for r in fake.requests if r.method == "GET" and "/transfers/" in r.path]
    assert len(polls) >= 1  # pending at first: looked at again until it finished


def test_a_database_the_app_only_attaches_is_found_as_the_official_cli_finds_it(fake: HerokuFake) -> None:
    """Heroku lets apps share a database: the add-on belongs to another app, attached here as DATABASE."""
    owner = fake.add_app(FakeApp("acme-data"))
    fake.apps["acme"].attach(owner)

    addon = _client(fake).postgres_addon("acme")

    assert addon["id"] == owner.postgres_addon_id and addon["app"]["name"] == "acme-data"


def test_long_lists_are_read_page_by_page(fake: HerokuFake) -> None:
    app = fake.apps["acme"]
    for _ in range(450):  # more than two of Heroku's 200-item pages
        app.run_one_off("run", "true")

    dynos = _client(fake).dynos("acme")

    assert (
        len(dynos) == len({d["name"] for d in dynos}) == len(app.dynos) == 452
    )  # web.1, web.2, the one-offs
    assert len([r for r in fake.requests if r.path.endswith("/dynos")]) == 3


def test_an_invalid_config_var_name_is_refused_as_heroku_does(fake: HerokuFake) -> None:
    with pytest.raises(HerokuApiError, match="HTTP 422 invalid_params: Invalid config var name"):
        _client(fake).update_config_vars("acme", {"BAD-NAME": "x"})
    assert "BAD-NAME" not in fake.apps["acme"].config_vars


def test_a_restore_post_that_timed_out_is_not_sent_again(fake: HerokuFake, tmp_path: Path) -> None:
    """Heroku started the restore but answered after the client gave up waiting."""
    from standby.primary_side import HerokuSide

    fake.lose_next_answer("POST", "restores", how="timeout")
    side = HerokuSide("acme", lambda: _client(fake, timeout=0.5))

    with pytest.raises(SafetyRefusal, match="failed"):  # the fake cannot fetch the dump; it did try, once
        side.restore_database((tmp_path / "no-such-dump").as_uri())

    assert len([r for r in fake.requests if r.method == "POST" and r.path.endswith("/restores")]) == 1
    assert len(fake.transfers) == 1
