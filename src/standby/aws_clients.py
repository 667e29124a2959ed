"""AWS clients, with boto3 imported on first use.

Importing boto3 takes about 0.2 s, a third of a script's start. A backup to a folder or from a URL, a
restore from a folder and every check that stays on this machine never call AWS, and should not pay it.
"""

from __future__ import annotations

from typing import Any


def client(service: str, region: str | None = None, **config: Any) -> Any:
    """boto3's client for `service` in `region` (boto3's default session: its service models are parsed
    once per process, not once per client); `config` is botocore's Config (retries=..., ...)."""
    import boto3
    from botocore.config import Config

    return boto3.client(  # type: ignore[call-overload]
        service, region_name=region, config=Config(**config) if config else None
    )
