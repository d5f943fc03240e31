"""Protobuf wire format by hand, for the few answers the hot paths send as bytes.

grpc sends bytes a handler returns as they are, and protobuf reads concatenated encodings of a message
as one merged message (repeated fields appended). Writing the few per-request fields of an answer here
costs a fraction of building them through the generated classes (keymgr/wire.py and throttle/wire.py
quote their figures); field numbers are always read from the generated descriptors, never written out,
and each user's tests compare its bytes with the generated classes' own."""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValue
from google.protobuf.descriptor import Descriptor

VARINT = 0
LENGTH_DELIMITED = 2
_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def varint(value: int) -> bytes:
    """A non-negative integer as a base-128 varint."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(message: Descriptor, field: str, wire_type: int = LENGTH_DELIMITED) -> bytes:
    """The key of `field` of `message`, as the generated descriptor numbers it."""
    return varint(message.fields_by_name[field].number << 3 | wire_type)


def length_delimited(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field (a string, bytes or an embedded message)."""
    return key + varint(len(payload)) + payload


_HEADER_KEY = tag(HeaderValue.DESCRIPTOR, "key")
_HEADER_VALUE = tag(HeaderValue.DESCRIPTOR, "value")
# A header name's key field, encoded once: the names are the contract's few response headers.
_header_keys: dict[str, bytes] = {}
_HEADER_KEYS_LIMIT = 1_000


def header_value(name: str, value: str) -> bytes:
    """The fields of an Envoy HeaderValue (the message's content, without its own length): empty
    strings left out, as proto3 writes them."""
    key = _header_keys.get(name)
    if key is None:
        if len(_header_keys) >= _HEADER_KEYS_LIMIT:
            _header_keys.clear()
        key = _header_keys[name] = length_delimited(_HEADER_KEY, name.encode()) if name else b""
    if not value:
        return key
    encoded = value.encode()
    return key + _HEADER_VALUE + varint(len(encoded)) + encoded
