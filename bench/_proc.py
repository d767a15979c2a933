"""Child processes with bounded lifetimes, and CPU/RSS figures read from /proc."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["Child", "ProcessGroup", "cpu_seconds", "cpu_wait_seconds", "established", "rss_bytes",
           "thread_times", "vmrss_bytes"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process *pid* (0.0 if it is gone).

    :param pid: process id
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_wait_seconds(pid: int) -> float | None:
    """Seconds the live threads of process *pid* have spent runnable but waiting for a
    CPU (the second field of ``/proc/<pid>/task/<tid>/schedstat``, summed): what a
    process lost to the others on a busy machine. None if the process is gone or the
    kernel keeps no such figure.

    :param pid: process id
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    # a thread that just ended has no figure, nor any where the kernel keeps none
    waits = [times[1] for tid in tids if (times := thread_times(pid, int(tid))) is not None]
    return sum(waits) if waits else None


def thread_times(pid: int, tid: int | None = None) -> tuple[float, float] | None:
    """Seconds thread *tid* of process *pid* (its main thread by default) has run, and
    has waited for a CPU while runnable (``schedstat``); None if it is gone.

    :param pid: process id
    :param tid: thread id, *pid* for the main thread
    """
    try:
        fields = Path(f"/proc/{pid}/task/{tid or pid}/schedstat").read_text().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_seconds(pid: int) -> float:
    """:func:`cpu_seconds` of process *pid* and of its running children (the workers of
    ``broadcaster serve --workers``; a lone server has none)."""
    total = cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            total += cpu_seconds(int(entry.name))
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size of process *pid* in bytes (0 if it is gone).

    :param pid: process id
    """
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except OSError:
        return 0


def established(port: int) -> int:
    """TCP connections in state ESTABLISHED whose local port is *port*, i.e. the
    connections a server listening on *port* has accepted (IPv4 and IPv6, from
    ``/proc/net/tcp*``).

    :param port: the server's listening port
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def vmrss_bytes(pid: int) -> int:
    """``VmRSS`` of process *pid* from ``/proc/PID/status``, in bytes (0 if it is gone).

    :param pid: process id
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Child:
    """A child process speaking JSON lines on stdout; killed at its deadline."""

    def __init__(self, name: str, argv: Sequence[str], deadline: float, *, env: dict | None = None,
                 stderr_file: Path | None = None):
        self.name = name
        self.deadline = time.monotonic() + deadline
        # a chatty child (a server logging every refused request) must not block on a full
        # stderr pipe nobody reads until it exits: such children write to a file
        self.stderr_file = stderr_file
        err: Any = subprocess.PIPE
        if stderr_file is not None:
            err = stderr_file.open("wb")
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        if stderr_file is not None:
            err.close()
        self._buf = b""
        self.messages: list[dict[str, Any]] = []
        self.last_cpu = 0.0
        self.last_cpu_wait: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds so far (the last figure seen once the process is gone)."""
        value = cpu_seconds(self.pid)
        if value:
            self.last_cpu = value
        return self.last_cpu

    def cpu_wait(self) -> float | None:
        """:func:`cpu_wait_seconds` so far (the last figure seen once the process is gone)."""
        value = cpu_wait_seconds(self.pid)
        if value is not None:
            self.last_cpu_wait = value
        return self.last_cpu_wait

    def send(self, line: str) -> None:
        """Write one line to the child's stdin (ignored if it is gone)."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def _pump(self, timeout: float) -> bool:
        """Read what stdout has within *timeout*; False at end of file."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if not ready:
            return True
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return False
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line.strip():
                self.messages.append(json.loads(line))
        return True

    def wait_for(self, key: str, timeout: float) -> dict[str, Any]:
        """Return the first message containing *key*, reading stdout for at most *timeout* s.

        :raises TimeoutError: if none came in time or the process exited without it
        """
        end = min(time.monotonic() + timeout, self.deadline)
        while True:
            for msg in self.messages:
                if key in msg:
                    return msg
            now = time.monotonic()
            alive = now < end and self._pump(min(0.2, end - now))
            self.cpu()
            if not alive and not any(key in msg for msg in self.messages):
                self.kill()
                err = self.stderr_tail()
                raise TimeoutError(f"{self.name}: no {key!r} message in time; stderr: {err}")

    def take(self, key: str, timeout: float) -> dict[str, Any]:
        """Like :meth:`wait_for`, but the message is removed, so that the next call
        returns the next message containing *key*."""
        msg = self.wait_for(key, timeout)
        self.messages.remove(msg)
        return msg

    def poll(self, key: str, timeout: float = 0.0) -> dict[str, Any] | None:
        """The first message containing *key* if one has come (reading stdout for at most
        *timeout* s), else None.

        :raises TimeoutError: if the process is gone (or past its deadline) without one
        """
        for msg in self.messages:
            if key in msg:
                return msg
        alive = time.monotonic() < self.deadline and self._pump(timeout)
        self.cpu()
        for msg in self.messages:
            if key in msg:
                return msg
        if not alive:
            self.kill()
            raise TimeoutError(f"{self.name}: no {key!r} message; stderr: {self.stderr_tail()}")
        return None

    def stderr_tail(self) -> str:
        """The end of the child's stderr once it has exited."""
        if self.proc.poll() is None:
            return ""
        if self.stderr_file is not None:
            with contextlib.suppress(OSError):
                return self.stderr_file.read_bytes()[-2000:].decode(errors="replace")
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        """Kill the child's whole session (it was started in its own)."""
        if self.proc.poll() is None:
            self.cpu()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after *timeout* seconds."""
        if self.proc.poll() is None:
            self.cpu()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class ProcessGroup:
    """Children started for one run; every one is stopped when the block ends."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self._folders: list[Path] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            child.stop(timeout=3.0)
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)

    def cleanup(self, folder: Path) -> None:
        """Remove *folder* (a temporary directory) once every child has stopped."""
        self._folders.append(folder)

    def python(self, name: str, module: str, params: dict[str, Any], deadline: float) -> Child:
        """Start ``python -m module JSON`` with a hard *deadline* (s) passed to it too."""
        params = {**params, "deadline": deadline}
        argv = [sys.executable, "-m", module, json.dumps(params)]
        return self.start(name, argv, deadline + 5.0)

    def start(self, name: str, argv: Sequence[str], deadline: float, *,
              stderr_file: Path | None = None) -> Child:
        child = Child(name, argv, deadline, stderr_file=stderr_file)
        self.children.append(child)
        return child

    def cpu(self) -> dict[str, float]:
        """CPU seconds per child, summed over children of the same name prefix."""
        out: dict[str, float] = {}
        for child in self.children:
            out[child.name] = round(child.cpu(), 3)
        return out
