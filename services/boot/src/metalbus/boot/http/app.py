"""The HTTP boot endpoint that ``dhcp/pxe.py`` points iPXE and UEFI HTTP boot clients at.

Under ``/boot``:

- ``ipxe.cfg``: what iPXE gets from DHCP; it chains to the script of its own UUID, else of
  its own MAC (``${uuid}``, ``${mac:hexhyp}`` are iPXE's own variables).
- ``ipxe.cfg-<mac with dashes>``: the MAC's boot config as an iPXE script (unknown MACs
  enlist), kernel and initrd by URL under the same base.
- ``ipxe.cfg-<uuid>``: the config set with that machine UUID (404 otherwise).
- anything else: the same names TFTP serves (virtual pxelinux/GRUB files, then files under
  the boot-resources root, with the same refusals), with ``Range`` support (a kernel or
  initrd download can resume) and ``HEAD``.

Files are sent by Starlette's ``FileResponse`` (chunked reads in a worker thread), so a
large initrd never stalls the loop. Each GET answered 200 is handed to ``served`` (the
boot events: :meth:`metalbus.boot.tftp.events.TftpEvents.served`, which keeps the boot
files, throttled).
"""

from __future__ import annotations

import os
import re
import stat as stat_mode
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..configs import render
from ..configs.provider import UUID, BootConfigs
from ..tftp.codec import ErrorCode
from ..tftp.files import Refused, resolve_under, safe_relative

_MAC = re.compile(r"ipxe\.cfg-([0-9a-f]{2}(?:[-:][0-9a-f]{2}){5})")
_UUID = re.compile(rf"ipxe\.cfg-({UUID})")
IPXE_MEDIA_TYPE = "text/plain; charset=utf-8"


Served = Callable[[str, str, int], None]
"""A hook taking the name, the client's IP and the size of each file served."""


def boot_app(root: Path, configs: BootConfigs, served: Served | None = None) -> Starlette:
    """The ASGI app serving ``/boot/...`` from ``root`` and ``configs``."""

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/boot"

    async def boot_file(request: Request) -> Response:
        response = await respond(request)
        if served and request.method == "GET" and response.status_code == 200 and request.client:
            size = int(response.headers.get("content-length", "0"))
            served(request.path_params["name"], request.client.host, size)
        return response

    async def respond(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "ipxe.cfg":
            # the machine's UUID first (served only when a config was set with it)
            script = "#!ipxe\nchain ipxe.cfg-${uuid} || chain ipxe.cfg-${mac:hexhyp}\n"
            return PlainTextResponse(script, media_type=IPXE_MEDIA_TYPE)
        if match := _MAC.fullmatch(name.lower()):
            mac = match.group(1).replace("-", ":")
            body = render.ipxe(await configs.get(mac), mac, base_url(request))
            return Response(body, media_type=IPXE_MEDIA_TYPE)
        if match := _UUID.fullmatch(name.lower()):
            found = await configs.source.get_by_uuid(match.group(1))
            if found is None:
                return PlainTextResponse("no config for this UUID", status_code=404)
            body = render.ipxe(found[1], found[0], base_url(request))
            return Response(body, media_type=IPXE_MEDIA_TYPE)
        try:
            relative = safe_relative(name)
            rendered = await configs.render_tftp(relative)
            if rendered is not None:
                return Response(rendered, media_type=IPXE_MEDIA_TYPE)
            real = resolve_under(root, relative)
        except Refused as refused:
            status = 404 if refused.code == ErrorCode.FILE_NOT_FOUND else 403
            return PlainTextResponse(refused.message, status_code=status)
        try:
            file_stat: os.stat_result | None = os.stat(real)
        except OSError:
            file_stat = None
        if file_stat is None or not stat_mode.S_ISREG(file_stat.st_mode):
            return PlainTextResponse("file not found", status_code=404)
        # the stat given: Content-Length is set now, for ``served``
        return FileResponse(real, media_type="application/octet-stream", stat_result=file_stat)

    return Starlette(routes=[Route("/boot/{name:path}", boot_file, methods=["GET", "HEAD"])])
