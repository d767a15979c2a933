"""Payload fields for ``event.<field>`` filter selectors.

A hub reads the fields of event payloads through the resolver in
:attr:`broadcaster.HubConfig.payload_fields`. :data:`CONTAINERD_PAYLOADS` knows
containerd's event types (the ``broadcaster serve`` default) and JSON; a
:class:`PayloadTypes` with more protobuf types is made with
:meth:`PayloadTypes.register`::

    from broadcaster import Broadcaster, HubConfig
    from broadcaster.payloads import CONTAINERD_PAYLOADS

    types = CONTAINERD_PAYLOADS.register(MyEvent, "example.com/my.v1.MyEvent")
    hub = Broadcaster(HubConfig(payload_fields=types))
    # filters=['event.name==web'] now reads MyEvent.name

:func:`message_fields` is the lookup of one protobuf message. The core's side of the
contract is exported here too, this package being the public home of payload fields:
:data:`PayloadFields` (the resolver's type) and :data:`FieldLookup` (what it returns),
:func:`json_fields` (the resolver a hub uses when none is configured: JSON payloads) and
:func:`is_json_type` (which type URLs it reads as JSON).
"""

import contextlib as _contextlib
import types as _types

from .._core._payload import FieldLookup, PayloadFields, is_json_type, json_fields
from ._protobuf import CONTAINERD_PAYLOADS, PayloadTypes, message_fields

__all__ = [
    "CONTAINERD_PAYLOADS",
    "FieldLookup",
    "PayloadFields",
    "PayloadTypes",
    "is_json_type",
    "json_fields",
    "message_fields",
]


def _fixup_module_metadata() -> None:
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type | _types.FunctionType) and obj.__module__.startswith(
                ("broadcaster._", "broadcaster.payloads._")):
            with _contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = "broadcaster.payloads"


_fixup_module_metadata()
del _fixup_module_metadata
