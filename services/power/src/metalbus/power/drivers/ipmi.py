"""IPMI 2.0 (RMCP+, "lanplus") through pyghmi.

pyghmi is blocking, so every call runs in the driver's executor. pyghmi keeps logged-in
sessions (per address, port, user, password and K_g) alive in its own I/O thread and hands
the same session to the next ``Command``, so polling logs in once per BMC, not once per
query (a warm sweep is one round trip per BMC).

pyghmi keeps a session alive (a keep-alive every 25-29 s) until it fails: it never lets go
of one by itself. A BMC deleted, re-addressed or given new credentials would keep its old
session alive for the life of the process, holding one of the BMC's few session slots
(often four). :meth:`IpmiDriver.release_idle` logs out of the sessions no query or action
used for a while; the service calls it periodically.

pyghmi negotiates the cipher suite itself: 17 (HMAC-SHA256, AES) first, then 3 (HMAC-SHA1,
AES). ``cipher_suite`` *requires* one of them: a BMC that settles on the other is refused.

Two races in pyghmi's shared session machinery hung every driver thread once a few hundred
BMCs were polled at once; :mod:`.pyghmi_fixes` fixes them before the first use.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr

from metalbus.shared.contract.power import BootDevice, BootMode, DriverName, PowerState

from . import pyghmi_fixes
from .base import DriverSettingsModel, FatalError, PowerDriver, TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)
PRIVILEGES = {"user": 2, "operator": 3, "administrator": 4}
_CHASSIS_CONTROL = {"off": 0, "on": 1, "soft_off": 5}
# Phrases pyghmi (and BMCs, through it) use for failures retrying cannot fix, and the
# setting at fault; the first that matches wins. "Insufficient resources to create a
# session" (the BMC's session slots are full) is not among them: it passes.
_FATAL = (
    ("wrong kg", "settings.kg"),  # RAKP4 integrity code: the K_g differs
    ("unauthorized name", "settings.username"),
    ("username length", "settings.username"),
    ("username too long", "settings.username"),
    ("password", "settings.password"),
    ("integrity check value", "settings.password"),  # RAKP3 refused by the BMC
    ("invalid role", "settings.privilege"),
    ("privilege", "settings.privilege"),
    ("cipher suite", "settings.cipher_suite"),
    ("unauthorized", None),
    ("invalid parameter", None),
    ("unrecognized parameter", None),
)
# IPMI completion codes worth retrying: node busy, out of space, command timeout.
_BUSY_CODES = (0xC0, 0xC4, 0xC3)
# The pyghmi sessions this process used, and when last (monotonic): what release_idle reaps.
_last_used: dict[Any, float] = {}
_last_used_lock = threading.Lock()


class IpmiSettings(DriverSettingsModel):
    """How to reach an IPMI 2.0 BMC over the LAN."""

    address: Annotated[str, Field(min_length=1, max_length=255, description="host or IP")]
    port: Annotated[int, Field(ge=1, le=65535)] = 623
    username: Annotated[str, Field(min_length=1, max_length=16)]
    password: Annotated[SecretStr, Field(min_length=1, max_length=20)]
    kg: Annotated[SecretStr, Field(min_length=1, max_length=20)] | None = Field(
        None, description="the BMC key K_g (two-key login); unset: the password is used"
    )
    privilege: Literal["user", "operator", "administrator"] = "administrator"
    cipher_suite: Literal[3, 17] | None = Field(
        None, description="require this cipher suite (3: SHA-1, 17: SHA-256); unset: either"
    )


class IpmiDriver(PowerDriver[IpmiSettings]):
    """IPMI 2.0 lanplus via pyghmi."""

    name = DriverName.IPMI
    description = "IPMI 2.0 over the LAN (RMCP+), via pyghmi"
    settings_model = IpmiSettings

    @classmethod
    def host_of(cls, settings: DriverSettingsModel) -> str | None:
        assert isinstance(settings, IpmiSettings)
        return settings.address

    async def _run(self, call: Callable[[Any], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(self._blocking, call))

    def _blocking(self, call: Callable[[Any], T]) -> T:
        # Imported here: pyghmi starts its I/O thread on first use, not at import of metalbus.
        from pyghmi.exceptions import IpmiException
        from pyghmi.ipmi.command import Command

        pyghmi_fixes.apply()

        s = self.settings
        try:
            # Bytes, not str: pyghmi keys its session cache on what it is given but compares
            # with the bytes it stores, so str credentials never find (or free) a session.
            ipmi = Command(
                bmc=s.address,
                userid=s.username.encode(),
                password=s.password.get_secret_value().encode(),
                port=s.port,
                kg=s.kg.get_secret_value().encode() if s.kg else None,
                privlevel=PRIVILEGES[s.privilege],
            )
            _touch(ipmi.ipmi_session)
            try:
                self._check_cipher_suite(ipmi)
                return call(ipmi)
            finally:
                _touch(ipmi.ipmi_session)
        except IpmiException as exc:
            raise _classify(str(exc), getattr(exc, "ipmicode", 0)) from None
        except (OSError, AssertionError) as exc:
            raise TransientError(f"IPMI: {type(exc).__name__}: {exc}") from None

    def _check_cipher_suite(self, ipmi: Any) -> None:
        wanted = self.settings.cipher_suite
        if wanted is None:
            return
        negotiated = 17 if ipmi.ipmi_session.currhashlen == 16 else 3
        if negotiated != wanted:
            raise FatalError(
                f"the BMC negotiated cipher suite {negotiated}, the settings require {wanted}",
                field="settings.cipher_suite",
            )

    @classmethod
    async def release_idle(cls, executor: Executor, idle_s: float) -> int:
        """Log out of the sessions no call used for ``idle_s``; how many were let go.

        A session in a command is left for the next round, as is one whose logout failed.
        A call that picks up a session in the instant it is logged out fails as a transient
        error (retried); the timestamp is renewed at the start of every call, so only a
        session unused for ``idle_s`` is at risk.
        """
        now = time.monotonic()
        with _last_used_lock:
            idle = [s for s, at in _last_used.items() if now - at >= idle_s]
            for session in idle:
                del _last_used[session]
        loop = asyncio.get_running_loop()
        done = await asyncio.gather(*(loop.run_in_executor(executor, _logout, s) for s in idle))
        with _last_used_lock:
            for session, released in zip(idle, done, strict=True):
                if not released:  # due again at the next round, unless used meanwhile
                    _last_used.setdefault(session, now - idle_s)
        return sum(done)

    @staticmethod
    def _raw(ipmi: Any, command: int, data: tuple[int, ...] = ()) -> dict[str, Any]:
        response: dict[str, Any] = ipmi.raw_command(netfn=0, command=command, data=data)
        if "error" in response:
            raise _classify(str(response["error"]), int(response.get("code", 0) or 0))
        return response

    async def query(self) -> PowerState:
        def status(ipmi: Any) -> PowerState:
            data = self._raw(ipmi, 0x01)["data"]  # Get Chassis Status
            return PowerState.ON if data[0] & 1 else PowerState.OFF

        return await self._run(status)

    async def _control(self, what: str) -> None:
        await self._run(lambda ipmi: self._raw(ipmi, 0x02, (_CHASSIS_CONTROL[what],)))

    async def power_on(self) -> None:
        await self._control("on")

    async def power_off(self, soft: bool) -> None:
        await self._control("soft_off" if soft else "off")

    async def set_boot_device(self, device: BootDevice, persistent: bool, mode: BootMode) -> None:
        target = "network" if device is BootDevice.PXE else "hd"

        def set_bootdev(ipmi: Any) -> None:
            answer = ipmi.set_bootdev(target, persist=persistent, uefiboot=mode is BootMode.EFI)
            if isinstance(answer, dict) and "error" in answer:
                raise _classify(str(answer["error"]), 0)

        await self._run(set_bootdev)


def _touch(session: Any) -> None:
    with _last_used_lock:
        _last_used[session] = time.monotonic()


def _logout(session: Any) -> bool:
    """Log out of one session: True once pyghmi let go of it, False to try again later."""
    if session.broken:
        return True  # pyghmi already let go of it (the BMC stopped answering)
    if session._isincommand():
        return False  # picked up again meanwhile
    try:
        session.logout()
    except Exception as exc:  # pyghmi raises what it likes; the session stays, so retry
        log.info("IPMI: logging out of an idle session failed (%r); trying again later", exc)
        return False
    return True


def _classify(message: str, code: int) -> TransientError | FatalError:
    lowered = message.lower()
    if code in _BUSY_CODES:
        return TransientError(f"IPMI: the BMC is busy: {message}")
    for phrase, field in _FATAL:
        if phrase in lowered:
            return FatalError(f"IPMI: the BMC refused: {message}", field=field)
    return TransientError(f"IPMI: {message}")
