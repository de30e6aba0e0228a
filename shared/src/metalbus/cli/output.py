"""What the resource commands share: the profile's session, tables or JSON, and failures
as one line with an exit code that says what went wrong.

Exit codes: 0 ok; 1 an API error not listed here; 2 bad input (usage, or the API refused
a field: 400/422); 3 not found (404); 4 conflict (409); 5 authentication or permission
(401/403, an unknown profile's token); 6 the API or the service behind it cannot be reached
(connection refused, timeout, 503/504).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from metalbus.client import ApiError, AsyncClient, Call, Client, ClientError, ConnectionFailed
from metalbus.client.errors import (
    BadInput,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unavailable,
)

from . import config
from .config import Profile

T = TypeVar("T")
OK, API_ERROR, USAGE, NOT_FOUND, CONFLICT, AUTH, UNREACHABLE = range(7)
_CODES: list[tuple[type[ClientError], int]] = [
    (BadInput, USAGE),
    (NotFound, NOT_FOUND),
    (Conflict, CONFLICT),
    (Unauthorized, AUTH),
    (Forbidden, AUTH),
    (Unavailable, UNREACHABLE),
    (ConnectionFailed, UNREACHABLE),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (for scripts), not a table")]
out = Console(soft_wrap=False)
err = Console(stderr=True)


class Fail(Exception):
    """A failure the CLI found itself (bad key=value, unknown profile): one line, a code."""

    def __init__(self, message: str, code: int = API_ERROR, *, usage: bool = False) -> None:
        super().__init__(message)
        self.code = USAGE if usage else code


def say(line: str) -> None:
    """One line on stderr, as it is (no wrapping, no markup)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def exit_code(exc: Exception) -> int:
    if isinstance(exc, Fail):
        return exc.code
    return next((code for kind, code in _CODES if isinstance(exc, kind)), API_ERROR)


def error_line(exc: Exception, aliases: Mapping[str, str] | None = None) -> str:
    """``error: host_ip: value is not a valid IP address (422 Validation error)``.

    The API names a field by where it came from (``body.host_ip``); the CLI names it by
    the key the user typed (``host_ip``, or ``host`` when that alias was used).
    """
    if not isinstance(exc, ApiError):
        return f"error: {exc}"
    detail = exc.detail
    if exc.field:
        shown = exc.field.split(".", 1)[1] if exc.field.split(".")[0] in _PLACES else exc.field
        shown = {v: k for k, v in (aliases or {}).items()}.get(shown, shown)
        detail = detail.removeprefix(f"{exc.field}: ").removeprefix(f"{shown}: ")
        detail = f"{shown}: {detail}"
    return f"error: {detail} ({exc.status} {exc.title})"


_PLACES = {"body", "query", "path", "header"}


@dataclass
class Session:
    """A profile in use: its client, made on first use, and how to show answers."""

    profile: Profile
    aliases: dict[str, str] = field(default_factory=dict)
    _client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.profile.url, self.profile.token)
        return self._client

    def async_client(self) -> AsyncClient:
        return AsyncClient(self.profile.url, self.profile.token)

    def send(self, call: Call[T]) -> T:
        return self.client.send(call)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def session(ctx: typer.Context) -> Session:
    """The session of the profile the command line names (``metalbus <profile> ...``),
    opened on first use, so that ``--help`` works without one."""
    found = ctx.find_object(Session)
    if found is not None:
        return found
    top: Any = ctx  # walking up: click's own Context class, not typer's subclass
    while top.parent is not None and top.parent.parent is not None:
        top = top.parent
    name = top.info_name or ""
    try:
        profiles = config.load()
    except ValueError as exc:
        raise Fail(str(exc), USAGE) from exc
    if name not in profiles:
        raise Fail(
            f"no command or profile named {name!r} (log in with: metalbus login {name} URL TOKEN)",
            USAGE,
        )
    made = top.obj = Session(profiles[name])
    return made


def plain(value: Any) -> Any:
    """JSON-ready: models dumped, lists of models too."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple) and all(not isinstance(v, dict | BaseModel) for v in value):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, BaseModel | dict | list):
        return json.dumps(plain(value), separators=(",", ":"), default=str)
    return str(value)


def _get(item: Any, column: str) -> Any:
    for part in column.split("."):
        item = item.get(part) if isinstance(item, dict) else getattr(item, part, None)
    return item


def show_list(items: Sequence[Any], columns: Sequence[str], as_json: bool) -> None:
    """A table of ``columns`` (dotted for nested fields), or the whole objects as JSON."""
    if as_json:
        emit_json(plain(list(items)))
        return
    table = Table(*columns, box=None, header_style="bold")
    for item in items:
        table.add_row(*(cell(_get(item, c)) for c in columns))
    out.print(table)


def show_one(item: Any, as_json: bool, hide: Iterable[str] = ()) -> None:
    """One object as field/value rows, or as JSON."""
    if as_json:
        emit_json(plain(item))
        return
    data = item.model_dump(by_alias=True) if isinstance(item, BaseModel) else dict(item)
    table = Table("field", "value", box=None, show_header=False)
    for key, value in data.items():
        if key not in hide:
            table.add_row(key, cell(value))
    out.print(table)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def done(message: str, as_json: bool, data: Any = None) -> None:
    """A command with nothing to show: a line for people, ``data`` (or {}) for scripts."""
    if as_json:
        emit_json(plain(data) if data is not None else {})
    else:
        out.print(message)
