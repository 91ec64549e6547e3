"""Queries share the event loop: turns of work with pauses between, a deadline, a heavy-query cap.

Evaluation runs on the loop that also takes pushes, answers scrapes and feeds live streams. So a
query works in slices and calls `await pace.tick()` between them: once its turn is used up it
pauses (everything else waiting gets to run), and past its deadline it stops with Loki's timeout.
A query that needs more than one turn is heavy and takes one of `--loki-max-concurrent-queries`
slots; with none free it is refused (429), so a crowd of heavy queries cannot slow the loop down
without bound. The loop time all working queries get between two pauses is shared: each turn is
`LOOP_SHARE` divided among them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final

from aiohttp import web

LOOP_SHARE: Final = 0.008
"""Seconds of query work, all running queries together, between two chances for the rest."""
MIN_TURN: Final = 0.001
PAUSE_HOPS: Final = 4
"""Loop iterations a pause lasts. Other work moves one step (callback) per iteration, and a
request takes a few (its socket read, then its handler task, then a timer or a write): a pause
of one iteration would leave it waiting a whole turn per step."""
TIMEOUT_MESSAGE: Final = (
    "request timed out, decrease the duration of the request or add more label matchers "
    "(prefer exact match over regex match) to reduce the amount of data processed"
)
"""Loki's words for a query that ran out of time (with 504 Gateway Timeout)."""
TOO_MANY_MESSAGE: Final = "too many outstanding requests"
"""Loki's words when its queue is full (with 429 Too Many Requests)."""
CANCELLED_MESSAGE: Final = "the request was cancelled by the client"
"""Loki's words for a query whose client left (status 499)."""


class QueryTimeoutError(Exception):
    """The query ran past `--loki-query-timeout`."""

    def __init__(self) -> None:
        super().__init__(TIMEOUT_MESSAGE)


class TooManyQueriesError(Exception):
    """Every heavy-query slot is taken; `retry_after` is a hint in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(TOO_MANY_MESSAGE)
        self.retry_after = retry_after


class QueryCancelledError(Exception):
    """The client went away before the answer was ready."""

    def __init__(self) -> None:
        super().__init__(CANCELLED_MESSAGE)


class QueryGate:
    """The service's heavy-query slots, and how the loop's time is split among queries."""

    def __init__(self, timeout: float, max_heavy: int) -> None:
        self.timeout = timeout
        self.max_heavy = max_heavy
        self.heavy = 0
        """Capped queries past their first turn."""
        self.working = 0
        """Paces past their first turn (capped or not): the ones that share LOOP_SHARE."""
        self._ends: list[float] = []

    @property
    def turn(self) -> float:
        """Seconds one query may work before pausing, given how many are working."""
        return max(MIN_TURN, LOOP_SHARE / max(1, self.working))

    def pace(
        self,
        *,
        capped: bool = True,
        timeout: float | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> Pace:
        """A pace for one query, stopped when `gone()` says its client left.

        `capped=False` is for work that is not a query (a tail's live filtering): it never
        takes a slot and, without a timeout, never times out.
        """
        limit = self.timeout if capped and timeout is None else timeout
        return Pace(self, capped=capped, timeout=limit, gone=gone)

    def retry_after(self) -> int:
        """Seconds until the first running heavy query must have ended (at least 1)."""
        now = time.monotonic()
        soonest = min(self._ends, default=now + 1)
        return max(1, math.ceil(soonest - now))

    def _claim(self, capped: bool, ends: float) -> None:
        if capped:
            if self.heavy >= self.max_heavy:
                raise TooManyQueriesError(self.retry_after())
            self.heavy += 1
            self._ends.append(ends)
        self.working += 1

    def _release(self, capped: bool, ends: float) -> None:
        if capped:
            self.heavy -= 1
            self._ends.remove(ends)
        self.working -= 1


class Pace:
    """One query's turns on the loop; use as a context manager so its slot is given back."""

    __slots__ = ("_capped", "_deadline", "_gate", "_gone", "_holding", "turn_ends")

    def __init__(
        self,
        gate: QueryGate,
        *,
        capped: bool,
        timeout: float | None,
        gone: Callable[[], bool] | None = None,
    ) -> None:
        now = time.monotonic()
        self._gate = gate
        self._capped = capped
        self._gone = gone
        self._deadline = math.inf if timeout is None else now + timeout
        self._holding = False
        self.turn_ends = min(now + gate.turn, self._deadline)
        """When to pause (or stop): hot loops may test `time.monotonic() >= pace.turn_ends`
        themselves and call `tick` only then."""

    async def tick(self) -> None:
        """Between two slices of work: pause when the turn is used up; stop past the deadline."""
        if time.monotonic() < self.turn_ends:
            return
        if time.monotonic() >= self._deadline:
            raise QueryTimeoutError
        if not self._holding:
            self._gate._claim(self._capped, self._deadline)
            self._holding = True
        for _ in range(PAUSE_HOPS):
            await asyncio.sleep(0)
        now = time.monotonic()
        if now >= self._deadline:
            raise QueryTimeoutError
        if self._gone is not None and self._gone():
            raise QueryCancelledError
        self.turn_ends = min(now + self._gate.turn, self._deadline)

    def close(self) -> None:
        """Give the slot back (idempotent)."""
        if self._holding:
            self._holding = False
            self._gate._release(self._capped, self._deadline)

    def __enter__(self) -> Pace:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


QUERY_GATE = web.AppKey("loki_query_gate", QueryGate)


def query_pace(request: web.Request) -> Pace:
    """A pace for the query of this request: the service's timeout and heavy-query cap; it
    stops when the client goes away."""
    transport = request.transport

    def gone() -> bool:
        return transport is None or transport.is_closing()

    return request.app[QUERY_GATE].pace(gone=gone)
