"""``broadcaster serve --workers N``: N server processes on the same TCP addresses.

One Python thread serves every stream of a ``broadcaster serve`` process, and grpc.aio
costs tens of microseconds per stream message, so one process is bound to one core.
With the ``jetstream`` log, several processes can serve the same history: each worker is
a node of the log (what one publishes, every one delivers), and every worker binds the
same TCP ports with ``SO_REUSEPORT``, so the kernel spreads new connections over them.

The supervisor (this module, in the process the user started) serves nothing itself:

- it starts worker ``i`` as ``broadcaster serve ... --worker-index i``, the same command
  line; the worker derives its own settings (:func:`worker_config`): the shared TCP
  addresses, the unix sockets in worker 0 only (a socket path cannot be shared), and
  ``/metrics`` on the metrics port + ``i``;
- it forwards SIGHUP (reload the security files) to every worker, and on SIGTERM or
  SIGINT it forwards SIGTERM and waits for every worker to stop (each drains as a lone
  server does), killing those still running ``grace_period`` + 10 s later;
- it starts a worker that exited again, after 0.5 s doubling up to 30 s while the
  worker keeps exiting within a minute of its start; the clients of that worker lose
  their connections and reconnect, to any worker (the Python client resumes its
  subscriptions where they were);
- a worker that exits with status 2 (its configuration or security files cannot be
  used) stops them all: the supervisor exits 2.

A worker whose supervisor is gone (SIGKILLed: it could not stop its workers) notices
within a second and stops as on SIGTERM.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence

import anyio
from anyio.abc import Process

from .._config_file import FileConfig

__all__ = ["Supervisor", "serve_command", "supervise", "worker_config"]

logger = logging.getLogger("broadcaster.workers")

#: Exit status of a worker whose configuration cannot be used: restarting cannot help.
_UNUSABLE = 2
#: A worker that ran this long before exiting is restarted after the first backoff.
_STEADY = 60.0


def worker_config(config: FileConfig, index: int) -> FileConfig:
    """The settings of worker *index* (0-based) of ``config.workers``: the TCP addresses
    bound with ``SO_REUSEPORT``, the unix sockets only in worker 0, ``/metrics`` on the
    configured port + *index*."""
    server = config.server
    listen = tuple(a for a in server.listen if index == 0 or not a.startswith("unix:"))
    metrics = server.metrics_listen
    if metrics is not None:
        host, port = metrics.rsplit(":", 1)
        metrics = f"{host}:{int(port) + index}"
    # the settings of a unix socket's listener go with the socket (worker 0)
    security = dataclasses.replace(server.security, listeners={
        address: listener for address, listener in server.security.listeners.items()
        if address in listen})
    server = dataclasses.replace(server, listen=listen, metrics_listen=metrics,
                                 reuse_port=True, security=security)
    return dataclasses.replace(config, server=server, workers=1)


class Supervisor:
    """Starts, restarts and stops the workers.

    :param command: the command line that starts worker ``i`` when ``--worker-index i``
        is appended (``broadcaster serve`` and its arguments)
    :param workers: how many
    :param grace_period: the workers' own (seconds a stopping worker gives its RPCs)
    :param backoff: first and largest delay before a worker that exited is started again
    """

    def __init__(self, command: Sequence[str], workers: int, grace_period: float,
                 backoff: tuple[float, float] = (0.5, 30.0)) -> None:
        self._command = list(command)
        self._workers = workers
        self._grace_period = grace_period
        self._backoff = backoff
        self._processes: dict[int, Process] = {}
        self._done = anyio.Event()  # a stop signal, or a worker that cannot start
        self._status = 0

    async def run(self) -> int:
        """Run the workers until SIGTERM or SIGINT (or until one finds its configuration
        unusable); return the exit status (0, or 2 for an unusable configuration)."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT,
                                        signal.SIGHUP) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._take_signals, signals)
                for index in range(self._workers):
                    tg.start_soon(self._keep, index)
                await self._done.wait()
                await self._stop()
                tg.cancel_scope.cancel()  # a worker's backoff, the signal receiver
        return self._status

    async def _take_signals(self, signals: AsyncIterator[signal.Signals]) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                logger.info("signal received signal=SIGHUP: passed to the workers")
                self._signal_all(signal.SIGHUP)
                continue
            logger.info("signal received signal=%s: stopping the workers",
                        signal.Signals(signum).name)
            self._done.set()
            return

    async def _keep(self, index: int) -> None:
        """Run worker *index*, again each time it exits, until the supervisor stops."""
        delay = self._backoff[0]
        while not self._done.is_set():
            started = anyio.current_time()
            # a session of its own: a terminal's Ctrl-C reaches the supervisor only, which
            # stops each worker once
            process = await anyio.open_process(
                [*self._command, "--worker-index", str(index)],
                stdin=subprocess.DEVNULL, stdout=None, stderr=None, start_new_session=True)
            self._processes[index] = process
            logger.info("worker started index=%d pid=%d", index, process.pid)
            status = await process.wait()
            del self._processes[index]
            if self._done.is_set():
                logger.info("worker stopped index=%d status=%d", index, status)
                return
            if status == _UNUSABLE:
                logger.error("worker cannot start index=%d status=%d: stopping every "
                             "worker", index, status)
                self._status = _UNUSABLE
                self._done.set()
                return
            if anyio.current_time() - started >= _STEADY:
                delay = self._backoff[0]
            logger.error("worker exited index=%d pid=%d status=%d: starting it again "
                         "in %.1f s", index, process.pid, status, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _stop(self) -> None:
        """SIGTERM to every worker; SIGKILL to those still running after their grace
        period + 10 s."""
        self._signal_all(signal.SIGTERM)
        with anyio.move_on_after(self._grace_period + 10.0):
            for process in list(self._processes.values()):
                await process.wait()
        for index, process in list(self._processes.items()):
            # (one that stopped may still be listed: its task has not run since)
            if process.returncode is None:
                logger.error("worker did not stop index=%d pid=%d: killed", index,
                             process.pid)
                process.kill()

    def _signal_all(self, signum: signal.Signals) -> None:
        for process in list(self._processes.values()):
            if process.returncode is None:
                process.send_signal(signum)


async def supervise(command: Sequence[str], config: FileConfig) -> int:
    """Run ``config.workers`` workers of *command* (see :class:`Supervisor`)."""
    return await Supervisor(command, config.workers, config.server.grace_period).run()


def serve_command(argv: Sequence[str]) -> list[str]:
    """The command line of a worker: this Python running ``broadcaster._cli`` with the
    supervisor's own arguments (*argv*, from ``serve`` on)."""
    return [sys.executable, "-m", "broadcaster._cli", *argv]

