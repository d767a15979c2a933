"""A `ctr events` that cannot keep up, under each containerd Subscribe overflow policy:
`disconnect` ends it with an error it prints (no silent gap), `drop_oldest` keeps it
with a gap only the metrics show; other subscribers lose nothing either way."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from broadcaster import Event, HubConfig, Policy, PolicyKind
from broadcaster.containerd.events import task_pb2

from .harness import containerd_server, ctr_events, socket_path

pytestmark = [pytest.mark.anyio, pytest.mark.interop,
              pytest.mark.usefixtures("shared_event_loop")]

TASK_EXIT = "containerd.events.TaskExit"
#: Events large enough that ctr's stdout pipe, its HTTP/2 window and the socket buffers
#: fill long before COUNT events are through, so the stream falls behind its bound.
COUNT, SIZE = 3000, 2048


def _exit(i: int) -> bytes:
    return task_pb2.TaskExit(container_id=f"{i:08d}" + "x" * SIZE, pid=i).SerializeToString()


def _pid(line: str) -> int:
    return int(json.loads(line.split(" ", 6)[6])["pid"])


async def _flood_past_a_stalled_ctr(kind: str, tmp_path: Path) -> tuple[
        list[str], str, int | None, list[Event], int]:
    """Publish COUNT events while ctr's output is not read; then read everything ctr
    prints until it exits or prints the last event. Returns (ctr's lines, its stderr, its
    exit code or None if still running, what a fast in-process subscriber received, drops
    counted)."""
    path = socket_path(tmp_path)
    policy = Policy(PolicyKind(kind), max_events=16).validated()
    async with containerd_server(path, HubConfig(overflow_check_interval=0.01),
                                 containerd_policy=policy) as hub:
        async with hub.subscribe("ns", policy=Policy.drop_newest(COUNT)) as fast:
            async with ctr_events(hub, path, tmp_path=tmp_path) as ctr:
                for i in range(COUNT):
                    await hub.publish("ns", "/tasks/exit", _exit(i), type_url=TASK_EXIT)
                with anyio.fail_after(20):
                    received = [await fast.receive() for _ in range(COUNT)]
                lines: list[str] = []
                with anyio.fail_after(30):
                    while not lines or _pid(lines[-1]) != COUNT - 1:
                        try:
                            lines.append(await ctr.line())
                        except (anyio.EndOfStream, anyio.IncompleteRead):
                            await ctr.process.wait()  # ctr exited: its stdout is closed
                            break
                code = ctr.process.returncode
                stderr = ctr.stderr()
        dropped = sum(hub.statistics().namespaces["ns"].dropped.values())
    return lines, stderr, code, received, dropped


async def test_disconnect_ends_a_ctr_that_cannot_keep_up_with_an_error(tmp_path: Path) -> None:
    lines, stderr, code, received, _ = await _flood_past_a_stalled_ctr("disconnect", tmp_path)
    pids = [_pid(line) for line in lines]
    assert pids == list(range(len(pids)))  # what it printed has no gap...
    assert len(pids) < COUNT               # ...it stopped, and said why:
    assert code == 1
    assert "code = ResourceExhausted desc = subscription ended (slow_consumer)" in stderr
    assert "fell more than 16 events behind" in stderr
    assert [e.sequence for e in received] == list(range(1, COUNT + 1))  # others: all


async def test_drop_oldest_keeps_ctr_connected_with_a_gap_it_cannot_see(tmp_path: Path) -> None:
    lines, stderr, code, received, dropped = await _flood_past_a_stalled_ctr(
        "drop_oldest", tmp_path)
    pids = [_pid(line) for line in lines]
    assert pids == sorted(pids) and pids[-1] == COUNT - 1
    assert len(pids) < COUNT and dropped >= COUNT - len(pids)  # the gap is only counted
    assert code is None and "ResourceExhausted" not in stderr  # still running, no error
    assert [e.sequence for e in received] == list(range(1, COUNT + 1))
