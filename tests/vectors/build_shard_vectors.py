"""Write tests/vectors/shard_vectors.json from exporter.sharding (`--check` only compares it).

Usage: python tests/vectors/build_shard_vectors.py [--check]

Both clients' tests check their shard function against the file: the Python one with pytest, the
browser one in Chromium.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exporter.sharding import MAX_SHARDS, shard_of  # noqa: E402

OUT = Path(__file__).resolve().parent / "shard_vectors.json"
COUNTS = (1, 2, 3, 7, 16, 1000, 65536, MAX_SHARDS)
USER_IDS = (
    "",
    "a",
    "foobar",
    "shopper_123",
    "shopper_mock_1",
    "Shopper_123",
    "user with spaces",
    "\x00",
    "tab\there",
    "café",
    "cafe\u0301",  # the same word, decomposed: other bytes, so maybe another shard
    "Ærøskøbing",
    "Łódź",
    "用户_42",
    "ユーザー",
    "مستخدم",
    "😀",
    "shopper_🛒",
    "👩\u200d👩\u200d👧",
    "a\ud800b",  # a lone surrogate: UTF-8 as a browser writes it (U+FFFD)
    "x" * 1000,
    "shopper_" + "ü" * 200,
    "🛒" * 100,
    *(f"shopper_{i}" for i in range(40)),
)


def render() -> str:
    """The vectors, one per line, non-ASCII escaped so every JSON reader sees the same ids."""
    rows = [
        json.dumps({"userId": user_id, "count": count, "shard": shard_of(user_id, count)})
        for user_id in USER_IDS
        for count in COUNTS
    ]
    return (
        '{"about": "shard_of(userId, count): jump consistent hash of the 64-bit FNV-1a hash of '
        'the UTF-8 userId; written by tests/vectors/build_shard_vectors.py",\n'
        ' "vectors": [\n  ' + ",\n  ".join(rows) + "\n]}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        OUT.write_text(text)
        return 0
    if not OUT.exists() or OUT.read_text() != text:
        print(f"out of date: {OUT.name}; run python tests/vectors/build_shard_vectors.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
