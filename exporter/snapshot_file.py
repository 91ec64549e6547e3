"""The snapshot file: a magic, a format version, named sections, a checksum; whole or absent.

Layout (little-endian): `MAGIC`, u32 version; then per section a u16 name length, the name, a u64
payload length and the payload; then `END`, u32 number of sections and the CRC-32 of every byte
before `END`. A file is written under a temporary name, fsynced, renamed over the last one and
its folder fsynced, so the path always holds a whole snapshot: the previous one or the new one.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import zlib
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeAlias

MAGIC: Final = b"LSMSNAP\x00"
END: Final = b"LSMSEND\x00"
VERSION: Final = 4
"""Format 1 was one JSON object (read by exporter.snapshot_legacy); 2 is this layout with the
event log as one JSON list of events; 3 keeps the log's packed blocks (exporter.snapshot_events);
4 keeps their shopper tables in a section of their own, read a block at a time."""
READS: Final = (2, 3, 4)
"""The versions of this layout this build reads."""
Buffer: TypeAlias = "bytes | bytearray | memoryview | array[Any]"
"""What a section's payload may be (anything with the buffer protocol)."""
_HEAD: Final = struct.Struct("<8sI")
_SECTION: Final = struct.Struct("<HQ")
_TAIL: Final = struct.Struct("<8sII")
CHUNK: Final = 1 << 20
"""Bytes per write call: the writer's test pause falls between chunks."""


class SnapshotError(Exception):
    """A snapshot file that cannot be used; `suffix` names how it is kept aside."""

    suffix = "corrupt"


class UnsupportedVersionError(SnapshotError):
    """A snapshot of a format this build does not read."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"snapshot format {version} is not one this version reads (1 to {VERSION}); "
            "it was written by a newer release"
        )
        self.version = version
        self.suffix = f"format{version}"


class SectionWriter:
    """Writes sections to an open file, checksumming as it goes; `pause` slows it (tests)."""

    def __init__(self, fd: int, pause: float = 0.0) -> None:
        self._fd = fd
        self._pause = pause
        self._crc = 0
        self._count = 0
        self.written = 0
        self._write(_HEAD.pack(MAGIC, VERSION))

    def section(self, name: str, payload: Buffer) -> None:
        """One named section (names are ASCII; the reader keys sections by them)."""
        raw = name.encode("ascii")
        body = memoryview(payload).cast("B")
        self._write(_SECTION.pack(len(raw), body.nbytes) + raw)
        self._write(body)
        self._count += 1

    def finish(self) -> int:
        """Write the tail; the bytes written in all."""
        self._fd_write(_TAIL.pack(END, self._count, self._crc))
        return self.written

    def _write(self, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        self._crc = zlib.crc32(view, self._crc)
        self._fd_write(view)

    def _fd_write(self, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        while view:
            done = os.write(self._fd, view[:CHUNK])
            view = view[done:]
            self.written += done
            if self._pause:
                time.sleep(self._pause)


def temp_path(path: Path, pid: int | None = None) -> Path:
    """Where a process (this one by default) writes before the rename: its pid in the name, so
    two writers never share one."""
    return path.with_name(f"{path.name}.tmp-{os.getpid() if pid is None else pid}")


def leftovers(path: Path) -> list[Path]:
    """Temporary files of writers that died before their rename."""
    return sorted(path.parent.glob(f"{path.name}.tmp-*"))


def write_atomic(path: Path, fill: Callable[[SectionWriter], None], pause: float = 0.0) -> int:
    """Write a snapshot with `fill`, then make it the one at `path`; its size in bytes.

    On any error the temporary file is removed and `path` still holds the previous snapshot.
    """
    tmp = temp_path(path)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a dead writer with the same pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            writer = SectionWriter(fd, pause)
            fill(writer)
            size = writer.finish()
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return size


def is_snapshot(data: bytes) -> bool:
    """Whether the bytes start like a snapshot of this format."""
    return data[: len(MAGIC)] == MAGIC


def sections(data: bytes) -> dict[str, memoryview]:
    """The sections of a whole, intact snapshot; SnapshotError for anything else."""
    if not is_snapshot(data):
        raise SnapshotError("not a snapshot of this service")
    if len(data) < _HEAD.size + _TAIL.size:
        raise SnapshotError("the file is cut short")
    version = _HEAD.unpack_from(data)[1]
    if version not in READS:
        raise UnsupportedVersionError(version)
    view = memoryview(data)
    tail_at = len(data) - _TAIL.size
    end, count, crc = _TAIL.unpack_from(data, tail_at)
    if end != END:
        raise SnapshotError("the file is cut short (no end marker)")
    if zlib.crc32(view[:tail_at]) != crc:
        raise SnapshotError("the checksum does not match: the file is damaged")
    found: dict[str, memoryview] = {}
    at = _HEAD.size
    while at < tail_at:
        name_len, length = _SECTION.unpack_from(data, at)
        at += _SECTION.size
        name = bytes(view[at : at + name_len]).decode("ascii")
        at += name_len
        found[name] = view[at : at + length]
        at += length
    if at != tail_at or len(found) != count:
        raise SnapshotError("the sections do not add up")
    return found
