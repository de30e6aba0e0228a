"""Webhook: power through any HTTP service (MAAS's ``webhook`` power type).

Each action is a request to its own URL with its own method; the query's answer is matched
against two regular expressions, one for on and one for off. A response that matches
neither, or both, is an error (no guessing). Optional basic or bearer authentication.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import httpx
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from metalbus.shared.contract.power import BootDevice, BootMode, DriverName, PowerState

from .base import DriverSettingsModel, FatalError, PowerDriver, TransientError

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


class WebhookSettings(DriverSettingsModel):
    """URLs and methods of each action, and how to read the state from the query."""

    power_on_url: AnyHttpUrl
    power_on_method: Method = "POST"
    power_off_url: AnyHttpUrl
    power_off_method: Method = "POST"
    soft_off_url: AnyHttpUrl | None = Field(None, description="unset: soft off is not offered")
    soft_off_method: Method = "POST"
    power_query_url: AnyHttpUrl
    power_query_method: Method = "GET"
    state_on_regex: Annotated[str, Field(min_length=1, max_length=500)] = r"status.*:.*running"
    state_off_regex: Annotated[str, Field(min_length=1, max_length=500)] = r"status.*:.*stopped"
    username: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    password: Annotated[SecretStr, Field(min_length=1, max_length=255)] | None = None
    token: Annotated[SecretStr, Field(min_length=1, max_length=4096)] | None = Field(
        None, description="sent as `Authorization: Bearer <token>`"
    )
    verify_tls: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0

    _on = field_validator("state_on_regex")(lambda cls, v: _regex(v))
    _off = field_validator("state_off_regex")(lambda cls, v: _regex(v))


class WebhookDriver(PowerDriver[WebhookSettings]):
    """Power through HTTP calls to URLs of the operator's choosing."""

    name = DriverName.WEBHOOK
    description = "HTTP requests per action; the state is read with a regex on the query's answer"
    settings_model = WebhookSettings
    boot_device = False

    def __init__(self, settings: WebhookSettings, executor: Any) -> None:
        super().__init__(settings, executor)
        s = settings
        headers = {"Authorization": f"Bearer {s.token.get_secret_value()}"} if s.token else {}
        auth = (s.username, s.password.get_secret_value()) if s.username and s.password else None
        self._client = httpx.AsyncClient(
            auth=auth, headers=headers, verify=s.verify_tls, timeout=s.timeout_s
        )

    @classmethod
    def host_of(cls, settings: DriverSettingsModel) -> str | None:
        assert isinstance(settings, WebhookSettings)
        return settings.power_query_url.host

    def can_soft_off(self) -> bool:
        return self.settings.soft_off_url is not None

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, url: AnyHttpUrl) -> str:
        try:
            response = await self._client.request(method, str(url))
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook: {method} {url}: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise FatalError(
                f"webhook: {url} refused the credentials ({response.status_code})",
                field="settings.token" if self.settings.token else "settings.password",
            )
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise TransientError(f"webhook: {method} {url}: {response.status_code}")
        if response.status_code >= 400:
            raise FatalError(f"webhook: {method} {url}: {response.status_code}")
        return response.text

    async def power_on(self) -> None:
        await self._call(self.settings.power_on_method, self.settings.power_on_url)

    async def power_off(self, soft: bool) -> None:
        s = self.settings
        if soft:
            if s.soft_off_url is None:
                raise FatalError("webhook: no soft_off_url is set", field="settings.soft_off_url")
            await self._call(s.soft_off_method, s.soft_off_url)
        else:
            await self._call(s.power_off_method, s.power_off_url)

    async def query(self) -> PowerState:
        s = self.settings
        body = await self._call(s.power_query_method, s.power_query_url)
        on = re.search(s.state_on_regex, body) is not None
        off = re.search(s.state_off_regex, body) is not None
        if on == off:
            raise FatalError(
                "webhook: the query's answer matches "
                + ("both state regexes" if on else "neither state regex"),
                field="settings.state_on_regex",
            )
        return PowerState.ON if on else PowerState.OFF

    async def set_boot_device(self, device: BootDevice, persistent: bool, mode: BootMode) -> None:
        raise FatalError("webhook BMCs cannot set the boot device")
