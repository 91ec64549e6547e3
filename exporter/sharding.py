"""Which of N replicas owns a shopper: the shard function, and the `INDEX/COUNT` form of a shard."""

from __future__ import annotations

import re
from dataclasses import dataclass

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
JUMP_MULTIPLIER = 2862933555777941757
MASK_64 = (1 << 64) - 1
MAX_SHARDS = (1 << 31) - 1
"""The jump hash is defined for a 32-bit signed bucket count."""

WRONG_SHARD = "wrong_shard"
"""Why a replica refuses a record of a shopper another shard owns."""
SHARD_HEADER = "X-Shopper-Shard"
"""The request header a client sets to the shard its records belong to (a proxy routes by it)."""

_SHARD_FORM = re.compile(r"([0-9]+)/([0-9]+)")


def fnv1a_64(data: bytes) -> int:
    """The 64-bit FNV-1a hash of `data` (Fowler, Noll, Vo)."""
    value = FNV_OFFSET_BASIS
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & MASK_64
    return value


def jump_hash(key: int, count: int) -> int:
    """Lamping and Veach's jump consistent hash of a 64-bit `key` into `count` buckets."""
    bucket, jump = -1, 0
    while jump < count:
        bucket = jump
        key = (key * JUMP_MULTIPLIER + 1) & MASK_64
        # In doubles, as the paper's C does, so every implementation lands on the same bucket.
        jump = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


def utf8(user_id: str) -> bytes:
    """`user_id` as a browser's TextEncoder writes it: a lone surrogate becomes U+FFFD."""
    try:
        return user_id.encode("utf-8")
    except UnicodeEncodeError:
        # Surrogate pairs become their character, lone surrogates U+FFFD, as in JavaScript.
        text = user_id.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return text.encode("utf-8")


def check_count(count: int) -> None:
    """Raise a ValueError unless `count` is a shard count the jump hash takes."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError(f"shard count must be an integer, got {count!r}")
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shard count must be between 1 and {MAX_SHARDS}, got {count}")


def shard_of(user_id: str, count: int) -> int:
    """The shard (0 to count - 1) that owns `user_id`: Lamping and Veach's jump consistent hash
    of the 64-bit FNV-1a hash of its UTF-8 bytes. Adding a shard moves only the shoppers the new
    shard takes. The browser client's `shardOf` is the same function."""
    if not isinstance(user_id, str):
        raise ValueError(f"userId must be a string, got {type(user_id).__name__}")
    check_count(count)
    return jump_hash(fnv1a_64(utf8(user_id)), count)


@dataclass(frozen=True)
class Shard:
    """One replica's part of the shoppers: shard `index` (from 0) of `count`."""

    index: int
    count: int

    def owns(self, user_id: str) -> bool:
        return shard_of(user_id, self.count) == self.index

    def owner(self, user_id: str) -> int:
        """The shard that owns `user_id` (the count is checked already, so straight to the hash)."""
        return jump_hash(fnv1a_64(utf8(user_id)), self.count)

    def misrouted(self, owner: int) -> str:
        """Why a record whose shopper belongs to shard `owner` is refused here."""
        return (
            f"this shopper belongs to shard {owner} of {self.count}, and this replica is shard "
            f"{self}: send it to shard {owner} ({SHARD_HEADER}: {owner} through the proxy)"
        )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """A shard from its `INDEX/COUNT` form, e.g. "1/3" (the second of three; indexes start at 0)."""
    found = _SHARD_FORM.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"shard must be INDEX/COUNT, e.g. 1/3, got {text!r}")
    index, count = int(found[1]), int(found[2])
    check_count(count)
    if index >= count:
        raise ValueError(
            f"shard index must be between 0 and {count - 1} for {count} shards, got {index}"
        )
    return Shard(index, count)
