"""The service runtime as an operator sees it: health, readiness, metrics and logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import httpx
from opentelemetry import trace

from metalbus.shared.logs import JsonFormatter, request_id_var
from metalbus.shared.runtime import ServiceRuntime, health_app
from metalbus.shared.settings import ServiceSettings
from tests.conftest import DatabaseFactory
from tests.echo_service import definition
from tests.helpers import InLoopServer, NatsServer, async_wait_for


async def test_readiness_follows_the_bus_and_metrics_are_exposed(
    nats_server: NatsServer, db_factory: DatabaseFactory
) -> None:
    url, schema = db_factory()
    rt = ServiceRuntime(
        definition("readiness"),
        ServiceSettings(nats_url=nats_server.url, database_url=url, database_schema=schema),
    )
    await rt.start()
    try:
        async with InLoopServer(health_app(rt)) as base, httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200
            assert {c["name"]: c["ok"] for c in ready.json()["checks"]} == {
                "bus": True,
                "database": True,
                "stream": True,
            }
            metrics = (await http.get("/metrics")).text
            assert "metalbus_bus_connected 1.0" in metrics
            assert 'metalbus_service_info{service="readiness"} 1.0' in metrics

            nats_server.stop()

            async def not_ready() -> httpx.Response | None:
                response = await http.get("/readyz")
                return response if response.status_code == 503 else None

            response = await async_wait_for(not_ready, 10, "readiness to drop with the bus")
            checks = {c["name"]: c for c in response.json()["checks"]}
            assert checks["bus"]["ok"] is False and checks["database"]["ok"] is True
            assert (await http.get("/healthz")).status_code == 200  # alive, just not ready
            assert "metalbus_bus_connected 0.0" in (await http.get("/metrics")).text

            nats_server.start()

            async def ready_again() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await async_wait_for(ready_again, 20, "readiness to come back with the bus")
    finally:
        await rt.stop()


def test_json_logs_carry_service_trace_and_request_ids() -> None:
    formatter = JsonFormatter("ipam", "host-1")
    record = logging.LogRecord(
        "metalbus.test", logging.INFO, __file__, 1, "allocated %s", ("10.0.0.5",), None
    )
    record.subnet = "10.0.0.0/24"
    context = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
    )
    token = request_id_var.set("req-42")
    try:
        with trace.use_span(trace.NonRecordingSpan(context)):
            line = json.loads(formatter.format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "allocated 10.0.0.5"
    assert (line["service"], line["instance"], line["level"]) == ("ipam", "host-1", "INFO")
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["span_id"] == "00f067aa0ba902b7"
    assert line["request_id"] == "req-42"
    assert line["subnet"] == "10.0.0.0/24"


def test_a_service_installs_alone_with_only_its_own_dependencies(tmp_path: Path) -> None:
    """pip-install ipam with shared into an empty venv: it runs, and carries no web framework."""
    repo = Path(__file__).resolve().parents[2]
    venv = tmp_path / "venv"
    uv = [str(Path(sys.executable).parent / "uv")]
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            str(repo / "shared"),
            str(repo / "services" / "ipam"),
        ],
        check=True,
        timeout=300,
    )
    python = str(venv / "bin" / "python")
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u, metalbus.ipam.service as s;"
            "print(s.DEFINITION.name, u.find_spec('fastapi') is None,"
            " u.find_spec('metalbus.api') is None)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["ipam", "True", "True"]
    help_text = subprocess.run(
        [str(venv / "bin" / "metalbus"), "--help"], capture_output=True, text=True
    )
    assert "serve" in help_text.stdout and "up" in help_text.stdout
