"""The image's command, ``metalbus serve <service>``, really starts each service and serves
the probes the manifests point at; SIGTERM (what Docker and Kubernetes send) stops it
cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from metalbus.cli.up import free_port
from metalbus.shared import subjects
from tests.helpers import NatsServer, wait_for

METALBUS = str(Path(sys.executable).parent / "metalbus")


def test_metalbus_serve_runs_every_service(nats_server: NatsServer, tmp_path: Path) -> None:
    ports: dict[str, int] = {}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for service in subjects.SERVICES:
            prefix = f"METALBUS_{service.upper()}_"
            ports[service] = free_port()
            env = {
                f"{prefix}NATS_URL": nats_server.url,
                f"{prefix}DATABASE_URL": f"sqlite:///{tmp_path / service}.db",
                f"{prefix}LOG_LEVEL": "WARNING",
            }
            if service == "api":
                env[f"{prefix}PORT"] = str(ports[service])
                env[f"{prefix}ADMIN_TOKEN_FILE"] = str(tmp_path / "admin-token")
            else:
                env[f"{prefix}HEALTH_PORT"] = str(ports[service])
            log = (tmp_path / f"{service}.log").open("wb")
            processes[service] = subprocess.Popen(
                [METALBUS, "serve", service], env=env, cwd=tmp_path, stdout=log, stderr=log
            )

        def all_ready() -> bool:
            for service, process in processes.items():
                assert process.poll() is None, (tmp_path / f"{service}.log").read_text()[-2000:]
            try:
                return all(
                    httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
                    for port in ports.values()
                )
            except httpx.TransportError:
                return False

        wait_for(all_ready, 90, "every service's /readyz")
        for port in ports.values():
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for service, process in processes.items():
            assert process.wait(30) == 0, (tmp_path / f"{service}.log").read_text()[-2000:]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
