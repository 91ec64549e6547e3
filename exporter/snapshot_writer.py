"""Snapshots that never stop the service: a forked child writes the state as it was at the fork.

The service's loop only forks: the kernel copies the page tables and the child sees the memory as
it was at that instant, copy-on-write, so the snapshot is one consistent point in time while the
parent goes on ingesting. The child encodes and writes the file (temp, fsync, rename, folder
fsync), reports its size on a pipe and exits; the parent reads the pipe from its loop and reaps
the child without waiting, then records how it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from exporter import snapshot
from exporter.ingest import Ingestor
from exporter.snapshot_file import temp_path
from exporter.status import SnapshotStatus

log = logging.getLogger(__name__)

PAUSE_ENV: Final = "SHOPPER_TEST_SNAPSHOT_PAUSE"
"""Seconds the writer sleeps after each chunk: a test hook that makes the writing window real."""
_PR_SET_PDEATHSIG: Final = 1
_REPORT_LIMIT: Final = 4000


def _prctl() -> Any:
    """libc's prctl, loaded before any fork (None off Linux)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL: Final = _prctl()


@dataclass(slots=True)
class _Child:
    pid: int
    fd: int
    taken_at: float
    started: float
    done: asyncio.Future[None]
    report: bytearray = field(default_factory=bytearray)


