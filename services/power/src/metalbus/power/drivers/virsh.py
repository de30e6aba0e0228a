"""libvirt domains as machines (the ``virsh`` power type of MAAS), through libvirt-python.

Any libvirt URI works (``qemu+ssh://host/system``, ``qemu:///system``, ``test:///default``).
libvirt is blocking, so every call runs in the driver's executor. Connections are kept per
URI and credentials and reused (libvirt connections are thread-safe); one that fails is
dropped and opened again on the next call.

The boot device is the domain's ``<os><boot dev=.../>`` order in its persistent
definition: libvirt has no "next boot only", so ``persistent: false`` is applied the same
way (as MAAS does), and the firmware mode is the domain's own.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import Field, SecretStr

from metalbus.shared.contract.power import BootDevice, BootMode, DriverName, PowerState

from .base import DriverSettingsModel, FatalError, PowerDriver, TransientError

T = TypeVar("T")
_connections: dict[tuple[str, str | None, str | None], Any] = {}
_lock = threading.Lock()


class VirshSettings(DriverSettingsModel):
    """Which libvirt and which domain."""

    uri: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1024,
            pattern=r"^[a-z][a-z0-9+.-]*://",
            examples=["qemu+ssh://root@kvm1/system"],
        ),
    ]
    domain: Annotated[str, Field(min_length=1, max_length=255, description="name or UUID")]
    username: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    password: Annotated[SecretStr, Field(min_length=1, max_length=255)] | None = None


class VirshDriver(PowerDriver[VirshSettings]):
    """A libvirt domain."""

    name = DriverName.VIRSH
    description = (
        "libvirt domain (any URI); the boot device is always set in the persistent definition"
    )
    settings_model = VirshSettings

    @classmethod
    def host_of(cls, settings: DriverSettingsModel) -> str | None:
        import urllib.parse

        assert isinstance(settings, VirshSettings)
        return urllib.parse.urlsplit(settings.uri).hostname or settings.uri

    async def _run(self, call: Callable[[Any], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(self._blocking, call))

    def _blocking(self, call: Callable[[Any], T]) -> T:
        import libvirt

        key = self._key()
        try:
            return call(self._domain(self._connection()))
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            message = exc.get_error_message() or str(exc)
            if code == libvirt.VIR_ERR_NO_DOMAIN:
                raise FatalError(
                    f"libvirt: no domain {self.settings.domain!r}", field="settings.domain"
                ) from None
            if code == libvirt.VIR_ERR_AUTH_FAILED:
                raise FatalError(
                    f"libvirt: authentication failed: {message}", field="settings.password"
                ) from None
            if code in (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_ARG) and (
                "no connection driver" in message or "unsupported" in message.lower()
            ):
                raise FatalError(f"libvirt: {message}", field="settings.uri") from None
            with _lock:
                _connections.pop(key, None)
            raise TransientError(f"libvirt: {message}") from None

    def _key(self) -> tuple[str, str | None, str | None]:
        s = self.settings
        return (s.uri, s.username, s.password.get_secret_value() if s.password else None)

    def _connection(self) -> Any:
        import libvirt

        key = self._key()
        with _lock:
            conn = _connections.get(key)
            if conn is not None and conn.isAlive():
                return conn
            uri, username, password = key
            if username is None and password is None:
                conn = libvirt.open(uri)
            else:

                def answer(credentials: list[list[Any]], _: object) -> int:
                    for cred in credentials:
                        if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                            cred[4] = username
                        elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                            cred[4] = password
                    return 0

                auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, None]
                conn = libvirt.openAuth(uri, auth, 0)
            _connections[key] = conn
            return conn

    def _domain(self, conn: Any) -> Any:
        import libvirt

        name = self.settings.domain
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        try:
            return conn.lookupByUUIDString(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_DOMAIN):
                raise FatalError(
                    f"libvirt: no domain {name!r} at {self.settings.uri}", field="settings.domain"
                ) from None
            raise

    async def query(self) -> PowerState:
        return await self._run(lambda dom: PowerState.ON if dom.isActive() else PowerState.OFF)

    async def power_on(self) -> None:
        def start(dom: Any) -> None:
            if not dom.isActive():
                dom.create()

        await self._run(start)

    async def power_off(self, soft: bool) -> None:
        def stop(dom: Any) -> None:
            if dom.isActive():
                dom.shutdown() if soft else dom.destroy()

        await self._run(stop)

    async def set_boot_device(self, device: BootDevice, persistent: bool, mode: BootMode) -> None:
        first = "network" if device is BootDevice.PXE else "hd"

        def set_order(dom: Any) -> None:
            import libvirt

            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            os_el = root.find("os")
            if os_el is None:
                raise FatalError("libvirt: the domain has no <os> element")
            for boot in os_el.findall("boot"):
                os_el.remove(boot)
            for dev in (first, "hd" if first == "network" else "network"):
                ET.SubElement(os_el, "boot", {"dev": dev})
            dom.connect().defineXML(ET.tostring(root, encoding="unicode"))

        await self._run(set_order)
