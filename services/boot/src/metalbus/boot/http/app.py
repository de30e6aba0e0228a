"""The HTTP boot endpoint that ``dhcp/pxe.py`` points iPXE and UEFI HTTP boot clients at.

Under ``/boot``:

- ``ipxe.cfg``: what iPXE gets from DHCP; it chains to the script of its own MAC
  (``${mac:hexhyp}`` is iPXE's own variable).
- ``ipxe.cfg-<mac with dashes>``: the MAC's boot config as an iPXE script (unknown MACs
  enlist), kernel and initrd by URL under the same base.
- anything else: the same names TFTP serves (virtual pxelinux/GRUB files, then files under
  the boot-resources root, with the same refusals), with ``Range`` support (a kernel or
  initrd download can resume) and ``HEAD``.

Files are sent by Starlette's ``FileResponse`` (chunked reads in a worker thread), so a
large initrd never stalls the loop.
"""

from __future__ import annotations

import os
import re
import stat as stat_mode
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..configs import render
from ..configs.provider import BootConfigs
from ..tftp.codec import ErrorCode
from ..tftp.files import Refused, resolve_under, safe_relative

_MAC = re.compile(r"ipxe\.cfg-([0-9a-f]{2}(?:[-:][0-9a-f]{2}){5})")
IPXE_MEDIA_TYPE = "text/plain; charset=utf-8"


def boot_app(root: Path, configs: BootConfigs) -> Starlette:
    """The ASGI app serving ``/boot/...`` from ``root`` and ``configs``."""

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/boot"

    async def boot_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "ipxe.cfg":
            script = "#!ipxe\nchain ipxe.cfg-${mac:hexhyp}\n"
            return PlainTextResponse(script, media_type=IPXE_MEDIA_TYPE)
        if match := _MAC.fullmatch(name.lower()):
            mac = match.group(1).replace("-", ":")
            body = render.ipxe(await configs.get(mac), mac, base_url(request))
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
            is_file = stat_mode.S_ISREG(os.stat(real).st_mode)
        except OSError:
            is_file = False
        if not is_file:
            return PlainTextResponse("file not found", status_code=404)
        return FileResponse(real, media_type="application/octet-stream")

    return Starlette(routes=[Route("/boot/{name:path}", boot_file, methods=["GET", "HEAD"])])
