"""`broadcaster top` in a real terminal: tmux runs it in a pane, `capture-pane` reads the
screen, `send-keys` presses keys. Every wait polls the screen with a deadline."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from broadcaster.grpc import Server

from .._loops import ASYNCIO
from ._traffic import STUCK_BOUND, running_server, traffic

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

CLI = [sys.executable, "-m", "broadcaster._cli"]


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


class Tmux:
    """One private tmux server (its own socket name) with one session, ``top``.

    The pane's shell writes the command's exit status to a file and stays, as a user's
    shell would, so the terminal's state after the command can be read (tmux's own
    ``pane_dead_status`` is not reliably set for a process that exits quickly)."""

    def __init__(self, folder: Path) -> None:
        self.socket = f"broadcaster-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.config = folder / "tmux.conf"
        self.config.write_text("set -g status off\n")
        self.status = folder / "exit-status"

    async def run(self, *args: str, check: bool = True) -> str:
        tmux = shutil.which("tmux")
        assert tmux is not None, "tmux is not installed (.ci/run installs it)"
        with anyio.fail_after(10):
            result = await anyio.run_process(
                [tmux, "-L", self.socket, "-f", str(self.config), *args], check=False)
        assert result.returncode == 0 or not check, result.stderr.decode()
        return result.stdout.decode()

    async def start(self, command: list[str], width: int = 110, height: int = 24) -> None:
        shell = (f"{shlex.join(command)}; echo $? > {shlex.quote(str(self.status))}; "
                 "exec sleep 120")
        await self.run("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                       shell)

    async def screen(self) -> str:
        return await self.run("capture-pane", "-p", "-t", "top")

    async def wait_screen(self, predicate: Callable[[str], bool], within: float = 20) -> str:
        text = ""
        with anyio.move_on_after(within):
            while not predicate(text := await self.screen()):
                await anyio.sleep(0.05)
            return text
        raise AssertionError(f"the screen never showed what was expected:\n{text}")

    async def pane(self, fields: str) -> list[str]:
        return (await self.run("display-message", "-p", "-t", "top", fields)).split()

    async def wait_exit(self, within: float = 15) -> int:
        """The command's exit status, once it has exited."""
        with anyio.fail_after(within):
            status = anyio.Path(self.status)
            while not (await status.exists() and (await status.read_text()).endswith("\n")):
                await anyio.sleep(0.05)
            return int(await status.read_text())

    async def close(self) -> None:
        """Stop the tmux server and remove its socket (tmux leaves it behind)."""
        path = (await self.run("display-message", "-p", "#{socket_path}", check=False)).strip()
        if path:  # else no server is running (the session never started)
            await self.run("kill-server")
            await anyio.Path(path).unlink(missing_ok=True)


@pytest.fixture
async def tmux(tmp_path: Path) -> AsyncIterator[Tmux]:
    terminal = Tmux(tmp_path)
    try:
        yield terminal
    finally:
        with anyio.CancelScope(shield=True):
            await terminal.close()


def table(screen: str) -> dict[str, dict[str, str]]:
    """Rows of the namespace table on *screen*, by namespace, as {column title: cell}."""
    lines = screen.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("NAMESPACE")), None)
    if start is None:
        return {}
    title = lines[start].split()
    rows = [line.split() for line in lines[start + 1:] if line.strip()]
    return {cells[0]: dict(zip(title, cells, strict=True)) for cells in rows
            if len(cells) == len(title)}


def busy_and_stuck_are_live(screen: str) -> bool:
    rows = table(screen)
    if rows.keys() != {"busy", "stuck"}:
        return False
    busy, stuck = rows["busy"], rows["stuck"]
    return (busy["PUB/s"] not in ("-", "0") and busy["DELIV/s"] not in ("-", "0")
            and stuck["DROP/s"] not in ("-", "0") and stuck["LAG"] == str(STUCK_BOUND))


async def left_cleanly(tmux: Tmux) -> None:
    """The terminal is back to normal: main screen, cursor shown, no traceback."""
    assert await tmux.pane("#{alternate_on} #{cursor_flag}") == ["0", "1"]
    assert "Traceback" not in await tmux.screen()


async def test_top_shows_live_figures_sorts_on_s_and_quits_on_q(
        tmp_path: Path, tmux: Tmux) -> None:
    async with running_server(tmp_path) as server, traffic(server):
        await tmux.start([*CLI, "top", "--address", server.addresses[0], "--interval", "0.2"])
        screen = await tmux.wait_screen(busy_and_stuck_are_live)
        lines = screen.splitlines()
        assert lines[0].startswith(f"broadcaster top  {server.addresses[0]}  epoch "
                                   f"{server.hub.epoch}  up ")
        assert lines[1].startswith("subscriptions 2  streams ")
        assert lines[3] == "sorted by publish  (s: sort, q: quit)"
        await tmux.run("send-keys", "-t", "top", "s")
        await tmux.wait_screen(lambda text: "sorted by deliver  (s: sort" in text)
        await tmux.run("send-keys", "-t", "top", "q")
        assert await tmux.wait_exit() == 0
        await left_cleanly(tmux)


@pytest.mark.parametrize("quit_with", ["C-c", "SIGTERM"])
async def test_top_keeps_going_when_the_server_goes_away_and_quits_on_ctrl_c_or_sigterm(
        tmp_path: Path, tmux: Tmux, quit_with: str) -> None:
    server: Server
    async with running_server(tmp_path) as server:
        async with traffic(server):
            await tmux.start([*CLI, "top", "--address", server.addresses[1],
                              "--interval", "0.2", "--sort", "name"])
            await tmux.wait_screen(busy_and_stuck_are_live)
    # the server is gone: the last figures stay, with the error, and top keeps trying
    screen = await tmux.wait_screen(lambda text: "! UNAVAILABLE: " in text)
    assert table(screen).keys() == {"busy", "stuck"}
    if quit_with == "C-c":
        await tmux.run("send-keys", "-t", "top", "C-c")
    else:
        [shell] = await tmux.pane("#{pane_pid}")
        children = anyio.Path(f"/proc/{shell}/task/{shell}/children")
        [top] = (await children.read_text()).split()
        os.kill(int(top), signal.SIGTERM)
    assert await tmux.wait_exit() == 0
    await left_cleanly(tmux)
