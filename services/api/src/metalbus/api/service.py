"""The api service's entry point.

``python -m metalbus.api`` serves the API; ``python -m metalbus.api create-token`` mints a token.

``create-token`` writes straight into the api database, for an operator on the host who
lost the admin token (it needs the same settings as the service).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from metalbus.shared.contract.api import Role
from metalbus.shared.logs import setup_logging
from metalbus.shared.runtime import ServiceRuntime, install_fast_event_loop, serve_until_signalled

from .app import DEFINITION, create_app
from .settings import ApiSettings
from .tokens import issue


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metalbus.api")
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("serve", help="serve the HTTP API (the default)")
    mint = sub.add_parser("create-token", help="create an API token directly in the database")
    mint.add_argument("--name", default="admin (created on the host)")
    mint.add_argument("--role", choices=[r.value for r in Role], default=Role.ADMIN.value)
    args = parser.parse_args(argv)
    settings = ApiSettings()
    setup_logging("api", settings.instance_id, settings.log_level, settings.log_format)
    if args.action == "create-token":
        asyncio.run(_create_token(settings, args.name, Role(args.role)))
        return
    app = create_app(settings)
    install_fast_event_loop()
    asyncio.run(
        serve_until_signalled(
            app.state.runtime, app, settings.host, settings.port, manage_runtime=False
        )
    )


async def _create_token(settings: ApiSettings, name: str, role: Role) -> None:
    runtime = ServiceRuntime(DEFINITION, settings)
    await runtime.db_only()
    try:
        async with runtime.db.transaction() as session:
            _, bearer = await issue(session, name=name, role=role)
    finally:
        await runtime.db.dispose()
    print(bearer, file=sys.stdout)
