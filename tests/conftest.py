from __future__ import annotations

import pytest
import trio.testing


@pytest.fixture(
    params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Run each anyio test on asyncio and on trio (trio with a virtual, autojumping clock)."""
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return "asyncio"
