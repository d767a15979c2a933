"""Real ``broadcaster serve`` processes for fault tests: started on a free loopback port
with the flags a test gives, ready once the server logs that it serves, killed with
SIGKILL or stopped with SIGTERM by PID."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .._nats import free_ports, kill_process, stop_process

__all__ = ["ServeProcess"]

ROOT = Path(__file__).resolve().parents[2]
_READY_TIMEOUT = 30.0


class ServeProcess:
    """``python -m broadcaster._cli serve --listen 127.0.0.1:PORT ARGS...``; the same
    port and arguments on every :meth:`start`."""

    def __init__(self, name: str, base: Path, *args: str) -> None:
        self.name = name
        [self.port] = free_ports(1)
        self.args = list(args)
        self.log_path = base / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "broadcaster._cli", "serve", "--listen", self.address,
                 "--log-level", "info", "--heartbeat-interval", "0.5", "--grace-period", "1",
                 *self.args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        """Wait until this run logged ``serving`` (bounded; fails if the process exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"broadcaster serve {self.name} exited: {self.tail()}")
            if "level=info logger=broadcaster.server serving" in self._this_run():
                return
            time.sleep(0.05)
        raise TimeoutError(f"broadcaster serve {self.name} not serving in {timeout} s: "
                           f"{self.tail()}")

    def _this_run(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        kill_process(self.process)

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit within 10 s."""
        stop_process(self.process)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self._this_run().splitlines()[-lines:])
