"""Interop tests run real binaries against the product's server (asyncio only: grpc.aio)."""

from __future__ import annotations

import pytest

from .._loops import ASYNCIO


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO
