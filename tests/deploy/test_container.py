"""deploy/container: the image build file's shape, and its entry command run as a process.

No container engine runs here, so nothing is built: the build file is read, and what the
image would run (ENTRYPOINT + CMD with its configuration, then the HEALTHCHECK command,
then STOPSIGNAL) runs against this virtualenv, which stands for /opt/broadcaster.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import signal
import tomllib
from pathlib import Path

import anyio
import pytest

from .._loops import ASYNCIO
from ._files import (
    DEPLOY,
    ROOT,
    Instruction,
    final_stage,
    http_get,
    local,
    move_addresses,
    one,
    read_dockerfile,
    run,
    running,
)

pytestmark = pytest.mark.anyio

DOCKERFILE = DEPLOY / "container" / "Dockerfile"
IGNORE = DEPLOY / "container" / "Dockerfile.dockerignore"
CONFIG_IN_IMAGE = "/etc/broadcaster/broadcaster.toml"


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


def instructions() -> list[Instruction]:
    return read_dockerfile(DOCKERFILE)


def copies(stage: list[Instruction]) -> dict[str, str]:
    """{destination: source} of the stage's COPY instructions from the build context."""
    found = {}
    for ins in stage:
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            *sources, destination = ins.args.split()
            for source in sources:
                found[destination.rstrip("/") + ("/" + source if destination.endswith("/")
                                                 else "")] = source
    return found


def context_files() -> list[str]:
    """Files of the repository a build with Dockerfile.dockerignore sends (git's view)."""
    patterns = [line.strip() for line in IGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*") or (
                    pattern.startswith("**/") and f"/{pattern[3:]}/" in f"/{path}/"):
                keep = negate
        return keep

    return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts
            and included(str(p.relative_to(ROOT)))]


def config() -> dict[str, object]:
    source = copies(final_stage(instructions()))[CONFIG_IN_IMAGE]
    return tomllib.loads((ROOT / source).read_text())


def test_build_file_is_multi_stage_non_root_with_the_socket_in_a_volume() -> None:
    all_instructions = instructions()
    stages = [ins for ins in all_instructions if ins.keyword == "FROM"]
    assert len(stages) >= 2
    build_name = stages[0].args.split()[-1]
    final = final_stage(all_instructions)
    assert any(ins.keyword == "COPY" and ins.args.startswith(f"--from={build_name} ")
               for ins in final), "the runtime stage takes the build stage's output"
    assert not any(ins.keyword == "RUN" and "pip install" in ins.args for ins in final)
    user = one(final, "USER").args.split(":")
    assert user[0] not in ("root", "0") and int(user[0]) > 0 and int(user[1]) > 0
    [socket] = [a[len("unix:"):] for a in config()["server"]["listen"]  # type: ignore[index]
                if a.startswith("unix:")]
    assert os.path.dirname(socket) in one(final, "VOLUME").exec_form()
    # a non-root user binds unprivileged ports only; EXPOSE lists what the config serves
    ports = {int(a.rpartition(":")[2]) for a in [*config()["server"]["listen"],  # type: ignore[index]
                                                 config()["server"]["metrics_listen"]]  # type: ignore[index]
             if not a.startswith("unix:")}
    assert {int(p) for p in one(final, "EXPOSE").args.split()} == ports
    assert min(ports) >= 1024
    # the health check asks the gRPC health service on the socket
    health = one(final, "HEALTHCHECK").args
    command = Instruction("CMD", health[health.index("CMD ") + 4:]).exec_form()
    assert command[:2] == ["broadcaster", "health"]
    assert command[command.index("--address") + 1] == f"unix:{socket}"
    assert one(final, "STOPSIGNAL").args == "SIGTERM"


def test_build_context_holds_what_the_build_copies_and_little_else() -> None:
    files = context_files()
    for ins in instructions():
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            for source in ins.args.split()[:-1]:
                assert any(f == source or f.startswith(source.rstrip("/") + "/")
                           for f in files), f"{source} is not in the build context"
    assert "pyproject.toml" in files and "broadcaster/_cli/_serve.py" in files
    assert not [f for f in files if f.startswith(("tests/", "bench/", "docs/"))]


def image_command(volume: Path, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """ENTRYPOINT + CMD as this machine runs them: the configuration the build copies,
    its socket moved into *volume*, its ports 0 on loopback; ENV applied."""
    final = final_stage(instructions())
    argv = [*one(final, "ENTRYPOINT").exec_form(), *one(final, "CMD").exec_form()]
    at = argv.index("--config") + 1
    assert argv[at] == CONFIG_IN_IMAGE
    [socket] = [a for a in config()["server"]["listen"] if a.startswith("unix:")]  # type: ignore[index]
    moved = move_addresses(ROOT / copies(final)[CONFIG_IN_IMAGE],
                           os.path.dirname(socket[len("unix:"):]), volume)
    (tmp_path / "broadcaster.toml").write_text(moved.text)
    argv[at] = str(tmp_path / "broadcaster.toml")
    env = dict(os.environ)
    for name, _, value in (item.partition("=") for item in
                           shlex.split(one(final, "ENV").args)):
        env[name] = local(value).replace("$PATH", os.environ["PATH"])
    return argv, env


async def test_entry_command_serves_passes_the_health_check_and_stops_on_stopsignal(
        tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    argv, env = image_command(volume, tmp_path)
    final = final_stage(instructions())
    health = one(final, "HEALTHCHECK").args
    check = Instruction("CMD", health[health.index("CMD ") + 4:]).exec_form()
    socket = check[check.index("--address") + 1]
    check[check.index("--address") + 1] = f"unix:{volume / os.path.basename(socket)}"
    stop = signal.Signals[one(final, "STOPSIGNAL").args]
    left = volume / os.path.basename(socket)
    # killed (OOM, docker kill): the socket stays in the volume; the next start takes it
    for attempt, signum in (("killed", signal.SIGKILL), ("restarted over the old socket", stop)):
        async with running(argv, env=env) as server:
            with anyio.fail_after(20):  # the engine repeats the check until it passes
                while (result := await run(check, env=env))[0] != 0:
                    await anyio.sleep(0.1)
            assert result[1] == "SERVING\n", attempt
            assert server.metrics is not None
            assert (await http_get(server.metrics, "/healthz"))[0] == 200
            status, body = await http_get(server.metrics, "/metrics")
            assert status == 200 and "\nprocess_resident_memory_bytes " in body
            assert server.log[0].startswith("{")  # the image logs JSON lines
            code = await server.stop(signum, within=10)  # docker stop's timeout
        assert code == (0 if signum == stop else -signal.SIGKILL), attempt
        assert left.exists() == (signum == signal.SIGKILL), attempt
