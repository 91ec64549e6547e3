"""`ip("…")` in LogQL: an address, a CIDR or `first-last`, matched in lines and labels."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Candidate addresses in a line: dotted quads and anything IPv6-shaped; ipaddress decides.
_CANDIDATE: Final = re.compile(r"[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*")


class IpPatternError(ValueError):
    """An ip() argument that is not an address, a range or a CIDR."""


@dataclass(frozen=True, slots=True)
class IpMatch:
    """The addresses an `ip("…")` argument covers."""

    source: str
    low: Address
    high: Address

    def covers(self, text: str) -> bool:
        """Whether `text` is an address in range."""
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            return False
        if address.version != self.low.version:
            return False
        return int(self.low) <= int(address) <= int(self.high)

    def in_line(self, line: str) -> bool:
        """Whether any address in the line is in range."""
        if "." not in line and ":" not in line:
            return False
        return any(self.covers(m.group().strip(".:")) for m in _CANDIDATE.finditer(line))


def parse_ip(source: str) -> IpMatch:
    """`192.168.0.1`, `192.168.0.0/16`, `10.0.0.1-10.0.0.9` (and IPv6 alike)."""
    text = source.strip()
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            return IpMatch(source, network[0], network[-1])
        if "-" in text:
            first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            if first.version != last.version or int(first) > int(last):
                raise IpPatternError(f"invalid IP range {source!r}")
            return IpMatch(source, first, last)
        address = ipaddress.ip_address(text)
    except ValueError:
        raise IpPatternError(f"invalid IP pattern {source!r}") from None
    return IpMatch(source, address, address)
