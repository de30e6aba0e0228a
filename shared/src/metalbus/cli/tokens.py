"""``tokens``: API tokens (admin only) and ``whoami``."""

from typing import Annotated

import typer

from metalbus.client import ops

from . import kv
from .output import JsonOpt, done, session, show_list, show_one

Pairs = Annotated[list[str] | None, typer.Argument(help="key=value ...", show_default=False)]
COLUMNS = ("id", "name", "role", "created_at", "expires_at", "revoked_at")

app = typer.Typer(
    name="tokens",
    help="API tokens (admin only).\n\nExample: metalbus admin tokens create name=ci role=operator",
    no_args_is_help=True,
)


@app.command("whoami")
def whoami(ctx: typer.Context, json: JsonOpt = False) -> None:
    """The token this profile uses: its id, name and role.

    Example: metalbus admin tokens whoami
    """
    show_one(session(ctx).send(ops.tokens.whoami()), json)


@app.command("list")
def list_(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every token (never their secrets).

    Example: metalbus admin tokens list
    """
    tokens = session(ctx).send(ops.tokens.list())
    show_list(tokens, COLUMNS, json)


@app.command("create")
def create(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Create a token: name, role (admin, operator, readonly), expires_in_days. Its secret
    is printed this once (log in with it: metalbus login <profile> <url> <token>).

    Example: metalbus admin tokens create name=ci role=operator expires_in_days=30
    """
    show_one(session(ctx).send(ops.tokens.create(kv.parse(pairs))), json)


@app.command("revoke")
def revoke(ctx: typer.Context, token_id: str, json: JsonOpt = False) -> None:
    """Revoke a token by id (requests with it fail from now on).

    Example: metalbus admin tokens revoke 3f9a0c2b1d4e
    """
    session(ctx).send(ops.tokens.revoke(token_id))
    done(f"revoked token {token_id}", json, {"revoked": token_id})
