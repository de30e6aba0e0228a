"""``machines`` (also ``machine``): the inventory, its life-cycle actions, and power.

MAAS spellings are taken: ``mac_addresses=`` (one interface per MAC), ``power_type=`` and
``power_parameters_<key>=`` (the BMC's driver and settings). ``--wait`` follows a long
action (commission, deploy, release, test) on the live stream until the machine settles.
"""

import asyncio
from typing import Annotated, Any

import typer

from metalbus.client import AsyncClient, ops
from metalbus.client.ops import MACHINE_ACTIONS
from metalbus.shared.events import RawEvent

from . import kv, progress
from .output import (
    API_ERROR,
    CONFLICT,
    Fail,
    JsonOpt,
    Session,
    done,
    say,
    session,
    show_list,
    show_one,
)

Pairs = Annotated[list[str] | None, typer.Argument(help="key=value ...", show_default=False)]
SystemId = Annotated[str, typer.Argument(help="the machine's system_id")]
Wait = Annotated[bool, typer.Option("--wait", help="follow its events until the machine settles")]
Timeout = Annotated[float, typer.Option(help="with --wait: give up after this many seconds")]
COLUMNS = (
    "system_id", "hostname", "status", "cores", "memory", "zone", "pool", "owner",
    "power.driver",
)  # fmt: skip
HIDE = ("interfaces", "disks")
MOVING = {"commissioning", "deploying", "releasing", "testing"}
FAILED = {"failed_commissioning", "failed_deployment", "failed_releasing"}
ACTION_HELP = {
    "commission": "Commission: boot it, let it report its hardware, then Ready.",
    "release": "Release: power off, free its addresses (a composed VM is decomposed).",
    "abort": "Abort commissioning, deployment or testing.",
    "mark-broken": "Mark it broken.",
    "mark-fixed": "Mark a broken machine fixed (Ready).",
    "rescue-mode": "Boot the ephemeral environment (rescue mode).",
    "exit-rescue-mode": "Leave rescue mode.",
    "test": "Test: boot the ephemeral environment, which reports.",
}

app = typer.Typer(
    name="machines",
    help="Machines: add, commission, allocate, deploy, release, power.\n\n"
    "Example: metalbus admin machines allocate cores=4 memory=8192 zone=lab\n\n"
    "Example: metalbus admin machines deploy 7k1cyr --wait",
    no_args_is_help=True,
)


