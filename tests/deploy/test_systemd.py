"""deploy/systemd: the unit verifies, its user exists, and its commands run the server.

``systemd-analyze`` and ``systemd-sysusers`` run when they are installed (Debian's
``systemd`` package). The unit cannot be started here (no systemd as PID 1), so its own
command lines run as processes, with its umask, runtime directory and stop signal.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import sys
import tomllib
from pathlib import Path

import pytest

from .._loops import ASYNCIO
from ._files import DEPLOY, http_get, local, move_addresses, read_unit, run, running, unit_values

pytestmark = pytest.mark.anyio

UNIT = DEPLOY / "systemd" / "broadcaster.service"
SYSUSERS = DEPLOY / "systemd" / "broadcaster.sysusers"
CLI = [sys.executable, "-m", "broadcaster._cli"]


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


def service(key: str) -> list[str]:
    return unit_values(read_unit(UNIT), "Service", key)


def needs(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (Debian package: systemd)")
    return path


def local_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with the install prefix replaced by this virtualenv (verify checks that
    every command exists)."""
    copy = tmp_path / "broadcaster.service"
    copy.write_text(local(UNIT.read_text() if text is None else text))
    return copy


async def test_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    analyze = needs("systemd-analyze")
    code, out, err = await run([analyze, "verify", str(local_unit(tmp_path))])
    # verify exits 0 even for unknown keys and bad values: any output is a failure
    assert (code, out, err) == (0, "", "")
    # ...which this check would see (it does verify here, not just parse)
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=everything")
    code, out, err = await run([analyze, "verify", str(local_unit(tmp_path, broken))])
    assert "Failed to parse protect system value" in err


async def test_unit_sandbox_exposure_is_low(tmp_path: Path) -> None:
    analyze = needs("systemd-analyze")
    code, out, err = await run([analyze, "security", "--offline=yes", "--threshold=20",
                                str(local_unit(tmp_path))])
    assert code == 0, f"exposure above 2.0:\n{out}{err}"


async def test_sysusers_creates_the_units_user_and_group(tmp_path: Path) -> None:
    sysusers = needs("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    code, _, err = await run([sysusers, f"--root={tmp_path}", str(SYSUSERS)])
    assert code == 0, err
    users = {f[0]: f for f in (line.split(":") for line in
                               (tmp_path / "etc" / "passwd").read_text().splitlines())}
    groups = {f[0]: f for f in (line.split(":") for line in
                                (tmp_path / "etc" / "group").read_text().splitlines())}
    [user], [group] = service("User"), service("Group")
    assert users[user][3] == groups[group][2]  # the user's primary group is the unit's Group
    assert int(users[user][2]) < 1000  # a system user


async def test_unit_commands_serve_on_the_runtime_directory_and_stop_on_kill_signal(
        tmp_path: Path) -> None:
    [start], [post], [runtime] = service("ExecStart"), service("ExecStartPost"), \
        service("RuntimeDirectory")
    argv = shlex.split(local(start))
    config = DEPLOY / "systemd" / Path(argv[argv.index("--config") + 1]).name
    runtime_dir = tmp_path / "run"  # what systemd creates for RuntimeDirectory=
    runtime_dir.mkdir(mode=int(service("RuntimeDirectoryMode")[0], 8))
    moved = move_addresses(config, f"/run/{runtime}", runtime_dir)
    assert len(moved.sockets) == 1 and moved.metrics is not None
    (tmp_path / "broadcaster.toml").write_text(moved.text)
    argv[argv.index("--config") + 1] = str(tmp_path / "broadcaster.toml")
    # the start-up check asks the socket the configuration serves
    assert f"--address unix:{moved.sockets[0]} " in post
    health = shlex.split(local(post).replace(f"/run/{runtime}/", f"{runtime_dir}/"))
    grace = tomllib.loads(config.read_text())["server"]["grace_period"]
    [stop_timeout], [kill] = service("TimeoutStopSec"), service("KillSignal")
    assert grace < float(stop_timeout)

    async with running(argv, umask=int(service("UMask")[0], 8)) as server:
        socket = runtime_dir / Path(moved.sockets[0]).name
        assert stat.S_IMODE(os.stat(socket).st_mode) == 0o660  # owner and group connect
        code, out, err = await run(health)
        assert (code, out) == (0, "SERVING\n"), err
        assert server.metrics is not None
        status, body = await http_get(server.metrics, "/metrics")
        assert status == 200
        for metric in ("broadcaster_uptime_seconds", "process_resident_memory_bytes",
                       "process_cpu_seconds_total", "process_open_fds"):
            assert f"\n{metric} " in body, metric
        assert await server.stop(signal.Signals[kill], within=float(stop_timeout)) == 0


async def test_a_reload_command_exactly_when_the_server_survives_sighup(
        tmp_path: Path) -> None:
    """ExecReload= sends SIGHUP: it belongs in the unit exactly when the server survives
    SIGHUP (it does: SIGHUP reloads the security files; see the comment in the unit)."""
    socket = f"unix:{tmp_path / 's.sock'}"
    async with running([*CLI, "serve", "--listen", socket]) as server:
        server.process.send_signal(signal.SIGHUP)
        code, _, _ = await run([*CLI, "health", "--address", socket])
        survives = code == 0
        if not survives:
            assert await server.process.wait() == -signal.SIGHUP
    assert bool(service("ExecReload")) == survives
