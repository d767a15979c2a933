"""Readers of the deployment files and a runner for the commands they start.

The tests run what systemd and a container engine would run, on this machine: the
install prefix ``/opt/broadcaster`` is the test's virtualenv, and the addresses in the
configuration files are moved to a temporary directory and free ports.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PREFIX = "/opt/broadcaster"


def local(word: str) -> str:
    """*word* with the install prefix replaced by the test's virtualenv."""
    return word.replace(PREFIX, sys.prefix)


# -- systemd units --------------------------------------------------------------------

def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]} (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r} is not KEY=VALUE"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(unit: Mapping[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [value for k, value in unit.get(section, []) if k == key]


# -- Dockerfiles ----------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (``CMD ["a", "b"]``)."""
        assert self.args.startswith("["), f"{self.keyword} is not in exec form: {self.args}"
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


def read_dockerfile(path: Path) -> list[Instruction]:
    """Instructions in order, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, f"{path}: ends inside a continued line"
    return instructions


def final_stage(instructions: Sequence[Instruction]) -> list[Instruction]:
    start = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return list(instructions[start:])


def one(instructions: Sequence[Instruction], keyword: str) -> Instruction:
    found = [ins for ins in instructions if ins.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


# -- configuration files --------------------------------------------------------------

@dataclass(frozen=True)
class Addresses:
    """Where a configuration file listens, and the same file moved for a test."""

    sockets: list[str]  # unix socket paths, as written in the file
    tcp: list[str]  # HOST:PORT, as written
    metrics: str | None
    text: str  # the file with sockets under the test's directory and ports 0 on loopback


def move_addresses(config: Path, runtime_dir: str, test_dir: Path) -> Addresses:
    """Read *config*'s listen and metrics addresses; in its text, sockets under
    *runtime_dir* move to *test_dir* and TCP addresses become ``127.0.0.1:0``."""
    text = config.read_text()
    server = tomllib.loads(text).get("server", {})
    sockets, tcp = [], []
    for address in server.get("listen", []):
        if address.startswith("unix:"):
            path = address[len("unix:"):]
            assert path.startswith(runtime_dir + "/"), f"{address} is not in {runtime_dir}"
            sockets.append(path)
            moved = f"unix:{test_dir / path[len(runtime_dir) + 1:]}"
        else:
            tcp.append(address)
            moved = "127.0.0.1:0"
        text = text.replace(json.dumps(address), json.dumps(moved))
    metrics = server.get("metrics_listen")
    if metrics is not None:
        text = text.replace(json.dumps(metrics), json.dumps("127.0.0.1:0"))
    return Addresses(sockets, tcp, metrics, text)


# -- running a server -----------------------------------------------------------------

_SERVING = re.compile(r"serving addresses=(?P<addresses>\S+) metrics=(?P<metrics>\S+)")


@dataclass
class Running:
    process: anyio.abc.Process
    addresses: list[str]
    metrics: str | None
    log: list[str]

    async def stop(self, signum: int = signal.SIGTERM, within: float = 10.0) -> int:
        self.process.send_signal(signum)
        with anyio.fail_after(within):
            return await self.process.wait()


@asynccontextmanager
async def running(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                  umask: int = -1) -> AsyncIterator[Running]:
    """Start *argv* (``broadcaster serve ...``), wait (bounded) for its "serving" log
    line, JSON or text; the process is killed if still running at the end."""
    process = await anyio.open_process(list(argv), env=dict(env or os.environ), umask=umask)
    try:
        log: list[str] = []
        assert process.stderr is not None
        buffer = ""
        with anyio.fail_after(20):
            async for chunk in TextReceiveStream(process.stderr):
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                log += lines
                found = [m for line in lines if (m := _SERVING.search(_message(line)))]
                if found:
                    break
            else:
                raise AssertionError(f"{shlex.join(argv)} exited:\n" + "\n".join(log))
        metrics = found[0]["metrics"]
        yield Running(process, found[0]["addresses"].split(","),
                      None if metrics == "None" else metrics, log)
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True), anyio.fail_after(10):
            await process.wait()
        await process.aclose()


def _message(line: str) -> str:
    if line.startswith("{"):
        entry: dict[str, Any] = json.loads(line)
        return str(entry.get("msg", ""))
    return line


async def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              within: float = 40.0) -> tuple[int, str, str]:
    with anyio.fail_after(within):
        result = await anyio.run_process(list(argv), env=dict(env or os.environ), check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def http_get(address: str, path: str) -> tuple[int, str]:
    """``GET http://address/path`` over a plain socket (status, body)."""
    host, _, port = address.rpartition(":")
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            data = b""
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body
