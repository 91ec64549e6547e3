"""A synthetic stretch of online-grocery traffic, sampled as Prometheus would scrape its counters.

Quiet nights, a morning ramp, a midday plateau and an evening peak about 4x the night; Sunday
the busiest day and Friday the quietest; a slow day-to-day wander and minute-to-minute noise,
all from a seeded generator so a run is reproducible. Anomalies (spikes, drops, outages) and
exporter events (restarts, a vanished target) are laid over it.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass, field

STEP = 60  # seconds between samples, as promtool's `interval: 1m`
DAY = 86_400
NIGHT_RATE = 6.0  # shopper events per second on a Monday night

# Hour of day → traffic relative to midnight, linear in between.
DAY_SHAPE = (
    (0.0, 1.0),
    (5.0, 0.8),
    (7.0, 1.2),
    (9.0, 2.5),
    (12.0, 3.0),
    (15.0, 2.4),
    (18.0, 3.6),
    (19.5, 4.0),
    (21.5, 2.6),
    (23.0, 1.4),
    (24.0, 1.0),
)
# Monday .. Sunday: busier at the start of the week, quietest on Friday.
WEEKDAY = (1.05, 1.00, 0.97, 1.00, 0.93, 0.95, 1.10)
WANDER = 0.08  # the slow day-to-day wander, ± (a new level every two hours, linear between)
NOISE = 0.05  # minute-to-minute noise, ±


def clock(day: int, at: str) -> int:
    """Seconds from the stretch's Monday 00:00 to `day` (0 = that Monday) at "HH:MM"."""
    hours, minutes = at.split(":")
    return day * DAY + int(hours) * 3600 + int(minutes) * 60


def moment(seconds: int) -> str:
    """ "Wed 18:30" for a time of the stretch."""
    day, rest = divmod(seconds, DAY)
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    return f"{names[day % 7]} {rest // 3600:02d}:{rest % 3600 // 60:02d}"


@dataclass(frozen=True)
class Change:
    """Traffic times `factor` (3 = a spike, 0.4 = a drop, 0 = an outage) for a while."""

    day: int
    at: str
    minutes: int
    factor: float

    @property
    def start(self) -> int:
        return clock(self.day, self.at)

    @property
    def end(self) -> int:
        return self.start + self.minutes * 60


@dataclass(frozen=True)
class Stretch:
    """What happens over the sampled stretch; times are seconds from its Monday 00:00."""

    # Prometheus starts at `begins`, with no history: the first sample. A week and a day covers
    # every weekday once with each reference (1 day, 2 days, 1 week ago) in place.
    begins: int = clock(0, "09:17")
    ends: int = clock(7, "18:00")
    seed: int = 1
    replicas: int = 2
    changes: tuple[Change, ...] = ()
    # A replica restarts and loses its counts; producers carry on (a counter reset).
    resets: tuple[int, ...] = ()
    # The exporter restarts without state and its producers never come back: its counters sit
    # at 0 and its update timestamp at the restart. With `vanish`, it exports no series at all
    # (as an exporter that creates them only on the first event would).
    abandoned: int | None = None
    vanish: bool = False
    # Prometheus can no longer scrape the exporter: up is 0 and every series goes stale.
    gone: int | None = None
    shares: tuple[float, ...] = field(default=(0.55, 0.45))

    def times(self) -> range:
        """The sample times."""
        return range(self.begins, self.ends + 1, STEP)


def day_shape(seconds: int) -> float:
    """Traffic relative to midnight at that time of day."""
    hour = (seconds % DAY) / 3600
    index = bisect_right([h for h, _ in DAY_SHAPE], hour) - 1
    (h0, v0), (h1, v1) = DAY_SHAPE[index], DAY_SHAPE[min(index + 1, len(DAY_SHAPE) - 1)]
    return v0 if h1 == h0 else v0 + (v1 - v0) * (hour - h0) / (h1 - h0)


