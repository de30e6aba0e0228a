"""``metalbus <profile> <group> <action> ...``: the profile comes first, as in MAAS.

The root group (:class:`RootGroup`) knows its own commands (``up``, ``login``, ...); any
other name is a profile, and gets the resource groups (:data:`resources`) under it. The
profile group turns every client failure into one line on stderr and an exit code
(:mod:`.output`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer

# typer vendors click: its classes, not click's, are the ones these overrides see.
from typer._click import Context
from typer._click.exceptions import ClickException
from typer.core import TyperGroup
from typer.exceptions import Abort

from metalbus.client import ClientError

from . import config
from .output import Fail, Session, error_line, exit_code, say


class ResourceGroup(TyperGroup):
    """The commands under one profile; failures end here as one line and an exit code."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not isinstance(exc, Fail | ClientError):
                raise
            found = ctx.find_object(Session)
            say(error_line(exc, found.aliases if found else None))
            raise typer.Exit(exit_code(exc)) from None
        finally:
            if (found := ctx.find_object(Session)) is not None:
                found.close()


class RootGroup(TyperGroup):
    """``metalbus``: its own commands, then the profiles (as commands, for completion)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Usage errors as one line too (typer draws a panel): ``error: Missing argument
        'id'. (see: metalbus admin fabrics show --help)``, exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has shown the help
                hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
                say(f"error: {exc.format_message()}{hint}")
            sys.exit(exc.exit_code)
        except Abort:
            say("error: aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def get_command(self, ctx: Context, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        from .resources import app

        group = typer.main.get_command(app)
        group.name = name
        group.help = f"Operate metalbus as profile {name!r} (see: metalbus profiles)."
        return group

    def list_commands(self, ctx: Context) -> list[str]:
        own = super().list_commands(ctx)
        try:
            names = sorted(config.load())
        except ValueError:
            names = []
        return own + [n for n in names if n not in own]
