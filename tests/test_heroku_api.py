"""The Heroku API client against the faithful fake: retries, clear errors, no token in messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from standby.heroku_api import HerokuAuthError, HerokuClient, HerokuNotFound, HerokuUnreachable
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
    client = HerokuClient(token, fake.url, sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]
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
    assert client.scale("acme", {"web": 0}) == [
        {
            "type": "web",
            "quantity": 0,
            "size": "Standard-2X",
            "app": {"id": fake.apps["acme"].id, "name": "acme"},
        }
    ]
    assert fake.apps["acme"].maintenance is True


def test_a_missing_token_is_refused_before_any_request(fake: HerokuFake) -> None:
    with pytest.raises(HerokuAuthError, match="HEROKU_API_KEY"):
        HerokuClient.from_env({"HEROKU_API_URL": fake.url})
    assert fake.requests == []
