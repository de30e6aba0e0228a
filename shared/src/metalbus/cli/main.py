"""``metalbus``: start the embedded system, run one service, and operate metalbus.

``metalbus login <profile> <url> <token>`` keeps a profile; then
``metalbus <profile> <group> <action> ...`` (see :mod:`.resources`), as MAAS's CLI does.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from metalbus.shared import __version__, subjects

from . import profiles
from .dispatch import RootGroup

app = typer.Typer(
    cls=RootGroup,
    name="metalbus",
    help="Provision bare-metal machines and KVM virtual machines.\n\n"
    "Log in once, then name the profile first: metalbus login admin http://127.0.0.1:5240 "
    "TOKEN; metalbus admin subnets list. Exit codes: 0 ok, 1 API error, 2 bad input, "
    "3 not found, 4 conflict, 5 auth, 6 cannot reach the API.",
    no_args_is_help=True,
    add_completion=True,
)
app.command()(profiles.login)
app.command()(profiles.logout)
app.command("profiles")(profiles.list_profiles)


@app.command()
def up(
    var_dir: Annotated[
        Path, typer.Option(help="where data, logs and the JetStream store live")
    ] = Path("var"),
    api_host: Annotated[str, typer.Option(help="address the HTTP API listens on")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option(help="port of the HTTP API (0 picks a free one)")] = 5240,
    nats_url: Annotated[
        str | None,
        typer.Option(
            envvar="NATS_URL", help="use this NATS (with JetStream) instead of starting one"
        ),
    ] = None,
) -> None:
    """Start NATS and every service on SQLite under VAR_DIR; Ctrl-C stops them all.

    Example: metalbus up --api-port 5240
    """
    from .up import Launcher

    raise typer.Exit(
        Launcher(var_dir=var_dir, api_host=api_host, api_port=api_port, nats_url=nats_url).run()
    )


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"one of: {', '.join(subjects.SERVICES)}")],
) -> None:
    """Run one service in the foreground, configured by its METALBUS_<SERVICE>_* variables.

    Example: METALBUS_IPAM_NATS_URL=nats://nats:4222 metalbus serve ipam
    """
    if service not in subjects.SERVICES:
        raise typer.BadParameter(
            f"unknown service {service!r}; one of {', '.join(subjects.SERVICES)}"
        )
    try:
        module = importlib.import_module(f"metalbus.{service}.service")
    except ModuleNotFoundError as exc:
        raise typer.BadParameter(
            f"the {service} service is not installed (pip install metalbus-{service})"
        ) from exc
    # A service's main() may parse sys.argv (the api's has sub-commands): it must not see
    # "serve <service>", which is ours.
    sys.argv = [f"metalbus serve {service}"]
    module.main()


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
