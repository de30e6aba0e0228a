"""The two baselines of ``bench/foundation.py``, each run as its own process.

``python bench/bare_servers.py http`` serves a one-route FastAPI app with one uvicorn worker,
started the way the api service starts its own (``uvicorn.Server(...).serve()`` on the stdlib
event loop, access log off), so the only difference to the full path is metalbus itself.

``python bench/bare_servers.py nats --url nats://...`` answers request/reply messages with a
plain nats-py subscription: no metalbus code, no validation, no telemetry.

Each prints one ``ready port=<port>`` line on stdout once it serves, so the benchmark waits
on an event instead of polling, then runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
from datetime import UTC, datetime

import nats
import uvicorn
from fastapi import FastAPI
from nats.aio.msg import Msg

NATS_SUBJECT = "bench.raw.ping"
NATS_QUEUE = "bench-raw"


def make_app() -> FastAPI:
    """The bare app: one GET route returning a small dict shaped like metalbus' ``Pong``."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    instance = f"{socket.gethostname()}-{os.getpid()}"

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {
            "service": "bare",
            "instance": instance,
            "version": "0",
            "time": datetime.now(UTC).isoformat(),
        }

    return app


class _AnnouncingServer(uvicorn.Server):
    """uvicorn that says ``ready port=N`` once its socket listens (the port may be 0)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"ready port={port}", flush=True)


def serve_http(host: str, port: int) -> None:
    """Serve the bare app until SIGTERM/SIGINT (uvicorn handles both)."""
    config = uvicorn.Config(make_app(), host=host, port=port, log_level="warning", access_log=False)
    _AnnouncingServer(config).run()


async def serve_nats(url: str) -> None:
    """Answer every request on :data:`NATS_SUBJECT` with a fixed Pong-sized reply."""
    instance = f"{socket.gethostname()}-{os.getpid()}"
    nc = await nats.connect(url, name="bench raw responder")

    async def on_request(msg: Msg) -> None:
        reply = {
            "service": "raw",
            "instance": instance,
            "version": "0",
            "time": datetime.now(UTC).isoformat(),
        }
        await msg.respond(json.dumps(reply).encode())

    # A queue group, like the metalbus services use, so the server-side routing is the same.
    await nc.subscribe(NATS_SUBJECT, queue=NATS_QUEUE, cb=on_request)
    # The flush round trip proves the server has registered the subscription before "ready".
    await nc.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready port={url.rsplit(':', 1)[-1]}", flush=True)
    await stop.wait()
    await nc.drain()


def main() -> None:
    """Parse the sub-command and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="kind", required=True)
    http = sub.add_parser("http", help="the bare FastAPI app under uvicorn")
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, default=0, help="0 picks a free port")
    raw = sub.add_parser("nats", help="the raw nats-py responder")
    raw.add_argument("--url", required=True)
    args = parser.parse_args()
    if args.kind == "http":
        serve_http(args.host, args.port)
    else:
        asyncio.run(serve_nats(args.url))


if __name__ == "__main__":
    main()
