"""A process that appends to a ``local`` log and prints each acknowledgement, to be
killed with SIGKILL by tests: ``python -m tests.logs._local_child DATA_DIR FSYNC``."""

from __future__ import annotations

import sys

import anyio

from broadcaster import Retention
from broadcaster._core._sqlite_store import LocalConfig, SqliteStore

from ._util import Recorder, item


async def main(data_dir: str, fsync: str) -> None:
    config = LocalConfig(data_dir, fsync=fsync, fsync_interval=0.2)  # type: ignore[arg-type]
    async with SqliteStore(config) as store:
        log = await store.open_log("default", Retention(), Recorder())
        print("ready", store.epoch, flush=True)

        async def publisher(n: int) -> None:
            for i in range(1_000_000):
                payload = f"{n}.{i}"
                stored = await log.append([item(payload, event_id=payload)],
                                          anyio.current_time())
                print("ack", stored[0].sequence, payload, flush=True)

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(publisher, n)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
