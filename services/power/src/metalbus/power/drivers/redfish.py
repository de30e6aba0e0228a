"""Redfish (DMTF): ``ComputerSystem`` power state, ``ComputerSystem.Reset``, boot override.

Plain HTTP through httpx (asynchronous: nothing blocks the loop). The system is
``/redfish/v1/Systems/<system_id>``, or the only member of the Systems collection when
``system_id`` is unset. The boot override is a PATCH carrying the ETag the GET returned
(``If-Match``), so a change made meanwhile by someone else is not overwritten blindly.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from pydantic import AnyHttpUrl, Field, SecretStr

from metalbus.shared.contract.power import BootDevice, BootMode, DriverName, PowerState

from .base import DriverSettingsModel, FatalError, PowerDriver, TransientError

# Transitional states count as where the machine still is.
_STATES = {
    "On": PowerState.ON,
    "PoweringOff": PowerState.ON,
    "Paused": PowerState.ON,
    "Off": PowerState.OFF,
    "PoweringOn": PowerState.OFF,
}


class RedfishSettings(DriverSettingsModel):
    """How to reach a Redfish service and which system it powers."""

    url: Annotated[AnyHttpUrl, Field(description="the BMC, e.g. https://10.0.0.9")]
    system_id: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        None, description="member of /redfish/v1/Systems; unset: the only one there"
    )
    username: Annotated[str, Field(min_length=1, max_length=255)]
    password: Annotated[SecretStr, Field(min_length=1, max_length=255)]
    verify_tls: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0


class RedfishDriver(PowerDriver[RedfishSettings]):
    """Redfish over HTTPS (or HTTP) with basic authentication."""

    name = DriverName.REDFISH
    description = "Redfish: ComputerSystem power state, Reset action and boot override"
    settings_model = RedfishSettings

    def __init__(self, settings: RedfishSettings, executor: Any) -> None:
        super().__init__(settings, executor)
        self._client = httpx.AsyncClient(
            base_url=str(settings.url).rstrip("/"),
            auth=(settings.username, settings.password.get_secret_value()),
            verify=settings.verify_tls,
            timeout=settings.timeout_s,
            headers={"Accept": "application/json"},
        )
        self._system_path: str | None = None

    @classmethod
    def host_of(cls, settings: DriverSettingsModel) -> str | None:
        assert isinstance(settings, RedfishSettings)
        return settings.url.host

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise TransientError(f"Redfish: {method} {path} timed out") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"Redfish: {method} {path}: {type(exc).__name__}") from None
        status = response.status_code
        if status < 400:
            return response
        detail = _message(response)
        if status in (401, 403):
            raise FatalError(
                f"Redfish: the BMC refused the credentials ({status})", field="settings.password"
            )
        if status == 404:
            raise FatalError(f"Redfish: {path} does not exist", field="settings.system_id")
        if status in (409, 412, 429) or status >= 500:
            raise TransientError(f"Redfish: {method} {path}: {status} {detail}")
        raise FatalError(f"Redfish: {method} {path}: {status} {detail}")

    async def _system(self) -> str:
        if self._system_path is None:
            if self.settings.system_id:
                self._system_path = f"/redfish/v1/Systems/{self.settings.system_id}"
            else:
                members = (await self._call("GET", "/redfish/v1/Systems")).json().get("Members", [])
                if len(members) != 1:
                    raise FatalError(
                        f"Redfish: the BMC has {len(members)} systems; set system_id",
                        field="settings.system_id",
                    )
                self._system_path = urlsplit(members[0]["@odata.id"]).path.rstrip("/")
        return self._system_path

    async def _get_system(self) -> tuple[dict[str, Any], str | None]:
        response = await self._call("GET", await self._system())
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            raise TransientError("Redfish: the system resource is not JSON") from None
        return body, response.headers.get("ETag")

    async def query(self) -> PowerState:
        system, _ = await self._get_system()
        state = _STATES.get(str(system.get("PowerState")))
        if state is None:
            raise TransientError(f"Redfish: unexpected PowerState {system.get('PowerState')!r}")
        return state

    async def _reset(self, reset_type: str) -> None:
        system, _ = await self._get_system()
        action = system.get("Actions", {}).get("#ComputerSystem.Reset", {})
        target = action.get("target") or f"{await self._system()}/Actions/ComputerSystem.Reset"
        allowed = action.get("ResetType@Redfish.AllowableValues")
        if allowed is not None and reset_type not in allowed:
            raise FatalError(f"Redfish: the BMC does not allow ResetType {reset_type}")
        await self._call("POST", urlsplit(target).path, json={"ResetType": reset_type})

    async def power_on(self) -> None:
        await self._reset("On")

    async def power_off(self, soft: bool) -> None:
        await self._reset("GracefulShutdown" if soft else "ForceOff")

    async def set_boot_device(self, device: BootDevice, persistent: bool, mode: BootMode) -> None:
        system, etag = await self._get_system()
        boot: dict[str, str] = {
            "BootSourceOverrideTarget": "Pxe" if device is BootDevice.PXE else "Hdd",
            "BootSourceOverrideEnabled": "Continuous" if persistent else "Once",
        }
        # The mode is sent only when it has to change: many BMCs (and sushy-tools on some
        # libvirt hosts) refuse to set it at all, even to the value it already has. A BMC
        # that does not report it is assumed to boot legacy.
        wanted = "UEFI" if mode is BootMode.EFI else "Legacy"
        if system.get("Boot", {}).get("BootSourceOverrideMode", "Legacy") != wanted:
            boot["BootSourceOverrideMode"] = wanted
        headers = {"If-Match": etag} if etag else {}
        await self._call("PATCH", await self._system(), json={"Boot": boot}, headers=headers)


def _message(response: httpx.Response) -> str:
    try:
        info = response.json().get("error", {})
        extended = info.get("@Message.ExtendedInfo") or [{}]
        return str(extended[0].get("Message") or info.get("message") or "")[:200]
    except (ValueError, AttributeError):
        return response.text[:200]
