"""Stand-ins for the AI providers' HTTP APIs on loopback, reached through the official SDKs' base URL
setting: OpenAI's `GET /v1/models` (bearer token) and Anthropic's (`x-api-key` or bearer, `anthropic-version`), with their error shapes."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from standby.vocabulary import AiProvider

BEHAVIOURS: Final = ("healthy", "unauthorized", "error", "slow")


class AiProviderFake:
    """One provider's API. `behaviour` decides the next answers; `calls` counts the requests."""

    def __init__(self, provider: AiProvider, api_key: str, models: list[str]) -> None:
        self.provider, self.api_key, self.models = provider, api_key, models
        self.behaviour = "healthy"
        self.slow_seconds = 5.0
        self.calls = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True

    @property
    def base_url(self) -> str:
        """What the SDK's `base_url` takes: OpenAI's includes the /v1 prefix, Anthropic's does not."""
        root = f"http://127.0.0.1:{self._server.server_port}"
        return f"{root}/v1" if self.provider is AiProvider.OPENAI else root

    def __enter__(self) -> AiProviderFake:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def authorized(self, headers: Any) -> bool:
        if self.provider is AiProvider.OPENAI:
            return bool(headers.get("Authorization") == f"Bearer {self.api_key}")
        # Anthropic takes the key as x-api-key; the SDK's newer releases send it as a bearer token.
        key = headers.get("x-api-key") or (headers.get("Authorization") or "").removeprefix("Bearer ")
        return bool(key == self.api_key and headers.get("anthropic-version"))

    def answer(self, path: str, headers: Any) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        if self.behaviour == "slow":
            time.sleep(self.slow_seconds)
        if self.behaviour == "error":
            return 500, self._error("api_error", "Internal server error")
        if self.behaviour == "unauthorized" or not self.authorized(headers):
            return 401, self._error("authentication_error", "invalid x-api-key / Incorrect API key provided")
        if path.split("?")[0] != "/v1/models":
            return 404, self._error("not_found_error", f"no route {path}")
        if self.provider is AiProvider.OPENAI:
            return 200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in self.models]}  # fmt: skip
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in self.models
        ]
        return 200, {"data": data, "has_more": False, "first_id": self.models[0], "last_id": self.models[-1]}

    def _error(self, kind: str, message: str) -> dict[str, Any]:
        if self.provider is AiProvider.OPENAI:
            return {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return {"type": "error", "error": {"type": kind, "message": message}}


def _handler(fake: AiProviderFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, body = fake.answer(self.path, self.headers)
            raw = json.dumps(body).encode()
            # After the "slow" behaviour the client has given up waiting and closed the connection.
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
