"""A tiny service built on the real runtime, for bus tests: ``echo`` answers with its instance.

Run as a process: ``python -m tests.echo_service <service-name>`` with METALBUS_* settings.
"""

from __future__ import annotations

import asyncio
import sys

from pydantic import BaseModel

from metalbus.shared.commands import Command
from metalbus.shared.errors import Conflict
from metalbus.shared.runtime import ServiceDefinition, ServiceRuntime, run_service
from metalbus.shared.settings import ServiceSettings


class EchoIn(BaseModel):
    text: str
    delay: float = 0.0
    fail: bool = False


class EchoOut(BaseModel):
    text: str
    instance: str


def echo(service: str) -> Command[EchoIn, EchoOut]:
    return Command(service, "echo", EchoIn, EchoOut, timeout=2.0)


def definition(service: str) -> ServiceDefinition:
    async def setup(rt: ServiceRuntime) -> None:
        async def handle(req: EchoIn) -> EchoOut:
            if req.delay:
                await asyncio.sleep(req.delay)  # the test asks for a slow answer on purpose
            if req.fail:
                raise Conflict("asked to fail", field="fail")
            return EchoOut(text=req.text, instance=rt.settings.instance_id)

        rt.command(echo(service), handle)

    return ServiceDefinition(
        name=service, description="echo for tests", settings_type=ServiceSettings, setup=setup
    )


if __name__ == "__main__":
    run_service(definition(sys.argv[1]), ServiceSettings())
