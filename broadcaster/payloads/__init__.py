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
"""

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
