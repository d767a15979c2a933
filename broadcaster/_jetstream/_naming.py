"""Stream and subject names for namespaces, and the message encoding.

A namespace is letters and digits separated by single ``.``, ``_`` or ``-``. Stream
names may not contain ``.`` and subject tokens may not either, so names are encoded:
letters, digits and ``-`` stay, ``_`` becomes ``__`` and ``.`` becomes ``_d``. The
encoding is injective (an encoded ``_`` is always followed by ``_`` or ``d``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

__all__ = ["decode_message", "decode_namespace", "encode_message", "encode_namespace"]

_VERSION = 1
_HEADER = struct.Struct("!BI")  # version, length of the metadata JSON


def encode_namespace(namespace: str) -> str:
    """The token that names *namespace* in stream names and subjects."""
    return namespace.replace("_", "__").replace(".", "_d")


def decode_namespace(token: str) -> str | None:
    """The namespace *token* encodes, or None if it is not an encoding of one."""
    out: list[str] = []
    i = 0
    while i < len(token):
        char = token[i]
        if char == "_":
            follower = token[i + 1 : i + 2]
            if follower == "_":
                out.append("_")
            elif follower == "d":
                out.append(".")
            else:
                return None
            i += 2
            continue
        out.append(char)
        i += 1
    name = "".join(out)
    return name if name and encode_namespace(name) == token else None


def encode_message(topic: str, type_url: str, timestamp_ns: int,
                   labels: Mapping[str, str], payload: bytes) -> bytes:
    """An event as a message body: version, metadata JSON, payload."""
    meta = json.dumps([topic, type_url, timestamp_ns, labels or None],
                      separators=(",", ":")).encode()
    return b"".join((_HEADER.pack(_VERSION, len(meta)), meta, payload))


def decode_message(body: bytes) -> tuple[str, str, int, dict[str, str], bytes]:
    """``(topic, type_url, timestamp_ns, labels, payload)`` of a message body.

    :raises ValueError: if the body is not an event of this encoding
    """
    if len(body) < _HEADER.size:
        raise ValueError("message too short for an event")
    version, size = _HEADER.unpack_from(body)
    if version != _VERSION:
        raise ValueError(f"unknown event encoding {version}")
    end = _HEADER.size + size
    try:
        topic, type_url, timestamp_ns, labels = json.loads(body[_HEADER.size:end])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad event metadata: {exc}") from None
    if not (isinstance(topic, str) and isinstance(type_url, str)
            and isinstance(timestamp_ns, int) and isinstance(labels, dict | None)):
        raise ValueError("bad event metadata")
    return topic, type_url, timestamp_ns, labels or {}, body[end:]
