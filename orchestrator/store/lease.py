"""Run leases: a run has one owner at a time.

Two ``orchestrator resume RUN_ID`` of one run would each run every unfinished node (and
pay for it twice), so the process that runs a run holds its *lease* in the store: a row
naming the owner (host, pid, a random token, the process's start time), renewed while the
run goes on and released when it ends. Another process that asks for the lease gets
:class:`~orchestrator.exceptions.RunLeased` naming the holder.

A lease is stale, and is taken over by the next process that asks for it, when:

- it has not been renewed for ``ttl_s`` seconds (wall clock, so hosts sharing a store
  must agree on the time to within a small part of ``ttl_s``); or
- its holder ran on this host (same host name) and that process is gone: its pid is not
  alive, is a zombie, or now belongs to a process that started at another time (pids are
  reused; the start time comes from ``/proc/<pid>/stat`` and the boot id on Linux, and is
  not checked elsewhere). A dead holder's lease is thus taken over at once, not after
  ``ttl_s``. On Windows, liveness is not probed (``os.kill`` would end the process):
  expiry alone decides.

The store checks and takes a lease in one transaction (SQLite: under the write lock), so
of two processes racing for a stale lease exactly one wins. :func:`hold_lease` is what a
caller uses: it acquires, renews in the background, reports a lost lease, and releases.

Renewals alone notice a lost lease late: a holder paused past ``ttl_s`` (a long GC pause,
a suspended VM, a partition from the store) whose run was taken over meanwhile learns it
at its next renewal, up to ``ttl_s / 3`` after it wakes. So the store also *fences* the
holder's writes (:mod:`~orchestrator.store.base`): a write given the owner is made only
while the lease is still that owner's, checked in the write's own transaction. The
:class:`~orchestrator.store.listener.StoreListener` of a :class:`HeldLease` fences the
record made before each model call is sent: the first refusal stops the call before it
leaves and reports the lease lost at once (:meth:`HeldLease.lose`).

This module owns the lease values (:class:`LeaseOwner`, :class:`Lease`), the rules every
store applies to them (:func:`claim`, :func:`extend`, staleness), and holding one
(:func:`hold_lease`). It stands below the store interface: holding a lease needs only a
:class:`LeaseStore`, the three lease methods that every
:class:`~orchestrator.store.base.RunStore` has.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Protocol

import anyio

from orchestrator.exceptions import RunLeased

__all__ = [
    "DEFAULT_TTL_S",
    "HeldLease",
    "Lease",
    "LeaseOwner",
    "LeaseStore",
    "hold_lease",
    "process_started",
]

DEFAULT_TTL_S = 30.0
"""How long a lease lasts without renewal; :func:`hold_lease` renews every third of it."""


@dataclass(frozen=True, slots=True)
class LeaseOwner:
    """Who holds (or asks for) a lease. Make one with :meth:`current`.

    Attributes:
        host: The host name (``socket.gethostname()``).
        pid: The process id.
        token: Random, unique to this owner: two owners in one process differ.
        started: When the process started (Linux: boot id and start time in clock ticks),
            to tell a live holder from a new process that reuses its pid; ``None``
            where it is not cheaply known.
    """

    host: str
    pid: int
    token: str
    started: str | None = None

    @classmethod
    def current(cls) -> LeaseOwner:
        """This process, with a fresh token."""
        pid = os.getpid()
        return cls(socket.gethostname(), pid, secrets.token_hex(16), process_started(pid))


@dataclass(frozen=True, slots=True)
class Lease:
    """A run's lease, as the store holds it.

    Attributes:
        run_id: The run.
        owner: Who holds it.
        since: When this owner acquired it.
        expires_at: When it expires unless renewed.
    """

    run_id: str
    owner: LeaseOwner
    since: datetime
    expires_at: datetime

    def error(self) -> RunLeased:
        """The error for a process that asked for this lease and may not have it."""
        return RunLeased(
            self.run_id, host=self.owner.host, pid=self.owner.pid, since=self.since,
            expires_at=self.expires_at,
        )  # fmt: skip

    def is_stale(self, now: datetime) -> bool:
        """Whether another owner may take it over now (see the module)."""
        if self.expires_at <= now:
            return True
        return self.owner.host == socket.gethostname() and not _alive(
            self.owner.pid, self.owner.started
        )


def wall_clock() -> datetime:
    """The time leases are dated and expire by (the stores call it; tests replace it)."""
    return datetime.now(UTC)


def check_ttl(ttl_s: float) -> timedelta:
    """``ttl_s`` as a duration; ``ValueError`` unless it is positive and finite."""
    if not (math.isfinite(ttl_s) and ttl_s > 0):
        raise ValueError(f"a lease's ttl_s must be a positive number of seconds, got {ttl_s}")
    return timedelta(seconds=ttl_s)


def claim(current: Lease | None, run_id: str, owner: LeaseOwner, ttl_s: float) -> Lease:
    """The lease ``owner`` gets, given the one the store holds (the stores' acquire).

    Free, stale or already ``owner``'s: the new lease (``owner``'s keeps its ``since``).

    Raises:
        RunLeased: Another owner holds it and it is not stale.
    """
    ttl, now = check_ttl(ttl_s), wall_clock()
    if current is not None and current.owner.token == owner.token:
        return replace(current, expires_at=now + ttl)
    if current is not None and not current.is_stale(now):
        raise current.error()
    return Lease(run_id, owner, now, now + ttl)


def holds(current: Lease | None, owner: LeaseOwner) -> bool:
    """Whether ``owner`` holds the lease the store holds (a fenced write's check).

    Expired but not taken over still counts as held, as for :func:`extend`.
    """
    return current is not None and current.owner.token == owner.token


def extend(current: Lease | None, run_id: str, owner: LeaseOwner, ttl_s: float) -> Lease:
    """``owner``'s lease, renewed (the stores' renew).

    Its own lease that expired but that nobody took over is still its own: no other
    process can have run the run meanwhile.

    Raises:
        RunLeased: The lease is not ``owner``'s any more (released, or taken over).
    """
    ttl = check_ttl(ttl_s)
    if current is None:
        raise RunLeased(run_id)
    if current.owner.token != owner.token:
        raise current.error()
    return replace(current, expires_at=wall_clock() + ttl)


# -- is the holder alive? -----------------------------------------------------------------


def process_started(pid: int) -> str | None:
    """When process ``pid`` started, as an opaque string.

    ``None`` if unknown: not Linux, no such process, or ``/proc`` unreadable.
    """
    stat = _proc_stat(pid)
    boot = _boot_id()
    if stat is None or boot is None:
        return None
    return f"{boot}:{stat[1]}"


def _alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` (on this host) is still the process that started at ``started``."""
    if sys.platform == "win32" or pid <= 0:  # os.kill would end it / signal a group
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists (another user's)
    stat = _proc_stat(pid)
    if stat is not None and stat[0] in {"Z", "X"}:  # killed, not yet reaped
        return False
    if started is not None:
        now_started = process_started(pid)
        if now_started is not None and now_started != started:  # the pid was reused
            return False
    return True


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of ``pid`` from ``/proc``, if readable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


@cache
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return None


# -- holding one ------------------------------------------------------------------------


class LeaseStore(Protocol):
    """What holding a lease needs of a store: every :class:`~orchestrator.store.base.RunStore`.

    The methods are documented on ``RunStore``, which declares them abstract.
    """

    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Take the lease if it is free, stale or ``owner``'s (``RunLeased`` otherwise)."""

    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl_s: float) -> None:
        """Extend ``owner``'s lease (``RunLeased`` if it is not ``owner``'s any more)."""

    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None:
        """Give up ``owner``'s lease, if it holds it."""


