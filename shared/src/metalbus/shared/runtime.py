"""The service runtime: one uniform way to write and run a metalbus service.

settings -> database (migrated) -> bus (stream ensured) -> endpoints and consumers ->
outbox relay -> health. A domain service is a :class:`ServiceDefinition` whose ``setup``
registers its commands, consumers and background loops on the :class:`ServiceRuntime`::

    async def setup(rt: ServiceRuntime) -> None:
        rt.command(ALLOCATE, allocate)
        rt.consumer("boot", "leases", apply_lease)

    DEFINITION = ServiceDefinition("ipam", "IP address management", IpamSettings, setup=setup)

    def main() -> None:
        run_service(DEFINITION)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metalbus.shared.tasks import cancel_all

from . import __version__, telemetry
from .bus import Bus, Handler, StreamSettings
from .bus_auth import client_tls
from .commands import Command, Empty, Pong, ReadinessCheck, ServiceStatus, ping, status
from .db import Database
from .events import utcnow
from .inbox import ApplyEvent, forget_processed, idempotent
from .logs import setup_logging
from .metrics import PROMETHEUS_CONTENT_TYPE, ServiceMetrics
from .outbox import OutboxRelay
from .settings import ServiceSettings

log = logging.getLogger(__name__)

Setup = Callable[["ServiceRuntime"], Awaitable[None]]
CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class ServiceDefinition:
    """What makes a service itself: its name, settings, migrations and set-up."""

    name: str
    description: str
    settings_type: type[ServiceSettings]
    version: str = __version__
    migrations: Sequence[Path] = ()
    setup: Setup | None = None


@dataclass
class _ConsumerSpec:
    stream_service: str
    name: str
    apply: ApplyEvent
    filter_subject: str | None


@dataclass
class ServiceRuntime:
    """A running service: its database, bus, endpoints, consumers and relay."""

    definition: ServiceDefinition
    settings: ServiceSettings
    metrics: ServiceMetrics = field(init=False)
    db: Database = field(init=False)
    bus: Bus = field(init=False)
    relay: OutboxRelay = field(init=False)
    started_at: Any = field(default_factory=utcnow)
    _commands: list[tuple[Command[Any, Any], Handler]] = field(default_factory=list)
    _consumers: list[_ConsumerSpec] = field(default_factory=list)
    _loops: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _started: bool = False

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(self.definition.name)

    @property
    def name(self) -> str:
        """The service's name (``ipam``, ``boot``...)."""
        return self.definition.name

    def command(self, cmd: Command[Any, Any], handler: Handler) -> None:
        """Serve ``cmd`` with ``handler(request_model) -> response_model``."""
        self._commands.append((cmd, handler))

    def consumer(
        self,
        stream_service: str,
        name: str,
        apply: ApplyEvent,
        *,
        filter_subject: str | None = None,
    ) -> None:
        """Apply events of ``stream_service`` once each, in a transaction.

        The durable consumer is named ``<service>-<name>``.
        """
        self._consumers.append(_ConsumerSpec(stream_service, name, apply, filter_subject))

    def background(self, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``loop()`` for the life of the service (cancelled at stop)."""
        self._loops.append(loop)

    async def start(self) -> None:
        """Migrate, connect, serve, consume; returns once the service is ready."""
        s = self.settings
        telemetry.setup_telemetry(self.name, s)
        await self.db_only()
        self.bus = await Bus.connect(
            s.nats_url,
            service=self.name,
            instance=s.instance_id,
            metrics=self.metrics,
            user=s.nats_user,
            password=s.nats_password.get_secret_value() if s.nats_password else None,
            creds_file=s.nats_creds_file,
            tls=client_tls(s.nats_tls_ca_file, s.nats_tls_cert_file, s.nats_tls_key_file),
        )
        await self.bus.ensure_stream(
            self.name,
            StreamSettings(
                replicas=s.stream_replicas,
                max_age=timedelta(days=s.stream_max_age_days),
                duplicate_window=timedelta(seconds=s.stream_duplicate_window_s),
            ),
        )
        self.relay = OutboxRelay(
            self.db, self.bus, self.metrics, batch=s.outbox_batch, poll_interval=s.outbox_poll_s
        )
        self.command(ping(self.name), self._ping)
        self.command(status(self.name), self._status)
        if self.definition.setup is not None:
            await self.definition.setup(self)
        await self.bus.serve(
            self._commands,
            version=self.definition.version,
            instance=s.instance_id,
            description=self.definition.description,
            max_inflight=s.max_inflight_requests,
        )
        for spec in self._consumers:
            durable = f"{self.name}-{spec.name}"
            await self.bus.consume(
                stream_service=spec.stream_service,
                durable=durable,
                handler=idempotent(self.db, durable, spec.apply),
                filter_subject=spec.filter_subject,
            )
        for loop in [self.relay.run, self._prune_processed, self._checkpoint, *self._loops]:
            self._tasks.append(asyncio.create_task(loop(), name=f"{self.name} {loop.__name__}"))
        self._started = True
        # Everything made so far lives as long as the process: keep it out of the
        # collector's way, or a full collection (~100k objects) stalls requests ~50-100 ms.
        gc.freeze()
        log.info("%s service started", self.name, extra={"version": self.definition.version})

    async def db_only(self) -> None:
        """Open and migrate the database only (for maintenance commands run on the host)."""
        self.db = Database(self.settings.database_url, schema=self.settings.database_schema)
        await self.db.migrate(self.definition.migrations)

    async def stop(self) -> None:
        """Stop serving, finish in-flight work, close the bus and the database."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.relay.publish_pending(), timeout=2)
        await cancel_all(self._tasks)
        await self.bus.close()
        await self.db.dispose()
        log.info("%s service stopped", self.name)

    async def readiness(self) -> ServiceStatus:
        """Check the bus, the database and the service's stream (each with a short timeout)."""
        checks = [
            ReadinessCheck(
                name="bus",
                ok=self._started and self.bus.is_connected,
                detail="" if self._started and self.bus.is_connected else "not connected to NATS",
            ),
            await _check("database", self.db.ping()),
            await _check("stream", self._stream_check()),
        ]
        return ServiceStatus(
            service=self.name,
            instance=self.settings.instance_id,
            version=self.definition.version,
            started_at=self.started_at,
            ready=all(c.ok for c in checks),
            checks=checks,
        )

    async def _stream_check(self) -> None:
        if not await self.bus.stream_exists(self.name):
            raise LookupError("event stream is missing")

    async def _ping(self, _: Empty) -> Pong:
        return Pong(
            service=self.name,
            instance=self.settings.instance_id,
            version=self.definition.version,
            time=utcnow(),
        )

    async def _status(self, _: Empty) -> ServiceStatus:
        return await self.readiness()

    async def _checkpoint(self) -> None:
        if self.db.dialect != "sqlite":
            return
        while True:
            try:
                await self.db.checkpoint()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # busy or away: the next round (or the safety net) does it
                log.debug("SQLite checkpoint skipped: %s", exc)
            await asyncio.sleep(1.0)  # deliberate interval: background checkpoints

    async def _prune_processed(self) -> None:
        keep = timedelta(days=self.settings.stream_max_age_days)
        while True:
            with contextlib.suppress(Exception):
                await forget_processed(self.db, keep)
            await asyncio.sleep(3600)  # deliberate interval: hourly housekeeping


async def _check(name: str, probe: Awaitable[Any]) -> ReadinessCheck:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except Exception as exc:
        return ReadinessCheck(name=name, ok=False, detail=f"{type(exc).__name__}: {exc}"[:200])
    return ReadinessCheck(name=name, ok=True)


def health_app(runtime: ServiceRuntime) -> Starlette:
    """``/healthz`` (alive), ``/readyz`` (bus, database, stream) and ``/metrics`` (Prometheus)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive", "service": runtime.name})

    async def readyz(_: Request) -> Response:
        report = await runtime.readiness()
        return JSONResponse(
            report.model_dump(mode="json"), status_code=200 if report.ready else 503
        )

    async def metrics(_: Request) -> Response:
        return Response(runtime.metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service's main loop owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_until_signalled(
    runtime: ServiceRuntime, http_app: Any, host: str, port: int, *, manage_runtime: bool = True
) -> None:
    """Start the runtime, serve ``http_app``, and stop cleanly on SIGTERM or SIGINT.

    With ``manage_runtime=False`` the app's own lifespan starts and stops the runtime.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if manage_runtime:
        await runtime.start()
    server = EmbeddedServer(
        uvicorn.Config(
            http_app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            ssl_certfile=runtime.settings.http_tls_cert_file,
            ssl_keyfile=runtime.settings.http_tls_key_file,
        )
    )
    http = asyncio.create_task(server.serve())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({http, stopped}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await http
    if manage_runtime:
        await runtime.stop()


def install_fast_event_loop() -> None:
    """Run the service on uvloop: the bus and HTTP hot paths are event-loop bound."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_service(definition: ServiceDefinition, settings: ServiceSettings | None = None) -> None:
    """Entry point of ``python -m metalbus.<service>``: run until SIGTERM/SIGINT."""
    settings = settings or definition.settings_type()
    setup_logging(definition.name, settings.instance_id, settings.log_level, settings.log_format)
    runtime = ServiceRuntime(definition, settings)
    install_fast_event_loop()
    asyncio.run(
        serve_until_signalled(
            runtime, health_app(runtime), settings.health_host, settings.health_port
        )
    )