@app.command("list")
def list_(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """List the machines (filters: status, zone, pool, hostname).

    Example: metalbus admin machines list status=ready zone=lab
    """
    query = kv.parse(pairs, allowed=("status", "zone", "pool", "hostname"))
    found = session(ctx).send(ops.machines.list(**query))
    show_list(found, COLUMNS, json)


@app.command("show")
def show(ctx: typer.Context, system_id: SystemId, json: JsonOpt = False) -> None:
    """Show one machine (its interfaces and disks with --json).

    Example: metalbus admin machine show 7k1cyr
    """
    show_one(session(ctx).send(ops.machines.get(system_id)), json, hide=() if json else HIDE)


def _body(pairs: list[str] | None) -> dict[str, Any]:
    """A machine's fields, MAAS spellings turned into metalbus's."""
    body = kv.parse(pairs, lists=("tags", "mac_addresses"))
    if macs := body.pop("mac_addresses", None):
        body["interfaces"] = [{"name": f"eth{i}", "mac": mac} for i, mac in enumerate(macs)]
    power = body.setdefault("power", {})
    if driver := body.pop("power_type", None):
        power["driver"] = driver
    for key in [k for k in body if k.startswith("power_parameters_")]:
        power.setdefault("settings", {})[key.removeprefix("power_parameters_")] = body.pop(key)
    if not power:
        del body["power"]
    return body


@app.command("add")
def add(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Add a machine by hand (it starts New): hostname, domain, architecture,
    mac_addresses (or interfaces as JSON), power_type and power_parameters_<key>
    (or power.driver, power.settings.<key>), zone, pool, tags.

    Example: metalbus admin machines add hostname=node1 mac_addresses=52:54:00:00:00:01
    power_type=ipmi power_parameters_address=10.0.0.50 power_parameters_password=secret
    """
    machine = session(ctx).send(ops.machines.create(_body(pairs)))
    show_one(machine, json, hide=() if json else HIDE)


@app.command("update")
def update(
    ctx: typer.Context, system_id: SystemId, pairs: Pairs = None, json: JsonOpt = False
) -> None:
    """Change the fields given (hostname, domain, architecture, power, zone, pool, tags).

    Example: metalbus admin machine update 7k1cyr zone=lab tags=gpu,ssd
    """
    machine = session(ctx).send(ops.machines.update(system_id, _body(pairs)))
    show_one(machine, json, hide=() if json else HIDE)


@app.command("delete")
def delete(ctx: typer.Context, system_id: SystemId, json: JsonOpt = False) -> None:
    """Delete a machine that is not in use (its BMC, addresses and VM go too).

    Example: metalbus admin machine delete 7k1cyr
    """
    session(ctx).send(ops.machines.delete(system_id))
    done(f"deleted machine {system_id}", json, {"deleted": system_id})


@app.command("history")
def history(ctx: typer.Context, system_id: SystemId, json: JsonOpt = False) -> None:
    """A machine's status changes, oldest first.

    Example: metalbus admin machine history 7k1cyr
    """
    changes = session(ctx).send(ops.machines.history(system_id))
    show_list(changes, ("at", "previous", "status", "action", "message"), json)


@app.command("allocate")
def allocate(ctx: typer.Context, pairs: Pairs = None, json: JsonOpt = False) -> None:
    """Allocate the first Ready machine that fits (composing one on a KVM host when none
    does, unless compose=false): cores, memory, architecture, tags, zone, pool, storage,
    interfaces, system_id.

    Example: metalbus admin machines allocate cores=2 memory=4096 storage=root:20
    """
    body = kv.parse(pairs, lists=("tags",))
    show_one(session(ctx).send(ops.machines.allocate(body)), json, hide=() if json else HIDE)


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    system_id: SystemId,
    install_kvm: Annotated[
        bool, typer.Option("--install-kvm", help="make it a KVM host once deployed")
    ] = False,
    wait: Wait = False,
    timeout: Timeout = 3600.0,
    json: JsonOpt = False,
) -> None:
    """Deploy an allocated machine.

    Example: metalbus admin machine deploy 7k1cyr --wait
    """
    _act(ctx, system_id, ops.machines.deploy(system_id, install_kvm), wait, timeout, json)


def _action_command(action: str) -> None:
    def act(
        ctx: typer.Context,
        system_id: SystemId,
        wait: Wait = False,
        timeout: Timeout = 3600.0,
        json: JsonOpt = False,
    ) -> None:
        _act(ctx, system_id, ops.machines.action(system_id, action), wait, timeout, json)

    act.__doc__ = f"{ACTION_HELP[action]}\n\nExample: metalbus admin machine {action} 7k1cyr"
    app.command(action)(act)


for _action in MACHINE_ACTIONS:
    _action_command(_action)


def _act(
    ctx: typer.Context, system_id: str, call: Any, wait: bool, timeout: float, json: bool
) -> None:
    s = session(ctx)
    if not wait:
        show_one(s.send(call), json, hide=() if json else HIDE)
        return
    machine = asyncio.run(_follow(s, system_id, call, timeout, quiet=json))
    show_one(machine, json, hide=() if json else HIDE)
    if machine["status"] in FAILED:
        raise Fail(f"status: {machine['status']}: {machine.get('flow_error') or ''}".rstrip(": "))
    if machine["status"] in MOVING:
        raise Fail(f"status: still {machine['status']} after {timeout:g}s", API_ERROR)


async def _follow(s: Session, system_id: str, call: Any, timeout: float, quiet: bool) -> Any:
    """Run the action, printing the machine's status changes and flow steps until it is
    no longer moving; then the machine as it is."""
    state: dict[str, Any] = {"status": None}

    def on_event(event: RawEvent) -> bool:
        data = event.data
        if data.get("system_id", event.subject) != system_id:
            return False
        if ".machine.deleted." in event.type:  # released, and its VM decomposed with it
            state["status"] = "deleted"
            if not quiet:
                say(f"{system_id} deleted")
        elif "status" in data:
            state["status"] = data["status"]
            if not quiet:
                say(f"{data.get('previous')} -> {data['status']} ({data.get('message', '')})")
        elif "step" in data and not quiet:
            say(f"  {data.get('flow')}: {data['step']} {data.get('detail', '')}".rstrip())
        return state["status"] is not None and state["status"] not in MOVING

    async def run(client: AsyncClient) -> Any:
        answer = await client.send(call)
        if answer["status"] not in MOVING:
            state["status"] = answer["status"]  # nothing to follow (mark-broken...)
        return answer

    types = ["io.metalbus.api.machine.*"]
    await progress.follow(s, types, run, on_event, status=f"{system_id}: working", wait_s=timeout)
    async with s.async_client() as client:
        return await client.send(ops.machines.get(system_id))


def _power(ctx: typer.Context, system_id: str) -> tuple[Session, int]:
    s = session(ctx)
    bmc = s.send(ops.machines.get(system_id))["power"].get("bmc_id")
    if bmc is None:
        raise Fail(f"power: machine {system_id} has no BMC (set power_type=...)", CONFLICT)
    return s, bmc


@app.command("power-on")
def power_on(ctx: typer.Context, system_id: SystemId, json: JsonOpt = False) -> None:
    """Power a machine on through its BMC.

    Example: metalbus admin machine power-on 7k1cyr
    """
    s, bmc = _power(ctx, system_id)
    show_one(s.send(ops.power.on(bmc)), json)


@app.command("power-off")
def power_off(
    ctx: typer.Context,
    system_id: SystemId,
    soft: Annotated[bool, typer.Option("--soft", help="ask the OS to shut down")] = False,
    json: JsonOpt = False,
) -> None:
    """Power a machine off through its BMC.

    Example: metalbus admin machine power-off 7k1cyr --soft
    """
    s, bmc = _power(ctx, system_id)
    show_one(s.send(ops.power.off(bmc, soft)), json)


@app.command("query-power-state")
def query_power_state(ctx: typer.Context, system_id: SystemId, json: JsonOpt = False) -> None:
    """Ask a machine's BMC for its power state now.

    Example: metalbus admin machine query-power-state 7k1cyr
    """
    s, bmc = _power(ctx, system_id)
    show_one(s.send(ops.power.query(bmc)), json)
