"""Machine statuses and the one table of legal moves between them (MAAS's life cycle).

Every status change goes through :func:`next_status`, so an illegal move is refused in
one place with a 409 naming the action and the status the machine is in.
"""

from __future__ import annotations

from enum import StrEnum

from metalbus.shared.contract.machines import MachineStatus as S
from metalbus.shared.errors import Conflict


class Action(StrEnum):
    """What moves a machine: an operator's request, a callback, a flow, or a timeout."""

    COMMISSION = "commission"
    COMMISSIONED = "commissioned"
    ALLOCATE = "allocate"
    DEPLOY = "deploy"
    DEPLOYED = "deployed"
    RELEASE = "release"
    RELEASED = "released"
    FAIL = "fail"
    TIMEOUT = "timeout"
    ABORT = "abort"
    MARK_BROKEN = "mark_broken"
    MARK_FIXED = "mark_fixed"
    RESCUE_MODE = "rescue_mode"
    EXIT_RESCUE_MODE = "exit_rescue_mode"
    TEST = "test"
    TESTED = "tested"


_FAILED = {
    S.COMMISSIONING: S.FAILED_COMMISSIONING,
    S.DEPLOYING: S.FAILED_DEPLOYMENT,
    S.RELEASING: S.FAILED_RELEASING,
    S.TESTING: S.BROKEN,
    S.RESCUE_MODE: S.BROKEN,
}
"""Where a machine goes when its flow fails or times out."""

_TESTABLE = (S.NEW, S.READY, S.BROKEN, S.FAILED_COMMISSIONING)

TRANSITIONS: dict[Action, dict[S, S]] = {
    Action.COMMISSION: {
        s: S.COMMISSIONING
        for s in (S.NEW, S.READY, S.FAILED_COMMISSIONING, S.BROKEN, S.FAILED_DEPLOYMENT)
    },
    Action.COMMISSIONED: {S.COMMISSIONING: S.READY},
    # A machine composed for an allocation is allocated straight from New: compose knows
    # its hardware, so it needs no commissioning first (MAAS's dynamic allocation).
    Action.ALLOCATE: {S.READY: S.ALLOCATED, S.NEW: S.ALLOCATED},
    Action.DEPLOY: {S.ALLOCATED: S.DEPLOYING, S.FAILED_DEPLOYMENT: S.DEPLOYING},
    Action.DEPLOYED: {S.DEPLOYING: S.DEPLOYED},
    Action.RELEASE: {
        s: S.RELEASING
        for s in (S.ALLOCATED, S.DEPLOYING, S.DEPLOYED, S.FAILED_DEPLOYMENT, S.FAILED_RELEASING)
    },
    Action.RELEASED: {S.RELEASING: S.READY},
    Action.FAIL: dict(_FAILED),
    Action.TIMEOUT: dict(_FAILED),
    Action.ABORT: {
        S.COMMISSIONING: S.NEW,
        S.DEPLOYING: S.ALLOCATED,
        S.TESTING: S.READY,
    },
    Action.MARK_BROKEN: {
        s: S.BROKEN
        for s in (
            S.NEW,
            S.READY,
            S.ALLOCATED,
            S.DEPLOYED,
            S.FAILED_COMMISSIONING,
            S.FAILED_DEPLOYMENT,
            S.FAILED_RELEASING,
        )
    },
    Action.MARK_FIXED: {S.BROKEN: S.READY},
    Action.RESCUE_MODE: {S.DEPLOYED: S.RESCUE_MODE, S.BROKEN: S.RESCUE_MODE},
    # Leaving rescue mode goes back to where the machine came from (see next_status).
    Action.EXIT_RESCUE_MODE: {S.RESCUE_MODE: S.DEPLOYED},
    Action.TEST: {s: S.TESTING for s in _TESTABLE},
    Action.TESTED: {S.TESTING: S.READY},
}

IN_FLIGHT = frozenset({S.COMMISSIONING, S.DEPLOYING, S.RELEASING, S.TESTING, S.RESCUE_MODE})
"""Statuses a flow is working in; the machine token is only good in these."""

TIMED = frozenset({S.COMMISSIONING, S.DEPLOYING, S.RELEASING, S.TESTING})
"""Statuses that time out to their failed status when a machine is stuck in them."""


def next_status(status: S, action: Action, *, returns_to: S | None = None) -> S:
    """The status ``action`` moves a machine in ``status`` to.

    ``returns_to``: for actions that go back to where the machine was (leaving rescue mode
    or testing), the status it was in before.

    Raises:
        Conflict: the action is not allowed in this status.
    """
    target = TRANSITIONS[action].get(status)
    if target is None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[action])) or "no status"
        raise Conflict(
            f"cannot {action.value.replace('_', ' ')} a machine that is {status.value} "
            f"(allowed from: {allowed})",
            details={"action": action.value, "status": status.value},
        )
    if returns_to is not None and action in (Action.EXIT_RESCUE_MODE, Action.TESTED):
        return returns_to
    return target
