"""``kill -9`` of a process appending to a ``local`` log, right after acknowledgements:
what each fsync mode keeps and what the epoch says after the restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from broadcaster import Retention
from broadcaster._core._sqlite_store import LocalConfig, SqliteStore

from ._util import Recorder

ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(data_dir: Path, fsync: str, acks: int) -> tuple[str, dict[int, bytes]]:
    """Start the child, SIGKILL it once it printed *acks* acknowledgements; return its
    epoch and every acknowledged sequence with its payload."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.logs._local_child", str(data_dir), fsync],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    acked: dict[int, bytes] = {}
    epoch = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded: the test's timeout, and the child's loop
            word, *rest = line.split()
            if word == "ready":
                epoch = rest[0]
            elif word == "ack":
                acked[int(rest[0])] = rest[1].encode()
                if len(acked) >= acks:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and len(acked) >= acks
    return epoch, acked


async def reopen(data_dir: Path, fsync: str) -> tuple[str, str, dict[int, bytes]]:
    async with SqliteStore(LocalConfig(data_dir, fsync=fsync)) as store:  # type: ignore[arg-type]
        log = await store.open_log("default", Retention(), Recorder())
        events = log.read(1, log.head + 1)
        assert [e.sequence for e in events] == list(range(1, log.head + 1))  # no gap
        return store.epoch, store.epoch_reason, {e.sequence: e.payload for e in events}


@pytest.mark.parametrize("fsync", ["always", "batch"])
def test_every_acknowledged_event_survives_kill_9(tmp_path: Path, fsync: str) -> None:
    epoch, acked = run_and_kill(tmp_path, fsync, acks=300)
    new_epoch, reason, stored = anyio.run(reopen, tmp_path, fsync)
    assert (new_epoch, reason) == (epoch, "")  # the same history: resumes need no resync
    missing = {seq: p for seq, p in acked.items() if stored.get(seq) != p}
    assert not missing


def test_interval_starts_a_new_epoch_after_kill_9(tmp_path: Path) -> None:
    epoch, acked = run_and_kill(tmp_path, "interval", acks=300)
    new_epoch, reason, stored = anyio.run(reopen, tmp_path, "interval")
    assert new_epoch != epoch and reason == "unclean_shutdown"
    assert all(stored[seq] == acked[seq] for seq in stored if seq in acked)