class HeldLease:
    """A lease held by :func:`hold_lease`, renewed in the background until it exits.

    Attributes:
        run_id: The run.
        owner: This holder.
        ttl_s: How long it lasts without renewal.
        lost: Set when a renewal found the lease no longer this holder's (or none
            succeeded before it would have expired): the run must stop, another process
            may be running it.
        lost_to: Why it was lost, once ``lost`` is set (names the new holder if known).
    """

    def __init__(
        self,
        run_id: str,
        owner: LeaseOwner,
        ttl_s: float,
        on_lost: Callable[[RunLeased], object] | None = None,
    ) -> None:
        self.run_id = run_id
        self.owner = owner
        self.ttl_s = ttl_s
        self.lost = anyio.Event()
        self.lost_to: RunLeased | None = None
        self._on_lost = on_lost

    def lose(self, reason: RunLeased) -> None:
        """Note that the lease is lost (a renewal, or a fenced write, found it so).

        The first call sets :attr:`lost` and calls ``on_lost``; later ones do nothing.
        """
        if self.lost.is_set():
            return
        self.lost_to = reason
        self.lost.set()
        if self._on_lost is not None:
            self._on_lost(reason)


@asynccontextmanager
async def hold_lease(
    store: LeaseStore,
    run_id: str,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    owner: LeaseOwner | None = None,
    on_lost: Callable[[RunLeased], object] | None = None,
) -> AsyncIterator[HeldLease]:
    """Hold ``run_id``'s lease for the body: acquire, renew every ``ttl_s / 3``, release.

    Typical use, stopping the run if the lease is lost::

        with anyio.CancelScope() as scope:
            async with hold_lease(store, run_id, on_lost=lambda _: scope.cancel()) as lease:
                result = await engine.run(plan, resume=stored)
        if lease.lost.is_set():
            raise lease.lost_to

    Args:
        store: The store that holds the lease.
        run_id: The run.
        ttl_s: How long the lease lasts without renewal.
        owner: Who holds it; default :meth:`LeaseOwner.current` (a fresh token).
        on_lost: Called once, with the reason, if the lease is lost while held.

    Raises:
        RunLeased: On entry, if another live process holds the lease (nothing is held).
        ValueError: If ``ttl_s`` is not a positive number.
    """
    check_ttl(ttl_s)
    held = HeldLease(run_id, owner or LeaseOwner.current(), ttl_s, on_lost)
    await store.acquire_lease(run_id, held.owner, ttl_s)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_renew, store, held)
            try:
                yield held
            finally:
                group.cancel_scope.cancel()
    except BaseExceptionGroup as errors:  # the body's error: the renewer never raises
        if len(errors.exceptions) != 1:
            raise
        error = errors.exceptions[0]
        raise error from error.__cause__  # as the body raised it, not in a group
    finally:
        with anyio.CancelScope(shield=True):  # a no-op if it is not ours any more
            await store.release_lease(run_id, held.owner)


async def _renew(store: LeaseStore, held: HeldLease) -> None:
    """Renew every third of the ttl; a failed renewal is retried at the next one."""
    valid_until = anyio.current_time() + held.ttl_s
    while True:
        await anyio.sleep(held.ttl_s / 3)
        if held.lost.is_set():  # a fenced write found it lost
            return
        try:
            await store.renew_lease(held.run_id, held.owner, held.ttl_s)
        except RunLeased as exc:
            lost: RunLeased | None = exc
        except Exception:  # noqa: BLE001  (the store failed: try again, until it expires)
            lost = RunLeased(held.run_id) if anyio.current_time() >= valid_until else None
        else:
            valid_until, lost = anyio.current_time() + held.ttl_s, None
        if lost is not None:
            held.lose(lost)
            return
