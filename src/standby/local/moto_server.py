"""moto's AWS on a free loopback port, for the rehearsal and the benchmarks: boto3 here and in child
processes reaches it through AWS_ENDPOINT_URL."""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def start_moto_server() -> tuple[Any, str]:
    """moto's server on a free loopback port, and its endpoint URL.

    ECS tasks stay RUNNING until stopped, as on AWS; moto's default moves them to STOPPED the moment
    anyone looks at them.
    """
    from moto.server import ThreadedMotoServer  # a test and rehearsal dependency

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    transition = {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}
    request = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/set-transition",
        data=json.dumps(transition).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()
    return server, endpoint


@contextmanager
def moto_server(region: str) -> Iterator[dict[str, str]]:
    """Start moto, point this process's environment at it, and put the environment back afterwards."""
    server, endpoint = start_moto_server()
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": region,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
