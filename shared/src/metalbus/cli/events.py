"""``events``: the event log, and ``tail --follow`` on the live stream."""

import json as jsonlib
from typing import Annotated, Any

import typer

from metalbus.client import ops

from .output import JsonOpt, out, session, show_list, show_one

Types = Annotated[
    list[str] | None,
    typer.Option("--type", "-t", help="event type; a trailing * matches a prefix (repeatable)"),
]
COLUMNS = ("seq", "time", "type", "subject")

app = typer.Typer(
    name="events",
    help="What happened: the event log and the live stream.\n\n"
    "Example: metalbus admin events tail --follow --type 'io.metalbus.compose.*'",
    no_args_is_help=True,
)


@app.command("list")
def list_(
    ctx: typer.Context,
    types: Types = None,
    subject: Annotated[str | None, typer.Option(help="only events about this object")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 50,
    json: JsonOpt = False,
) -> None:
    """The newest events first.

    Example: metalbus admin events list --type 'io.metalbus.ipam.*' --limit 20
    """
    page = session(ctx).send(ops.events.list(type=types or [], subject=subject, limit=limit))
    show_list(page["items"], COLUMNS, json)


@app.command("show")
def show(ctx: typer.Context, event_id: str, json: JsonOpt = False) -> None:
    """One event by id, with its data.

    Example: metalbus admin events show 0f3c...
    """
    show_one(session(ctx).send(ops.events.get(event_id)), json)


@app.command("tail")
def tail(
    ctx: typer.Context,
    types: Types = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, max=1000)] = 10,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new events as they happen")
    ] = False,
    count: Annotated[
        int | None, typer.Option(min=1, help="with --follow: stop after this many new events")
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            help="with --follow: start right after this event id (none missed), not the last lines"
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """The last events, oldest first; with --follow, then the new ones as they happen
    (Ctrl-C stops). Nothing falls between the two: the stream resumes after the last one.

    Example: metalbus admin events tail -n 5 --follow --type 'io.metalbus.power.*'
    """
    s = session(ctx)
    last = after
    if lines and after is None:
        page = s.send(ops.events.list(type=types or [], limit=lines))
        for event in reversed(page["items"]):
            _print(event, json)
            last = event["id"]
    if not follow:
        return
    seen = 0
    try:
        for raw in s.client.stream_events(types or [], last_event_id=last):
            _print(raw.model_dump(mode="json"), json)
            seen += 1
            if count is not None and seen >= count:
                return
    except KeyboardInterrupt:
        return


def _print(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.file.write(jsonlib.dumps(event, default=str) + "\n")
        out.file.flush()
        return
    data = jsonlib.dumps(event.get("data", {}), separators=(",", ":"), default=str)
    line = f"{event['time']}  {event['type']}  {event.get('subject') or '-'}  {data}"
    out.print(line, markup=False, highlight=False, overflow="ignore", crop=False, soft_wrap=True)
