"""Counting turns of the event loop, for tests of what goes on in one turn."""

from __future__ import annotations

import anyio.lowlevel


class Ticker:
    """Counts turns of the event loop while it runs: ``tg.start_soon(ticker.run)``, a
    task that checkpoints once per turn; ``ticker.running = False`` ends it."""

    def __init__(self) -> None:
        self.turn = 0
        self.running = True

    async def run(self) -> None:
        while self.running:
            self.turn += 1
            await anyio.lowlevel.checkpoint()
