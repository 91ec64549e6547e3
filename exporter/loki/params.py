"""Loki's request parameters: timestamps, step, limit and direction, with Loki's defaults."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from exporter.loki.lexer import parse_duration

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 5_000
HOUR_NS: Final = 3_600_000_000_000
_RFC3339: Final = re.compile(
    r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)"
)
_INTEGER: Final = re.compile(r"-?\d{1,20}")


class ParamError(ValueError):
    """A parameter Loki would refuse; the message names it."""


def parse_time(raw: str | None, default_ns: int, name: str = "time") -> int:
    """Nanoseconds from an integer (ns), a float (seconds) or an RFC3339 timestamp."""
    if raw is None or raw == "":
        return default_ns
    value = raw.strip()
    if _INTEGER.fullmatch(value):
        return int(value)
    match = _RFC3339.fullmatch(value)
    if match is not None:
        whole, fraction, zone = match.groups()
        zone = "+00:00" if zone in "Zz" else zone
        try:
            moment = datetime.fromisoformat(whole.replace("t", "T") + zone)
        except ValueError:
            raise ParamError(f"invalid {name}: {raw!r}") from None
        nanos = int((fraction or "").ljust(9, "0"))
        return int(moment.astimezone(UTC).timestamp()) * 1_000_000_000 + nanos
    try:
        seconds = float(value)
    except ValueError:
        raise ParamError(f"invalid {name}: {raw!r} (use nanoseconds, seconds or RFC3339)") from None
    if not math.isfinite(seconds) or abs(seconds) > 1e10:
        raise ParamError(f"invalid {name}: {raw!r}")
    return round(seconds * 1e9)


def parse_step(raw: str | None, start_ns: int, end_ns: int) -> int:
    """The step in nanoseconds: a duration (`15000ms`, `15s`) or float seconds.

    Without one, Loki's default: the range over 250 points, at least one second.
    """
    if raw is None or raw == "":
        return max(1, (end_ns - start_ns) // 250 // 1_000_000_000) * 1_000_000_000
    value = raw.strip()
    ns = parse_duration(value)
    if ns is None:
        try:
            seconds = float(value)
        except ValueError:
            raise ParamError(f"invalid step: {raw!r} (use a duration such as 15s)") from None
        if not math.isfinite(seconds) or abs(seconds) > 1e10:
            # Bounded both ways: a huge negative step overflows to -inf in nanoseconds.
            raise ParamError(f"invalid step: {raw!r}")
        ns = round(seconds * 1e9)
    if ns <= 0:
        raise ParamError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    return ns


def parse_limit(raw: str | None) -> int:
    """Maximum entries a log query returns: 100 by default, at most MAX_LIMIT."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ParamError(f"invalid limit: {raw!r}") from None
    if limit <= 0:
        raise ParamError("limit must be a positive value")
    if limit > MAX_LIMIT:
        raise ParamError(
            "max entries limit per query exceeded, "
            f"limit > max_entries_limit ({limit} > {MAX_LIMIT})"
        )
    return limit


def parse_direction(raw: str | None) -> bool:
    """True for backward (newest first, the default), False for forward."""
    if raw is None or raw == "":
        return True
    value = raw.strip().lower()
    if value == "backward":
        return True
    if value == "forward":
        return False
    raise ParamError(f"invalid direction: {raw!r} (use forward or backward)")


def time_range(params: Mapping[str, str], lookback_ns: int = HOUR_NS) -> tuple[int, int]:
    """(start, end) in ns: end defaults to now, start to end minus the lookback."""
    now = time.time_ns()
    end = parse_time(params.get("end"), now, "end")
    start = parse_time(params.get("start"), end - lookback_ns, "start")
    if end < start:
        raise ParamError("end timestamp must not be before start time")
    return start, end
