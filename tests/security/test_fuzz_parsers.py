"""The wire-facing parsers, fuzzed: whatever they are fed, each returns a value or raises its
own typed error, and where an encoder exists, what it parsed encodes back to the same value.

Each parser gets arbitrary input and valid inputs mutated (tests/security/fuzz_inputs.py).
The suite runs a few hundred examples per parser; ``make fuzz`` runs the same properties
with METALBUS_FUZZ_EXAMPLES raised, then bench/fuzz.py under atheris. Inputs that once
crashed a parser are kept below as explicit examples.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from metalbus.api.machines import allocation
from metalbus.boot.configs.provider import BootConfigs, MemoryConfigs
from metalbus.boot.configs.render import BootConfig
from metalbus.boot.dhcp import codec as dhcp
from metalbus.boot.http.app import boot_app
from metalbus.boot.tftp import codec as tftp
from metalbus.boot.tftp.files import Refused, resolve_under, safe_relative
from metalbus.compose import specs
from metalbus.discovery import frames
from metalbus.shared.errors import ValidationFailed
from tests.security.fuzz_inputs import (
    INTERFACE_WORDS,
    STORAGE_WORDS,
    constraint_text,
    dhcp_seeds,
    frame_seeds,
    mdns_seeds,
    mutated,
    tftp_seeds,
)

EXAMPLES = int(os.environ.get("METALBUS_FUZZ_EXAMPLES", "300"))
# No deadline: two shared cores make per-example timing noisy; a hang still fails the test
# through pytest-timeout.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 10))


# -- DHCP --------------------------------------------------------------------------------


# Found by atheris: option 52 repeated inside the overloaded file field was concatenated
# into a value build() wrote back and parse() then refused (the round trip broke).
OVERLOAD_IN_FILE = base64.b64decode(
    "AQEGAAAAAAcAAAAAAAAAAAAAAAAAAAAACgAAAVJUABI0VgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwAAgQAAAAAANFb39/cCAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABjglNjNAEB/w=="
)


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated(dhcp_seeds())))
@example(OVERLOAD_IN_FILE)
def test_dhcp_parse_returns_a_packet_or_malformed_and_round_trips(data: bytes) -> None:
    try:
        packet = dhcp.parse(data)
    except dhcp.MalformedPacket:
        return
    # the typed reads the server makes never raise either
    packet.message_type, packet.mac, packet.client_arch, packet.user_classes  # noqa: B018
    packet.ip_option(dhcp.Opt.REQUESTED_IP), packet.text_option(dhcp.Opt.HOSTNAME)
    assert dhcp.parse(dhcp.build(packet)) == packet


# -- TFTP --------------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated(tftp_seeds())))
def test_tftp_parse_returns_a_packet_or_malformed_and_round_trips(data: bytes) -> None:
    try:
        packet = tftp.parse(data)
    except tftp.MalformedPacket:
        return
    assert tftp.parse(tftp.build(packet)) == packet


# -- ARP / NDP / mDNS frames -------------------------------------------------------------


@FUZZ
@given(
    st.one_of(st.binary(max_size=300), mutated(frame_seeds())),
    st.one_of(st.none(), st.integers(0, 4095)),
)
def test_frames_give_sightings_or_malformed(frame: bytes, vid: int | None) -> None:
    try:
        found = frames.parse(frame, vid)
    except frames.MalformedFrame as malformed:
        assert malformed.reason  # a metric label
        return
    for sighting in found:
        assert sighting.vid is None or 1 <= sighting.vid <= 4095


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(mdns_seeds())))
def test_mdns_messages_give_names_or_malformed(message: bytes) -> None:
    try:
        names = frames.mdns_names(message)
    except frames.MalformedFrame:
        return
    assert all(name.hostname for name in names)


# -- HTTP boot paths ---------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=120))
def test_boot_file_names_are_refused_or_stay_under_the_root(name: str) -> None:
    root = Path("/nonexistent-boot-root")
    try:
        real = resolve_under(root, safe_relative(name))
    except Refused:
        return
    assert real == str(root) or real.startswith(f"{root}/")


_PATH_CHARS = st.sampled_from([*"ab./\\-:%09", "..", "%2e%2e", "%00", "%ff", "ipxe.cfg-"])


@pytest.fixture(scope="module")
def boot_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("boot-root")
    (root / "ephemeral").mkdir()
    (root / "ephemeral" / "vmlinuz").write_bytes(b"kernel")
    (root / "escape").symlink_to("/etc")
    return root


@FUZZ
@given(path=st.one_of(st.text(max_size=60), st.lists(_PATH_CHARS, max_size=20).map("".join)))
@example(path="escape/passwd")
@example(path="ipxe.cfg-52-54-00-12-34-56")
def test_http_boot_paths_never_answer_5xx(boot_root: Path, path: str) -> None:
    configs = BootConfigs(
        BootConfig("enlist", "ephemeral/vmlinuz", "ephemeral/initrd", ""), MemoryConfigs()
    )
    app = boot_app(boot_root, configs)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://boot") as client:
            # percent-encoded as a client sends it; a ``%xx`` already there is left as is
            return await client.get("/boot/" + quote(path, safe="/%"))

    try:
        response = asyncio.run(get())
    except httpx.InvalidURL:
        return  # not a URL any client sends (httpx refuses it before the server sees it)
    # 307: a path that normalises to ``/boot/`` is redirected by the router
    assert response.status_code in (200, 307, 403, 404), (path, response.status_code)
    if "escape" in path and response.status_code == 200:
        assert b"root:" not in response.content  # never a file from outside the root


# -- interface and storage constraint strings --------------------------------------------


@FUZZ
@given(constraint_text(STORAGE_WORDS))
@example("9" * 400)  # was OverflowError: float("99...9") is inf
@example("root:" + "9" * 400 + "(ssd)")
def test_compose_storage_constraints_parse_or_fail_on_the_field(text: str) -> None:
    try:
        disks = specs.parse_storage(text, 10)
    except ValidationFailed as failed:
        assert failed.field == "storage"
        return
    assert disks and all(0 < d.size <= specs.MAX_DISK_BYTES for d in disks)
    assert len({d.label for d in disks}) == len(disks)


@FUZZ
@given(constraint_text(INTERFACE_WORDS))
def test_compose_interface_constraints_parse_or_fail_on_the_field(text: str) -> None:
    try:
        found = specs.parse_interfaces(text)
    except ValidationFailed as failed:
        assert failed.field == "interfaces"
        return
    assert len({s.label for s in found}) == len(found)


@FUZZ
@given(constraint_text(STORAGE_WORDS))
@example("root:" + "9" * 400)  # was OverflowError: float("99...9") is inf
def test_allocation_storage_constraints_parse_or_fail_on_the_field(text: str) -> None:
    try:
        sizes = allocation.parse_storage(text)
    except ValidationFailed as failed:
        assert failed.field == "body.storage"
        return
    assert all(0 <= size <= allocation.MAX_DISK_BYTES for size in sizes)


@FUZZ
@given(constraint_text(INTERFACE_WORDS))
@example("eth0:vlan=²")  # was ValueError: "²".isdigit() but int("²") fails
def test_allocation_interface_constraints_parse_or_fail_on_the_field(text: str) -> None:
    try:
        wanted = allocation.parse_interfaces(text)
    except ValidationFailed as failed:
        assert failed.field == "body.interfaces"
        return
    assert all(set(keys) <= {"subnet", "vlan"} for keys in wanted)
