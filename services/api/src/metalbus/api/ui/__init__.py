"""The web UI under ``/ui``: server-rendered page shells that one small script fills from /api/v1.

Why shells: the API token stays in the browser (``sessionStorage``) and goes with every
``/api/v1`` call as a bearer, so a page request carries no credentials and the server keeps
no session; the pages hold layout, forms and the choices the server knows (statuses,
macvlan modes, which action is legal from which status), and ``ui.js`` fetches the data and
follows the live event stream. Nothing is fetched from anywhere but this server: the script,
the stylesheet and the icon ship in the package (``static/``), and the Content-Security-Policy
says so to the browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from metalbus.shared import __version__
from metalbus.shared.contract.compose import HostOrigin, MacvlanMode
from metalbus.shared.contract.discovery import MakeKnown
from metalbus.shared.contract.machines import MachineStatus

from ..machines.states import TRANSITIONS, Action
from ..routes.forwarding import IdPath

PREFIX = "/ui"
HERE = Path(__file__).parent
# Starlette's environment escapes every .html template (select_autoescape).
templates = Jinja2Templates(directory=HERE / "templates")

NAV = (
    ("machines", "Machines"),
    ("pods", "KVM hosts"),
    ("subnets", "Subnets"),
    ("discoveries", "Discoveries"),
)

# The operator's actions on a machine page: (action, button label). Which are offered for a
# machine comes from the state machine's own table, so the UI never drifts from it.
MACHINE_ACTIONS = (
    (Action.COMMISSION, "Commission"),
    (Action.ALLOCATE, "Allocate"),
    (Action.DEPLOY, "Deploy"),
    (Action.RELEASE, "Release"),
    (Action.ABORT, "Abort"),
    (Action.TEST, "Test"),
    (Action.RESCUE_MODE, "Rescue mode"),
    (Action.EXIT_RESCUE_MODE, "Exit rescue mode"),
    (Action.MARK_BROKEN, "Mark broken"),
    (Action.MARK_FIXED, "Mark fixed"),
)

SECURITY_HEADERS = {
    # Everything comes from this origin; the script sets bar widths through the CSSOM,
    # which style-src does not restrict, so no inline style or script is needed.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

SystemId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
# The kinds of address "Add as device" may make, as the discovery contract allows them.
DEVICE_ADDRESS_KINDS = get_args(MakeKnown.model_fields["alloc_type"].annotation)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _page(request: Request, template: str, section: str, title: str, **data: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        template,
        {
            "nav": NAV,
            "section": section,
            "title": title,
            "version": __version__,
            "prefix": PREFIX,
            # The script's entry point for this page (``pages.<name>`` in ui.js).
            "page": template.removesuffix(".html"),
            **data,
        },
    )
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("", response_class=RedirectResponse)
@router.get("/", response_class=RedirectResponse)
async def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/machines", status_code=307)


@router.get("/login", response_class=HTMLResponse)
async def login(request: Request) -> HTMLResponse:
    return _page(request, "login.html", "login", "Log in")


@router.get("/machines", response_class=HTMLResponse)
async def machines(request: Request) -> HTMLResponse:
    return _page(request, "machines.html", "machines", "Machines", statuses=list(MachineStatus))


@router.get("/machines/{system_id}", response_class=HTMLResponse)
async def machine(request: Request, system_id: SystemId) -> HTMLResponse:
    legal = {
        action.value: sorted(s.value for s in TRANSITIONS[action]) for action, _ in MACHINE_ACTIONS
    }
    return _page(
        request,
        "machine.html",
        "machines",
        f"Machine {system_id}",
        system_id=system_id,
        actions=MACHINE_ACTIONS,
        legal=legal,
    )


@router.get("/pods", response_class=HTMLResponse)
async def pods(request: Request) -> HTMLResponse:
    return _page(request, "pods.html", "pods", "KVM hosts", origins=list(HostOrigin))


@router.get("/pods/{pod_id}", response_class=HTMLResponse)
async def pod(request: Request, pod_id: IdPath) -> HTMLResponse:
    return _page(
        request,
        "pod.html",
        "pods",
        f"KVM host {pod_id}",
        pod_id=pod_id,
        macvlan_modes=list(MacvlanMode),
        default_macvlan=MacvlanMode.BRIDGE,
        origins=list(HostOrigin),
    )


@router.get("/subnets", response_class=HTMLResponse)
async def subnets(request: Request) -> HTMLResponse:
    return _page(request, "subnets.html", "subnets", "Subnets")


@router.get("/discoveries", response_class=HTMLResponse)
async def discoveries(request: Request) -> HTMLResponse:
    return _page(
        request,
        "discoveries.html",
        "discoveries",
        "Discoveries",
        alloc_types=DEVICE_ADDRESS_KINDS,
    )


async def _root() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


def install(app: FastAPI) -> None:
    """Serve the UI's pages and files on ``app``, and send ``/`` there if nothing else has it."""
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    if not any(getattr(route, "path", None) == "/" for route in app.routes):
        app.add_api_route("/", _root, include_in_schema=False, response_class=RedirectResponse)
