"""The fake Heroku Platform API against Heroku's published schema (../shared fixture, copied under
tests/fixtures): every route the fake serves is a route of the schema, and every answer has the schema's
shape with every field Heroku returns (a fake that answers less is kinder than Heroku)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest

from standby.local.heroku_fake import ACCEPT_VERSION, PLATFORM_ROUTES, FakeApp, HerokuFake
from standby.local.postgres import LocalPostgres

SCHEMA_PATH = Path(__file__).parent / "fixtures" / "heroku-platform-api-schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
TOKEN = "contract-token"


def _link(method: str, template: str) -> dict[str, Any]:
    """The schema's link for a route of the fake ({app}, {dyno}: any identity placeholder)."""
    for definition in SCHEMA["definitions"].values():
        for link in definition.get("links", []):
            href = re.sub(r"\{\([^)]*\)\}", "{}", unquote(link["href"]))
            if link["method"] == method and href == re.sub(r"\{\w+\}", "{}", template):
                return dict(link)
    raise AssertionError(f"{method} {template} is not a route of Heroku's Platform API")


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SCHEMA
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _missing(answer: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the schema gives that the answer lacks, recursively (Heroku sends them all, null if empty)."""
    schema = _resolve(schema)
    if isinstance(answer, list):
        return [m for item in answer for m in _missing(item, schema.get("items", {}), where + "[]")]
    if not isinstance(answer, dict) or "properties" not in schema:
        return []
    missing = [f"{where}.{name}" for name in schema["properties"] if name not in answer]
    for name, sub in schema["properties"].items():
        if isinstance(answer.get(name), dict | list):
            missing += _missing(answer[name], sub, f"{where}.{name}")
    return missing


@pytest.fixture(scope="module")
def fake(pg_server: LocalPostgres) -> Iterator[HerokuFake]:
    database = pg_server.create_database("contract")  # a follower made through the API copies it
    with HerokuFake(TOKEN) as api:
        app = api.add_app(
            FakeApp("acme", config_vars={"DATABASE_URL": database}, domains=["www.acme.example"],
                    formation={"web": {"quantity": 1, "size": "Standard-2X"}})
        )  # fmt: skip
        app.release("Initial release")
        app.deploy("Deploy 5f2c9e1", commit="5f2c9e1a7b3d4c5e6f708192a3b4c5d6e7f80912")
        app.run_one_off("run", "bash")
        yield api


CALLS: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/apps/{app}"): ("/apps/acme", None),
    ("PATCH", "/apps/{app}"): ("/apps/acme", {"maintenance": False}),
    ("GET", "/apps/{app}/config-vars"): ("/apps/acme/config-vars", None),
    ("PATCH", "/apps/{app}/config-vars"): ("/apps/acme/config-vars", {"LOG_LEVEL": "info"}),
    ("GET", "/apps/{app}/releases"): ("/apps/acme/releases", None),
    ("GET", "/apps/{app}/formation"): ("/apps/acme/formation", None),
    ("PATCH", "/apps/{app}/formation"): (
        "/apps/acme/formation",
        {"updates": [{"type": "web", "quantity": 1}]},
    ),
    ("GET", "/apps/{app}/addons"): ("/apps/acme/addons", None),
    ("GET", "/apps/{app}/domains"): ("/apps/acme/domains", None),
    ("GET", "/apps/{app}/dynos"): ("/apps/acme/dynos", None),
    ("POST", "/apps/{app}/dynos/{dyno}/actions/stop"): ("/apps/acme/dynos/DYNO/actions/stop", {}),
    ("POST", "/apps/{app}/releases"): ("/apps/acme/releases", {"release": "RELEASE"}),  # releases:rollback v1
    ("GET", "/apps/{app}/addon-attachments"): ("/apps/acme/addon-attachments", None),
    ("GET", "/apps/{app}/releases/{release}"): ("/apps/acme/releases/1", None),
    ("GET", "/account"): ("/account", None),
    ("GET", "/addon-attachments"): ("/addon-attachments", None),
    ("POST", "/addon-attachments"): (
        "/addon-attachments",
        {"addon": "ADDON", "app": "acme", "name": "DATABASE", "confirm": "acme"},
    ),
    ("POST", "/apps/{app}/addons"): (
        "/apps/acme/addons",
        {"plan": {"name": "heroku-postgresql:standard-0"}, "config": {"follow": "DATABASE_URL"}},
    ),
    ("GET", "/apps/{app}/slugs/{slug}"): ("/apps/acme/slugs/SLUG", None),
    ("POST", "/actions/addon-attachments/resolve"): (
        "/actions/addon-attachments/resolve",
        {"app": "acme", "addon_attachment": "DATABASE", "addon_service": "heroku-postgresql"},
    ),
}


def test_every_route_of_the_fake_is_checked_here() -> None:
    assert set(CALLS) == set(PLATFORM_ROUTES)


@pytest.mark.parametrize("route", sorted(CALLS), ids=lambda r: f"{r[0]} {r[1]}")
def test_the_fake_answers_each_route_in_the_schemas_shape_with_every_field(
    fake: HerokuFake, route: tuple[str, str]
) -> None:
    link = _link(*route)
    path, body = CALLS[route]
    if "DYNO" in path:
        path = path.replace("DYNO", next(n for n in fake.apps["acme"].dynos if n.startswith("run.")))
    if "SLUG" in path:
        path = path.replace("SLUG", fake.apps["acme"].releases[-1]["slug"]["id"])
    if isinstance(body, dict) and body.get("release") == "RELEASE":  # the API takes the release's id
        body = {"release": fake.apps["acme"].releases[0]["id"]}
    if isinstance(body, dict) and body.get("addon") == "ADDON":
        body = {**body, "addon": fake.apps["acme"].postgres_addon_id}
    request = urllib.request.Request(
        fake.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=route[0],
        headers={
            "Accept": ACCEPT_VERSION,
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read() or b"null")

    target = link.get("targetSchema", {})
    jsonschema.validate(
        answer, {**target, "definitions": SCHEMA["definitions"]}, cls=jsonschema.Draft4Validator
    )
    assert _missing(answer, target) == []
