"""The hottest write ipam has, next free, as one short SQLAlchemy Core transaction; and the
answers kept for idempotency keys.

:func:`claim_next_free` runs through :meth:`metalbus.shared.db.Database.run_transaction`:
on SQLite the whole claim is one hop to the writer thread instead of dozens of driver hops,
which is what keeps next free under a couple of milliseconds. It locks the subnet's row
(``FOR UPDATE`` on PostgreSQL), takes the lowest address of the smallest free block, and
records the address, the subnet's new count and the events in the same transaction.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from metalbus.shared.contract.ipam import (
    AddressAllocated,
    AllocateAddress,
    IpAddress,
    SubnetLowOnAddresses,
)
from metalbus.shared.errors import AddressExhausted, Conflict, NotFound
from metalbus.shared.events import new_event, utcnow
from metalbus.shared.outbox import stage_on

from .models import FreeBlockRow, IpAddressRow, RequestKeyRow, SubnetRow
from .spans import address_key, from_key, size_key, span_size, to_text, usable_span

SUBNETS = SubnetRow.__table__  # type: ignore[attr-defined]
BLOCKS = FreeBlockRow.__table__  # type: ignore[attr-defined]
ADDRESSES = IpAddressRow.__table__  # type: ignore[attr-defined]
REQUEST_KEYS = RequestKeyRow.__table__  # type: ignore[attr-defined]

# Built once: constructing and compiling statements costs more than SQLite running them.
_LOCK_SUBNET = (
    select(
        SUBNETS.c.id,
        SUBNETS.c.cidr,
        SUBNETS.c.ip_version,
        SUBNETS.c.vlan_id,
        SUBNETS.c.available,
        SUBNETS.c.low_alarm,
        SUBNETS.c.low_free_threshold,
    )
    .where(SUBNETS.c.id == bindparam("subnet_id"))
    .with_for_update()
)
_SMALLEST_BLOCK = (
    select(BLOCKS.c.id, BLOCKS.c.start_key, BLOCKS.c.size_key)
    .where(BLOCKS.c.subnet_id == bindparam("subnet_id"))
    .order_by(BLOCKS.c.size_key, BLOCKS.c.start_key)
    .limit(1)
)
_DROP_BLOCK = delete(BLOCKS).where(BLOCKS.c.id == bindparam("block_id"))
_SHRINK_BLOCK = (
    update(BLOCKS)
    .where(BLOCKS.c.id == bindparam("block_id"))
    .values(start_key=bindparam("start"), size_key=bindparam("size"))
)
_COUNT_SUBNET = (
    update(SUBNETS)
    .where(SUBNETS.c.id == bindparam("subnet_id"))
    .values(available=bindparam("new_available"), low_alarm=bindparam("new_low"))
)
_ADD_ADDRESS = insert(ADDRESSES)
_PRIOR_ANSWER = select(REQUEST_KEYS.c.fingerprint, REQUEST_KEYS.c.response).where(
    REQUEST_KEYS.c.key == bindparam("key")
)


def low_transition(available: int, total: int, threshold: float, alarm: bool) -> tuple[bool, bool]:
    """(is the subnet low now, did it just cross below the threshold)."""
    low = total > 0 and available * 100 < threshold * total
    return low, low and not alarm


def prior_answer(connection: Connection, key: str, fingerprint: str) -> str | None:
    """The stored answer to an earlier request with this key (None: first time).

    Raises:
        Conflict: the key was used for a different request.
    """
    row = connection.execute(
        select(REQUEST_KEYS.c.fingerprint, REQUEST_KEYS.c.response).where(REQUEST_KEYS.c.key == key)
    ).first()
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise Conflict(
            "this idempotency key was used for a different request", field="idempotency_key"
        )
    return str(row.response)


def remember(connection: Connection, key: str | None, fingerprint: str, answer: IpAddress) -> None:
    """Keep the answer for the request's retries, in the transaction that made it."""
    if key is not None:
        connection.execute(
            insert(REQUEST_KEYS),
            [
                {
                    "key": key,
                    "fingerprint": fingerprint,
                    "response": answer.model_dump_json(),
                    "created_at": utcnow(),
                }
            ],
        )


def claim_next_free(
    connection: Connection,
    request: AllocateAddress,
    key: str | None,
    fingerprint: str,
    default_threshold: float,
) -> IpAddress:
    """Assign the lowest address of the subnet's smallest free block (MAAS's rule).

    Raises:
        NotFound: no such subnet.
        Conflict: the idempotency key was used for another request.
        AddressExhausted: the subnet has no free address.
    """
    subnet = connection.execute(_LOCK_SUBNET, {"subnet_id": request.subnet_id}).first()
    if subnet is None:
        raise NotFound(f"no subnet with id {request.subnet_id}", field="subnet_id")
    if key is not None and (prior := prior_answer(connection, key, fingerprint)) is not None:
        return IpAddress.model_validate_json(prior)
    block = connection.execute(_SMALLEST_BLOCK, {"subnet_id": subnet.id}).first()
    if block is None:
        raise AddressExhausted(
            f"no free address is left in {subnet.cidr}",
            field="subnet_id",
            details={"subnet_id": subnet.id},
        )
    value, size = from_key(block.start_key), from_key(block.size_key)
    if size == 1:
        connection.execute(_DROP_BLOCK, {"block_id": block.id})
    else:
        shrunk = {"block_id": block.id, "start": address_key(value + 1), "size": size_key(size - 1)}
        connection.execute(_SHRINK_BLOCK, shrunk)
    available = int(subnet.available) - 1
    total = span_size(usable_span(ipaddress.ip_network(subnet.cidr)) or (0, -1))
    threshold = (
        subnet.low_free_threshold if subnet.low_free_threshold is not None else default_threshold
    )
    low, crossed = low_transition(available, total, threshold, subnet.low_alarm)
    counts = {"subnet_id": subnet.id, "new_available": str(available), "new_low": low}
    connection.execute(_COUNT_SUBNET, counts)
    now = utcnow()
    row = {
        "subnet_id": subnet.id,
        "ip": to_text(value, subnet.ip_version),
        "ip_key": address_key(value),
        "alloc_type": request.alloc_type.value,
        "owner_type": request.owner_type.value if request.owner_type else None,
        "owner_id": request.owner_id,
        "hostname": request.hostname,
        "mac": request.mac,
        "lease_expires_at": None,
        "created_at": now,
        "updated_at": now,
    }
    address_id = connection.execute(_ADD_ADDRESS, row).inserted_primary_key
    address = IpAddress.model_validate({**row, "id": address_id[0] if address_id else 0})
    if crossed:
        low_event = SubnetLowOnAddresses(
            subnet_id=subnet.id,
            cidr=subnet.cidr,
            available=available,
            total=total,
            threshold=threshold,
        )
        stage_on(connection, new_event(low_event, subject=f"subnet/{subnet.id}"))
    allocated = AddressAllocated(address=address, vlan_id=subnet.vlan_id)
    stage_on(connection, new_event(allocated, subject=address.ip))
    remember(connection, key, fingerprint, address)
    return address
