"""metalbus's TFTP server against a client of our own on loopback that loses DATA blocks,
loses and repeats ACKs, and speaks from a wrong port; block numbers past 65535; malformed
packets; a client that goes away."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from metalbus.boot.tftp import codec
from metalbus.boot.tftp.codec import Ack, Data, Error, ErrorCode, Opcode, Request
from tests.boot.tftp_support import LossyClient, Tftp, completed, tftp  # noqa: F401 (the fixture)
from tests.helpers import async_wait_for


def put(tftp: Tftp, name: str, size: int) -> bytes:  # noqa: F811
    data = os.urandom(size)
    (tftp.root / name).write_bytes(data)
    return data


async def test_lockstep_with_lost_blocks_and_lost_acks(tftp: Tftp) -> None:  # noqa: F811
    data = put(tftp, "f", 200 * 512 + 100)
    client = LossyClient(tftp.port, drop={3, 77}, lose_acks={150})
    got = await asyncio.to_thread(client.fetch, "f", {"timeout": "1"})
    assert got == data
    assert tftp.metric("metalbus_tftp_retransmitted_blocks_total") >= 3


async def test_windows_with_lost_blocks(tftp: Tftp) -> None:  # noqa: F811
    data = put(tftp, "f", 3000 * 1468 + 5)
    # The first block of a window, one in the middle, the last, and a lost ACK.
    lost = {17, 40, 48, 1000, 2999}
    client = LossyClient(tftp.port, drop=set(lost), lose_acks={640})
    options = {"blksize": "1468", "windowsize": "16", "timeout": "1", "tsize": "0"}
    got = await asyncio.to_thread(client.fetch, "f", options)
    assert got == data
    await completed(tftp, 1)


async def test_repeated_acks_do_not_multiply_packets(tftp: Tftp) -> None:  # noqa: F811
    """The Sorcerer's Apprentice bug: resending on every repeated ACK doubles the traffic."""
    data = put(tftp, "f", 300 * 512)
    client = LossyClient(tftp.port, repeat_acks=True)
    assert await asyncio.to_thread(client.fetch, "f") == data
    assert client.data_packets == 301  # 300 full blocks and the empty last one, once each
    assert tftp.metric("metalbus_tftp_dropped_total", reason="duplicate_ack") >= 290


@pytest.mark.parametrize("window", ["1", "64"])
async def test_block_numbers_wrap_past_65535(tftp: Tftp, window: str) -> None:  # noqa: F811
    data = put(tftp, "f", 65_700 * 8 + 3)  # 65,701 blocks of 8 bytes
    client = LossyClient(tftp.port, drop={65535, 65536, 65600})
    options = {"blksize": "8", "windowsize": window, "timeout": "1"}
    assert await asyncio.to_thread(client.fetch, "f", options) == data


async def test_malformed_packets_are_dropped_and_counted(tftp: Tftp) -> None:  # noqa: F811
    data = put(tftp, "f", 5000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"\x00", b"\x00\x09\x00\x00", b"\x00\x01no-nul", b"\xff" * 600):
            sock.sendto(junk, ("127.0.0.1", tftp.port))
        sock.sendto(codec.build(Ack(1)), ("127.0.0.1", tftp.port))  # not a request
        await async_wait_for(
            lambda: tftp.metric("metalbus_tftp_dropped_total", reason="malformed") == 5,
            5,
            "malformed packets counted",
        )
        sock.settimeout(5)
        sock.sendto(codec.build(Request(Opcode.RRQ, "f", "octet")), ("127.0.0.1", tftp.port))
        first, tid = await asyncio.to_thread(sock.recvfrom, 1000)
        assert codec.parse(first) == Data(1, data[:512])
        # Garbage on the transfer's socket, then a stranger: neither ends the transfer.
        sock.sendto(b"\x00\x04\x00", tid)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.settimeout(5)
            stranger.sendto(codec.build(Ack(1)), tid)
            reply, _ = await asyncio.to_thread(stranger.recvfrom, 1000)
            assert codec.parse(reply) == Error(ErrorCode.UNKNOWN_TID, "unknown transfer ID")
        sock.sendto(codec.build(Ack(1)), tid)
        second, _ = await asyncio.to_thread(sock.recvfrom, 1000)
        assert codec.parse(second) == Data(2, data[512:1024])
    assert tftp.metric("metalbus_tftp_dropped_total", reason="unexpected") == 1
    assert tftp.metric("metalbus_tftp_dropped_total", reason="unknown_tid") == 1
    assert tftp.metric("metalbus_tftp_dropped_total", reason="malformed") == 6


async def test_a_client_that_goes_away_times_out(tftp: Tftp) -> None:  # noqa: F811
    put(tftp, "f", 5000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = Request(Opcode.RRQ, "f", "octet", {"timeout": "1"})
        sock.sendto(codec.build(request), ("127.0.0.1", tftp.port))
        sock.settimeout(5)
        await asyncio.to_thread(sock.recvfrom, 1000)  # the OACK; never acknowledged
        await async_wait_for(
            lambda: tftp.metric("metalbus_tftp_transfers_total", outcome="timeout") == 1,
            10,
            "the transfer to give up",
        )
    assert tftp.metric("metalbus_tftp_active_transfers") == 0
    assert tftp.metric("metalbus_tftp_retransmitted_blocks_total") == 3  # max_retries
