"""Interop tests run real binaries against the product's server (asyncio only: grpc.aio)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"
