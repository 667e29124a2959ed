"""Probe an AI provider before the app is switched to it: one cheap authenticated call through the
provider's official SDK (list the models), and every model the app will ask for must be among them."""

from __future__ import annotations

from typing import Final

from standby.errors import SafetyRefusal
from standby.vocabulary import AiProvider

PROBE_TIMEOUT: Final = 10.0  # seconds; a provider slower than this to list its models is not healthy


def probe(
    provider: AiProvider,
    api_key: str,
    base_url: str | None,
    models: list[str],
    timeout: float = PROBE_TIMEOUT,
) -> list[str]:
    """The provider's models, or SafetyRefusal naming what failed. The error never quotes the provider's
    message: some echo part of the key."""
    # Imported here, not with the module: the SDKs take a second to import, and every runbook command
    # (the cutover imports the AI switch) would pay it at start even when no AI provider is switched.
    import anthropic
    import openai

    try:
        available = _list_models(provider, api_key, base_url, timeout)
    except (openai.APITimeoutError, anthropic.APITimeoutError):
        problem = f"no answer within {timeout:.0f} s"
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        problem = f"HTTP {exc.status_code} ({type(exc).__name__})"
    except (openai.APIError, anthropic.APIError) as exc:
        problem = type(exc).__name__
    else:
        missing = [m for m in models if m not in available]
        if not missing:
            return available
        problem = f"it does not offer {', '.join(missing)}"
    raise SafetyRefusal(
        f"the {provider.value} probe failed: {problem}. Nothing was changed; the app stays on its current "
        "provider. Check the key and the provider's status page, then run again."
    )


def _list_models(provider: AiProvider, api_key: str, base_url: str | None, timeout: float) -> list[str]:
    import anthropic
    import openai

    if provider is AiProvider.OPENAI:
        client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        return [m.id for m in client.models.list()]
    claude = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
    return [m.id for m in claude.models.list(limit=1000)]
