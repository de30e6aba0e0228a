"""The FastAPI application: the HTTP front door of metalbus."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response

from metalbus.shared import __version__
from metalbus.shared.contract.api import Role
from metalbus.shared.metrics import PROMETHEUS_CONTENT_TYPE
from metalbus.shared.runtime import ServiceDefinition, ServiceRuntime

from . import problems, tokens, ui
from .body_limit import BodyLimitMiddleware
from .edge import EdgeMiddleware
from .eventlog import EventHub, register_consumers
from .input_guard import no_nul_in_input
from .machines import consumers as machine_consumers
from .machines.flows import FlowDriver
from .models import Problem
from .routes import (
    compose,
    devices,
    discovery,
    events,
    ipam,
    machines,
    pools,
    power,
    services,
    zones,
)
from .routes import tokens as token_routes
from .routes import webhooks as webhook_routes
from .settings import ApiSettings
from .webhooks.engine import WebhookEngine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


async def _setup(runtime: ServiceRuntime) -> None:
    register_consumers(runtime)
    machine_consumers.register(runtime)


DEFINITION = ServiceDefinition(
    name="api",
    description="HTTP front door: auth, machines, event log",
    settings_type=ApiSettings,
    migrations=[MIGRATIONS],
    setup=_setup,
)


async def bootstrap_admin(runtime: ServiceRuntime, settings: ApiSettings) -> None:
    """Make sure an admin can get in: install the configured token, or make one and show it once."""
    async with runtime.db.transaction() as session:
        if await tokens.has_active_admin(session):
            return
        _, bearer = await tokens.issue(
            session,
            name="admin (bootstrap)",
            role=Role.ADMIN,
            bearer=settings.bootstrap_token.get_secret_value()
            if settings.bootstrap_token
            else None,
        )
    if settings.bootstrap_token:
        log.info("installed the configured bootstrap admin token")
    elif settings.admin_token_file is not None:
        path = settings.admin_token_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(bearer + "\n")
        log.info("wrote the first admin token to %s", path)
    else:
        # Printed once, on stdout only (never into the logs): the operator's way in.
        print(f"metalbus admin token (shown once): {bearer}", file=sys.stdout, flush=True)


def create_app(settings: ApiSettings) -> FastAPI:
    """Build the API application; the runtime starts and stops with the app's lifespan."""
    runtime = ServiceRuntime(DEFINITION, settings)
    hub = EventHub(queue_size=settings.sse_queue)
    flows = FlowDriver(runtime, settings)
    if settings.flows_enabled:
        runtime.background(flows.run)
        runtime.background(flows.sweep_timeouts)
    webhooks = WebhookEngine(runtime, settings)
    webhooks.register()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        app.state.tokens = tokens.TokenChecker(runtime.db, settings.token_cache_s)
        await bootstrap_admin(runtime, settings)
        await hub.start(runtime.bus)
        await webhooks.start()
        try:
            yield
        finally:
            await webhooks.stop()
            await hub.stop()
            await runtime.stop()

    app = FastAPI(
        title="metalbus",
        version=__version__,
        description="Provision bare-metal machines and KVM virtual machines. "
        "Every route under /api/v1 needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        dependencies=[Depends(no_nul_in_input)],
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        # FastAPI's own request span would start the trace from the headers a second time,
        # beside EdgeMiddleware's (which also carries the request id); metrics and logs
        # are the runtime's. So FastAPI's built-in telemetry stays off.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.hub = hub
    app.state.flows = flows
    app.state.webhooks = webhooks
    # added first, so it runs inside the edge: a 413 carries the request id too
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(EdgeMiddleware)
    problems.install(app)
    for router in (
        token_routes.router,
        services.router,
        events.router,
        *ipam.routers,
        power.router,
        compose.router,
        discovery.router,
        machines.router,
        zones.router,
        pools.router,
        webhook_routes.router,
        devices.router,
    ):
        app.include_router(router)
    ui.install(app)  # the web UI under /ui (and / when nothing else has it)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(problem.pop("$defs", {}))
            schemas["Problem"] = problem
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["health"], summary="Liveness (no token needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": "api"}

    @app.get(
        "/readyz", tags=["health"], summary="Readiness: bus, database, stream (no token needed)"
    )
    async def readyz() -> JSONResponse:
        report = await runtime.readiness()
        return JSONResponse(
            report.model_dump(mode="json"), status_code=200 if report.ready else 503
        )

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (no token needed)")
    async def metrics(_: Request) -> Response:
        return Response(runtime.metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    return app
