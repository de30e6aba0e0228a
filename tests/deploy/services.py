"""What the deployment files are checked against: each service's settings, port and routes,
taken from the code itself (the settings classes and the HTTP apps the services serve)."""

from __future__ import annotations

import importlib
import os
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from metalbus.shared import subjects
from metalbus.shared.runtime import ServiceDefinition, ServiceRuntime, health_app
from metalbus.shared.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def definition(service: str) -> ServiceDefinition:
    """The service's definition: what ``metalbus serve <service>`` runs."""
    module = importlib.import_module(f"metalbus.{service}.service")
    found = module.DEFINITION
    assert isinstance(found, ServiceDefinition)
    assert callable(module.main), f"metalbus.{service}.service has no main()"
    return found


def settings_type(service: str) -> type[ServiceSettings]:
    return definition(service).settings_type


def prefix(service: str) -> str:
    return str(settings_type(service).model_config["env_prefix"])


def variables(service: str) -> set[str]:
    """Every environment variable the service reads."""
    return {prefix(service) + name.upper() for name in settings_type(service).model_fields}


def service_of_variable(name: str) -> str | None:
    for service in subjects.SERVICES:
        if name.startswith(prefix(service)):
            return service
    return None


@contextmanager
def exactly_this_environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ is ``env`` and nothing else inside the block, restored after it."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_from(service: str, env: dict[str, str]) -> ServiceSettings:
    """The settings the service would build from exactly this environment."""
    with exactly_this_environment(env):
        return settings_type(service)()


def listen(service: str, settings: ServiceSettings) -> tuple[str, int]:
    """Where the service's health endpoints are: the api serves them on its API port
    (metalbus.api.service.main), every other service on health_host:health_port
    (metalbus.shared.runtime.run_service)."""
    if service == "api":
        return settings.host, settings.port  # type: ignore[attr-defined]
    return settings.health_host, settings.health_port


@cache
def served_paths(service: str) -> frozenset[str]:
    """The paths the service's HTTP server routes (built, not started)."""
    if service == "api":
        from metalbus.api.app import create_app
        from metalbus.api.settings import ApiSettings

        app: Any = create_app(ApiSettings())
    else:
        runtime = ServiceRuntime(definition(service), settings_type(service)())
        app = health_app(runtime)
    return frozenset(getattr(route, "path", "") for route in app.routes) - {""}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's last stage (what every container starts with)."""
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "FROM":
            env = {}
        elif word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def metalbus_environment(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("METALBUS_")}
