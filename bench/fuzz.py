"""Coverage-guided fuzzing of the wire-facing parsers with atheris (libFuzzer), the long run
behind ``make fuzz`` (after the hypothesis properties of tests/security/test_fuzz_parsers.py
with many more examples).

The first input byte picks the parser, the rest is its input; the corpus starts from the
valid seeds of tests/security/fuzz_inputs.py. Each parser must return or raise its own
typed error: anything else is a crash, which atheris reports with the input that caused it
(saved as ``crash-<hash>`` in the current directory) and a non-zero exit.

    .venv/bin/python bench/fuzz.py                 # 60 s
    .venv/bin/python bench/fuzz.py -max_total_time=600
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package

with atheris.instrument_imports():
    from metalbus.api.machines import allocation
    from metalbus.boot.dhcp import codec as dhcp
    from metalbus.boot.tftp import codec as tftp
    from metalbus.boot.tftp.files import Refused, resolve_under, safe_relative
    from metalbus.compose import specs
    from metalbus.discovery import frames
    from metalbus.shared.errors import ValidationFailed

from tests.security.fuzz_inputs import dhcp_seeds, frame_seeds, mdns_seeds, tftp_seeds

ROOT = Path("/nonexistent-boot-root")


def _dhcp(data: bytes) -> None:
    try:
        packet = dhcp.parse(data)
    except dhcp.MalformedPacket:
        return
    assert dhcp.parse(dhcp.build(packet)) == packet, data


def _tftp(data: bytes) -> None:
    try:
        packet = tftp.parse(data)
    except tftp.MalformedPacket:
        return
    assert tftp.parse(tftp.build(packet)) == packet, data


def _frame(data: bytes) -> None:
    try:
        frames.parse(data)
    except frames.MalformedFrame:
        pass


def _mdns(data: bytes) -> None:
    try:
        frames.mdns_names(data)
    except frames.MalformedFrame:
        pass


def _text(data: bytes) -> str:
    return atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))


def _boot_path(data: bytes) -> None:
    try:
        real = resolve_under(ROOT, safe_relative(_text(data)))
    except Refused:
        return
    assert real.startswith(f"{ROOT}/"), real


def _constraints(data: bytes) -> None:
    text = _text(data)
    for parse in (
        lambda: specs.parse_storage(text, 10),
        lambda: specs.parse_interfaces(text),
        lambda: allocation.parse_storage(text),
        lambda: allocation.parse_interfaces(text),
    ):
        try:
            parse()
        except ValidationFailed:
            pass


PARSERS = [_dhcp, _tftp, _frame, _mdns, _boot_path, _constraints]


def one_input(data: bytes) -> None:
    if data:
        PARSERS[data[0] % len(PARSERS)](data[1:])


def _seed_corpus() -> str:
    """A directory of the valid seeds, each prefixed with its parser's selector byte."""
    corpus = Path(tempfile.mkdtemp(prefix="metalbus-fuzz-"))
    seeds = [(0, dhcp_seeds()), (1, tftp_seeds()), (2, frame_seeds()), (3, mdns_seeds())]
    seeds.append((5, [b"root:20(ssd),data:100", b"eth0:space=dmz,ip=10.0.0.5;eth1:vlan=5"]))
    seeds.append((4, [b"pxelinux.cfg/01-52-54-00-12-34-56", b"ephemeral/vmlinuz"]))
    for selector, inputs in seeds:
        for n, seed in enumerate(inputs):
            (corpus / f"{selector}-{n}").write_bytes(bytes([selector]) + seed)
    return str(corpus)


def main() -> None:
    args = list(sys.argv)
    if not any(a.startswith("-max_total_time") or a.startswith("-runs") for a in args):
        args.append("-max_total_time=60")
    if not any(a.startswith("-artifact_prefix") for a in args):
        Path("var/fuzz").mkdir(parents=True, exist_ok=True)
        args.append("-artifact_prefix=var/fuzz/")  # crash-<hash> files, out of the tree
    args.append(_seed_corpus())
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
