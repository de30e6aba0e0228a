"""``pod`` (also ``pods``, ``kvm-host``, ``vm-host``): KVM hosts and composing VMs on them.

MAAS spellings are taken as they are: ``power_address=`` is the libvirt URI, ``power_pass=``
its password, and ``host=`` the host's address (``host_ip``), so MAAS's
``pod update <id> host=<host> default_macvlan_mode=<mode>`` works as written.
"""

import asyncio
from typing import Annotated, Any

import typer

from metalbus.client import AsyncClient, ops
from metalbus.shared.contract import compose as cp
from metalbus.shared.events import RawEvent

from . import kv, progress
from .output import JsonOpt, Session, done, say, session, show_list, show_one

Pairs = Annotated[list[str] | None, typer.Argument(help="key=value ...", show_default=False)]
Id = Annotated[int, typer.Argument(help="the KVM host's id", min=1)]
ALIASES = {"power_address": "uri", "power_pass": "password", "host": "host_ip"}
COLUMNS = (
    "id", "name", "uri", "host_ip", "cores", "memory", "usage.vms", "default_macvlan_mode",
    "zone", "pool",
)  # fmt: skip
VM_COLUMNS = ("id", "host_id", "name", "cores", "memory", "status", "power_state")
HIDE = ("storage_pools", "networks", "interfaces")  # long: shown with --json

app = typer.Typer(
    name="pod",
    help="KVM hosts (MAAS: pods, VM hosts) and the VMs composed on them.\n\n"
    "Example: metalbus admin pod add uri=qemu+ssh://root@kvm1/system password=...\n\n"
    "Example: metalbus admin pod update 1 host=10.0.0.2 default_macvlan_mode=bridge",
    no_args_is_help=True,
)


@app.command("list")
def list_(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """List the KVM hosts (filters: zone, pool).

    Example: metalbus admin pods list zone=lab
    """
    query = kv.parse(pairs, allowed=("zone", "pool"))
    show_list(list(session(ctx).client.each(ops.pods.list, **query)), COLUMNS, json)


@app.command("show")
def show(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
    """Show one KVM host (its pools, networks and interfaces with --json).

    Example: metalbus admin pod show 1
    """
    show_one(session(ctx).send(ops.pods.get(id)), json, hide=() if json else HIDE)


def _body(ctx: typer.Context, pairs: list[str] | None, model: type) -> dict[str, Any]:
    # A refused field is named as the user typed it: the aliases used are remembered.
    typed = {pair.partition("=")[0] for pair in pairs or ()}
    session(ctx).aliases.update({k: v for k, v in ALIASES.items() if k in typed})
    return kv.parse(pairs, model, aliases=ALIASES)


@app.command("add")
def add(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Add a KVM host; it is discovered at once (credentials are never shown again).

    Fields: uri (or power_address), name, password (or power_pass), ssh_key, host_ip,
    zone, pool, tags, cpu_over_commit_ratio, memory_over_commit_ratio,
    default_storage_pool, default_macvlan_mode.

    Example: metalbus admin pod add uri=qemu+ssh://root@kvm1/system name=kvm1 tags=lab,ssd
    """
    body = _body(ctx, pairs, cp.KvmHostCreate)
    body.pop("type", None)  # MAAS's type=virsh: the only kind metalbus has
    show_one(session(ctx).send(ops.pods.create(body)), json, hide=() if json else HIDE)


@app.command("update")
def update(ctx: typer.Context, id: Id, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Change the fields given of a KVM host (a new uri is rediscovered).

    Example: metalbus admin pod update 1 host=10.0.0.2 default_macvlan_mode=bridge
    """
    body = _body(ctx, pairs, cp.KvmHostUpdate)
    show_one(session(ctx).send(ops.pods.update(id, body)), json, hide=() if json else HIDE)


@app.command("refresh")
def refresh(ctx: typer.Context, id: Id, json: JsonOpt = False) -> None:
    """Discover a KVM host again (resources, networks, VMs).

    Example: metalbus admin pod refresh 1
    """
    show_one(session(ctx).send(ops.pods.refresh(id)), json, hide=() if json else HIDE)


@app.command("delete")
def delete(
    ctx: typer.Context,
    id: Id,
    decompose: Annotated[
        bool, typer.Option("--decompose", help="decompose the VMs metalbus composed first")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Forget a KVM host.

    Example: metalbus admin pod delete 1 --decompose
    """
    session(ctx).send(ops.pods.delete(id, decompose=decompose))
    done(f"deleted KVM host {id}", json, {"deleted": id})


@app.command("compose")
def compose(
    ctx: typer.Context,
    id: Id,
    pairs: Pairs = None,
    json: JsonOpt = False,
) -> None:
    """Compose VMs on a KVM host, following their events as they are made.

    Fields: cores, memory (MiB), architecture, hostname, zone, pool, storage
    (label:size(tag),... in GB), interfaces (label:key=value,...;...), count, start.

    Example: metalbus admin pod compose 1 cores=2 memory=4096 storage=root:20 count=2
    """
    s = session(ctx)
    spec = kv.parse(pairs, cp.ComposeSpec)
    result = asyncio.run(_compose(s, id, spec, quiet=json))
    if json:
        show_one(result, json)
        return
    show_list(result.vms, VM_COLUMNS, False)
    for warning in result.warnings:
        say(f"warning: {warning}")


async def _compose(s: Session, id: int, spec: dict[str, Any], quiet: bool) -> cp.ComposeResult:
    """Compose, a progress line per VM as its event arrives."""
    asked = spec.get("count")
    expected = [int(asked) if isinstance(asked, str) and asked.isdigit() else 1]
    seen = []

    def on_event(event: RawEvent) -> bool:
        line = _progress(event, id)
        if line is not None:
            seen.append(line)
            if not quiet:
                say(f"[{len(seen)}/{expected[0]}] {line}")
        return len(seen) >= expected[0]

    async def run(client: AsyncClient) -> cp.ComposeResult:
        result = await client.send(ops.pods.compose(id, spec))
        expected[0] = len(result.vms)  # what was made is what to wait for
        return result

    status = f"composing {expected[0]} VM(s) on KVM host {id}"
    return await progress.follow(
        s, ["io.metalbus.compose.vm.*"], run, on_event, status=status, wait_s=EVENTS_WAIT_S
    )


EVENTS_WAIT_S = 10.0


def _progress(event: RawEvent, host_id: int) -> str | None:
    data = event.data
    vm = data.get("vm") or {}
    if vm.get("host_id", data.get("host_id")) != host_id:
        return None
    if event.type.startswith("io.metalbus.compose.vm.composed"):
        return f"composed {vm.get('name')} (id {vm.get('id')}, {vm.get('status')})"
    if event.type.startswith("io.metalbus.compose.vm.failed"):
        return f"failed {data.get('name')} at {data.get('stage')}: {data.get('message')}"
    return None