def usual_rate(seconds: int) -> float:
    """Events per second a normal shop sees at that moment, before wander and noise."""
    return NIGHT_RATE * day_shape(seconds) * WEEKDAY[(seconds // DAY) % 7]


def event_rates(stretch: Stretch) -> list[float]:
    """Events per second in each sample interval (the interval ending at each sample time)."""
    rng = random.Random(stretch.seed)
    knot = 7200
    first, last = stretch.begins // knot, stretch.ends // knot + 1
    wander = {k: 1 + rng.uniform(-WANDER, WANDER) for k in range(first, last + 1)}
    rates = []
    for t in stretch.times():
        k, frac = divmod(t, knot)
        level = wander[k] + (wander[k + 1] - wander[k]) * frac / knot
        rate = usual_rate(t) * level * (1 + rng.uniform(-NOISE, NOISE))
        for change in stretch.changes:
            if change.start < t <= change.end:
                rate *= change.factor
        if stretch.abandoned is not None and t > stretch.abandoned:
            rate = 0.0
        rates.append(rate)
    return rates


def counter_samples(stretch: Stretch) -> list[list[str]]:
    """Per replica, the promtool sample tokens of its event counter: counts, `_` or `stale`."""
    rates = event_rates(stretch)
    series: list[list[str]] = [[] for _ in range(stretch.replicas)]
    totals = [0] * stretch.replicas
    for t, rate in zip(stretch.times(), rates, strict=True):
        for replica in range(stretch.replicas):
            share = stretch.shares[replica] if stretch.replicas > 1 else 1.0
            if replica == 0 and any(t - STEP < r <= t for r in stretch.resets):
                totals[replica] = 0  # restarted: counts start over, one scrape missed
                series[replica].append("_")
                continue
            if stretch.abandoned is not None and t - STEP < stretch.abandoned <= t:
                totals[replica] = 0
            totals[replica] += round(rate * STEP * share)
            series[replica].append(str(totals[replica]))
    return [_cut(tokens, stretch) for tokens in series]


def timestamp_samples(stretch: Stretch) -> list[str]:
    """The exporter's last-update timestamp, on promtool's clock (0 = the first sample): a second
    before each scrape while updates arrive, the restart once abandoned."""
    tokens = []
    for t in stretch.times():
        if stretch.abandoned is not None and t >= stretch.abandoned:
            tokens.append(str(stretch.abandoned - stretch.begins))
        else:
            tokens.append(str(max(t - stretch.begins - 1, 0)))
    return _cut(tokens, stretch)


def up_samples(stretch: Stretch) -> list[str]:
    """Prometheus' `up` for a replica: 1, or 0 once the exporter is gone."""
    return ["0" if stretch.gone is not None and t >= stretch.gone else "1" for t in stretch.times()]


def _cut(tokens: list[str], stretch: Stretch) -> list[str]:
    """Series end where they vanish (a stale marker, then nothing), as Prometheus records it."""
    cut = stretch.gone if stretch.gone is not None else None
    if stretch.vanish and stretch.abandoned is not None:
        cut = stretch.abandoned
    if cut is None:
        return tokens
    index = next(i for i, t in enumerate(stretch.times()) if t >= cut)
    return tokens[:index] + ["stale"] + ["_"] * (len(tokens) - index - 1)


def compact(tokens: list[str]) -> str:
    """promtool's values string with runs folded: `vxN` is N+1 samples of v, `_xN` N gaps."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j + 1 < len(tokens) and tokens[j + 1] == tokens[i]:
            j += 1
        run = j - i
        if run >= 2 and tokens[i] == "_":
            out.append(f"_x{run + 1}")
        elif run >= 2 and tokens[i] != "stale":
            out.append(f"{tokens[i]}x{run}")
        else:
            out.extend(tokens[i : j + 1])
        i = j + 1
    return " ".join(out)
