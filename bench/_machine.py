"""What the figures were measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["machine"]


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory, Python/grpc/protobuf versions."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for mod in ("grpc", "google.protobuf", "anyio", "trio"):
        try:
            info[mod] = __import__(mod, fromlist=["__version__"]).__version__
        except Exception:
            info[mod] = None
    return info
