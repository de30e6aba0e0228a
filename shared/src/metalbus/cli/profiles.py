"""``metalbus login``, ``logout`` and ``profiles``: named API endpoints with their tokens."""

import sys
from typing import Annotated

import typer

from metalbus.client import Client, ClientError, ops
from metalbus.client.http import base_url

from . import config
from .output import USAGE, JsonOpt, emit_json, error_line, exit_code, out, say, show_list


def _fail(message: str, code: int) -> typer.Exit:
    say(message)
    return typer.Exit(code)


def login(
    ctx: typer.Context,
    profile: Annotated[str, typer.Argument(help="a name for this API and token")],
    url: Annotated[str, typer.Argument(help="the API: http://host:5240")],
    token: Annotated[
        str | None,
        typer.Argument(help="the API token; - reads it from stdin; left out, it is asked for"),
    ] = None,
) -> None:
    """Check a token against an API and keep both as a profile (file mode 0600).

    Example: metalbus login admin http://127.0.0.1:5240 mb_...

    Then: metalbus admin subnets list
    """
    if token == "-":
        token = sys.stdin.readline().strip()
    elif token is None:
        token = typer.prompt("API token", hide_input=True)
    if not token:
        raise _fail("error: the token is empty", USAGE)
    if profile.startswith("-") or profile in getattr(ctx.find_root().command, "commands", {}):
        raise _fail(f"error: {profile!r} cannot be a profile name (a command has it)", USAGE)
    try:
        with Client(url, token) as client:
            me = client.send(ops.tokens.whoami())
    except ClientError as exc:
        raise _fail(error_line(exc), exit_code(exc)) from None
    try:
        profiles = config.load()
    except ValueError as exc:
        raise _fail(f"error: {exc}", USAGE) from None
    profiles[profile] = config.Profile(profile, base_url(url), token, me.get("role"))
    path = config.save(profiles)
    out.print(
        f"logged in: profile {profile!r} at {base_url(url)} as {me.get('name')!r} "
        f"(role {me.get('role')}), saved in {path}",
        markup=False,
        highlight=False,
    )


def logout(profile: Annotated[str, typer.Argument(help="the profile to forget")]) -> None:
    """Forget a profile and its token.

    Example: metalbus logout admin
    """
    profiles = config.load()
    if profiles.pop(profile, None) is None:
        raise _fail(f"error: no profile named {profile!r}", USAGE)
    config.save(profiles)
    out.print(f"logged out: profile {profile!r} forgotten", markup=False, highlight=False)


def list_profiles(json: JsonOpt = False) -> None:
    """The profiles: their names, URLs and roles (never their tokens).

    Example: metalbus profiles
    """
    rows = [{"name": p.name, "url": p.url, "role": p.role} for p in config.load().values()]
    if json:
        emit_json(rows)
    elif not rows:
        out.print("no profiles yet: metalbus login <profile> <url> <token>", markup=False)
    else:
        show_list(rows, ("name", "url", "role"), False)