class SnapshotWriter:
    """Takes snapshots of one ingestor's state to one path, one at a time, in forked children."""

    def __init__(
        self,
        path: Path,
        ingestor: Ingestor,
        status: SnapshotStatus,
        after: Callable[[], object] = lambda: None,
        pause: float | None = None,
    ) -> None:
        self.path = path
        self.after = after
        """Called once a writer is gone and its pages are ours alone (exporter/gc_policy)."""
        self.ingestor = ingestor
        self.status = status
        self.pause = float(os.environ.get(PAUSE_ENV) or 0) if pause is None else pause
        self._child: _Child | None = None
        self._failing = False

    @property
    def running(self) -> bool:
        """Whether a writer child is at work."""
        return self._child is not None

    async def run(self, interval: float) -> None:
        """A snapshot every `interval` seconds until cancelled; when one is still being written
        at its turn, the next starts as soon as it ends."""
        while True:
            await asyncio.sleep(interval)
            await self.finished()
            try:
                self.start()
            except Exception as err:  # e.g. no file descriptor left for the pipe
                self._failed(_describe(err))

    async def finished(self) -> None:
        """Wait until the writer at work (if any) is done."""
        if self._child is not None:
            await asyncio.shield(self._child.done)

    def start(self) -> bool:
        """Fork a writer of the state as it is now; False if one is at work or the fork failed.

        The loop stops only for the fork itself.
        """
        if self._child is not None:
            return False
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        taken_at = time.time()
        started, cpu = time.perf_counter(), time.thread_time()
        # The long-lived state is frozen (exporter/gc_policy), so a collection in the parent
        # while the child lives scans, and so copies, only the pages of recent objects.
        try:
            pid = os.fork()
        except OSError as err:
            os.close(read_fd)
            os.close(write_fd)
            self._failed(f"cannot fork a writer: {err}")
            return False
        if pid == 0:
            try:
                os.close(read_fd)
                self._write_in_child(parent, write_fd, taken_at)
            finally:
                os._exit(70)
        self.status.pause = time.perf_counter() - started
        log.debug(
            "snapshot writer %d forked: the service paused %.1f ms (%.1f ms of CPU)",
            pid,
            self.status.pause * 1000,
            (time.thread_time() - cpu) * 1000,
        )
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._child = _Child(pid, read_fd, taken_at, started, loop.create_future())
        loop.add_reader(read_fd, self._on_report)
        return True

    def close(self) -> None:
        """Stop a writer at work (shutdown): kill it, reap it, remove its temporary file."""
        child = self._child
        if child is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        self._stop_reading(child)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)
        self._remove_temp(child.pid)
        self._end(child)

    def save_here(self) -> bool:
        """Write a snapshot in this process (at shutdown, when nothing changes the state)."""
        started = time.perf_counter()
        try:
            size = snapshot.save(self.path, self.ingestor)
        except Exception as err:
            self._failed(_describe(err))
            return False
        self._succeeded(time.time(), time.perf_counter() - started, size, None)
        return True

    # ----- the child ------------------------------------------------------------------------

    def _write_in_child(self, parent: int, report_fd: int, taken_at: float) -> None:
        """Write the snapshot, report on `report_fd`, and exit: never returns."""
        code = 1
        try:
            _detach(parent, report_fd)
            size = snapshot.save(self.path, self.ingestor, self.pause)
            used = os.times()
            report: dict[str, Any] = {
                "bytes": size,
                "memory": _private_memory(),
                "cpu": used.user + used.system,
            }
            code = 0
        except BaseException as err:
            report = {"error": _describe(err)}
        with contextlib.suppress(OSError):
            os.write(report_fd, orjson.dumps(report)[:_REPORT_LIMIT])
        os._exit(code)

    # ----- the parent -----------------------------------------------------------------------

    def _on_report(self) -> None:
        child = self._child
        if child is None:
            return
        try:
            chunk = os.read(child.fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            child.report += chunk
            return
        # End of file: the child has exited, or is about to.
        self._stop_reading(child)
        self._reap(child)

    def _reap(self, child: _Child) -> None:
        try:
            pid, wait_status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            pid, wait_status = child.pid, -1  # reaped elsewhere: judge by the report alone
        if pid == 0:
            asyncio.get_running_loop().call_later(0.005, self._reap, child)
            return
        code = os.waitstatus_to_exitcode(wait_status) if wait_status >= 0 else 0
        try:
            report = orjson.loads(bytes(child.report)) if child.report else {}
        except orjson.JSONDecodeError:
            report = {}
        duration = time.perf_counter() - child.started
        self._end(child)
        if code != 0:
            self._remove_temp(child.pid)  # a writer killed before it could clean up
        if code == 0 and "bytes" in report:
            self._succeeded(child.taken_at, duration, int(report["bytes"]), report.get("memory"))
            log.debug("snapshot writer %d used %.2f s of CPU", child.pid, report.get("cpu", 0))
        elif "error" in report:
            self._failed(str(report["error"]))
        elif code < 0:
            self._failed(f"the writer was killed by signal {-code}")
        else:
            self._failed(f"the writer exited with status {code}")

    def _remove_temp(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            temp_path(self.path, pid).unlink()

    def _stop_reading(self, child: _Child) -> None:
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(child.fd)
        with contextlib.suppress(OSError):
            os.close(child.fd)

    def _end(self, child: _Child) -> None:
        self._child = None
        if not child.done.done():
            child.done.set_result(None)
        self.after()

    def _succeeded(self, taken_at: float, duration: float, size: int, memory: Any) -> None:
        status = self.status
        status.taken_at, status.duration, status.size = taken_at, duration, size
        status.writer_memory = int(memory) if memory is not None else None
        log.debug(
            "snapshot to %s: %.1f MiB in %.2f s; the writer held %s MiB of its own",
            self.path,
            size / 2**20,
            duration,
            "?" if memory is None else f"{int(memory) / 2**20:.0f}",
        )
        if self._failing:
            log.info("snapshots to %s are written again", self.path)
            self._failing = False

    def _failed(self, reason: str) -> None:
        """Count and log a failed snapshot: one line per attempt, so once per interval."""
        self.status.failures += 1
        self.status.last_error = reason
        self._failing = True
        log.error(
            "snapshot to %s failed: %s; the service carries on, and the last whole snapshot "
            "stays in place",
            self.path,
            reason,
        )


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:1000]


def _detach(parent: int, keep_fd: int) -> None:
    """Make a forked child a quiet writer: it dies with the service, takes default signals,
    holds none of the service's sockets or files, never collects garbage, and yields the CPU."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)  # the service died before the line above
    with contextlib.suppress(ValueError):  # only in the main thread
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
    gc.disable()
    # A socket the service closes must not stay open here (its peer would wait for us).
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, _max_fd())
    with contextlib.suppress(OSError):
        os.nice(10)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536


def _private_memory() -> int | None:
    """Bytes of memory this process holds alone (Linux), read at its end."""
    try:
        with open("/proc/self/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Private_Dirty:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
