"""Compact records for the key index: ids packed into ints, rows packed into `bytes`.

Why: at a million keys the per-object overhead of Python strings, tuples and dict entries, not the data,
dominates a replica's memory. An id in one of Tollway's formats (a 12-char key id, `app_` or `sub_` plus
12 chars of tollway/schema's alphabet) becomes one int (32-36 bytes instead of a 61-65 byte string);
any other id (tests build them by hand) stays the string itself, so every id round-trips exactly.

- A key is one `bytes`: flags, the 32-byte hash, optional expiry and revocation (µs), the application id.
- An application and its live subscriptions are one `bytes`: flags (known, deleted), then per
  subscription its state, API and plan as small indexes into per-snapshot `Interned` tables, and its id.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from keymgr.keys import KEY_ID_LENGTH

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# tollway/schema.new_id's alphabet (no 0/1/l) and the lowercase base32 of keymgr/keys.py.
_SCHEMA_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"
_BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"

Code = int | str


class IdCodec:
    """Packs ids of one format (`prefix` + `length` chars of `alphabet`) into an int; others stay str."""

    __slots__ = ("_base", "_base_squared", "_length", "_pairs", "_prefix", "_prefix_bytes", "_to_digits")

    def __init__(self, prefix: str, alphabet: str, length: int) -> None:
        if length != 12 or len(alphabet) > len(_DIGITS):
            raise ValueError("unsupported id format")
        self._prefix = prefix
        self._prefix_bytes = prefix.encode()
        self._length = len(prefix) + length
        # Each alphabet character to its digit in base len(alphabet); anything else to a non-digit, so
        # that int() refuses an id outside the format.
        to_digits = bytearray(b"!" * 256)
        for value, character in enumerate(alphabet):
            to_digits[ord(character)] = ord(_DIGITS[value])
        self._to_digits = bytes(to_digits)
        self._base = len(alphabet)
        # Decoding emits two characters per division.
        self._pairs = [first + second for first in alphabet for second in alphabet]
        self._base_squared = self._base**2

    def encode(self, value: str) -> Code:
        raw = value.encode()
        if len(raw) != self._length or not raw.startswith(self._prefix_bytes):
            return value
        try:
            return int(raw[len(self._prefix_bytes) :].translate(self._to_digits), self._base)
        except ValueError:
            return value

    def decode(self, code: Code) -> str:
        if isinstance(code, str):
            return code
        base_squared, pairs = self._base_squared, self._pairs
        code, sixth = divmod(code, base_squared)
        code, fifth = divmod(code, base_squared)
        code, fourth = divmod(code, base_squared)
        code, third = divmod(code, base_squared)
        first, second = divmod(code, base_squared)
        return "".join(
            (
                self._prefix,
                pairs[first],
                pairs[second],
                pairs[third],
                pairs[fourth],
                pairs[fifth],
                pairs[sixth],
            )
        )


KEY_IDS = IdCodec("", _BASE32_ALPHABET, KEY_ID_LENGTH)
APPLICATION_IDS = IdCodec("app_", _SCHEMA_ALPHABET, 12)
SUBSCRIPTION_IDS = IdCodec("sub_", _SCHEMA_ALPHABET, 12)

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_U16 = struct.Struct("<H")


def _pack_code(code: Code) -> tuple[bool, bytes]:
    """(packed, bytes): an int code as 8 bytes, a string as its UTF-8 (the caller knows its length)."""
    return (True, _U64.pack(code)) if isinstance(code, int) else (False, code.encode())


# --- keys --------------------------------------------------------------------------------------------

_EXPIRES, _REVOKED, _APP_PACKED, _HASH_SIZED = 1, 2, 4, 8
_HASH_BYTES = 32

# (application id, hash, expires µs, revoked µs)
KeyRow = tuple[str, bytes, int | None, int | None]


_USUAL_KEY = struct.Struct(f"<B{_HASH_BYTES}sQ")  # no times, a SHA-256 hash, a packed application id


def pack_key(application_id: str, key_hash: bytes, expires: int | None, revoked: int | None) -> bytes:
    code = APPLICATION_IDS.encode(application_id)
    if expires is None and revoked is None and isinstance(code, int) and len(key_hash) == _HASH_BYTES:
        return _USUAL_KEY.pack(_APP_PACKED, key_hash, code)
    packed, application = _pack_code(code)
    flags = (_EXPIRES if expires is not None else 0) | (_REVOKED if revoked is not None else 0)
    flags |= _APP_PACKED if packed else 0
    parts = [b"", key_hash]
    if len(key_hash) != _HASH_BYTES:  # not SHA-256: only hand-built rows
        flags |= _HASH_SIZED
        parts[1] = bytes([len(key_hash)]) + key_hash
    parts[0] = bytes([flags])
    if expires is not None:
        parts.append(_I64.pack(expires))
    if revoked is not None:
        parts.append(_I64.pack(revoked))
    parts.append(application)
    return b"".join(parts)


def unpack_key(record: bytes) -> KeyRow:
    flags = record[0]
    if flags & _HASH_SIZED:
        end = 2 + record[1]
        key_hash = record[2:end]
    else:
        end = 1 + _HASH_BYTES
        key_hash = record[1:end]
    expires = revoked = None
    if flags & _EXPIRES:
        (expires,) = _I64.unpack_from(record, end)
        end += 8
    if flags & _REVOKED:
        (revoked,) = _I64.unpack_from(record, end)
        end += 8
    if flags & _APP_PACKED:
        application_id = APPLICATION_IDS.decode(_U64.unpack_from(record, end)[0])
    else:
        application_id = record[end:].decode()
    return application_id, key_hash, expires, revoked


# --- applications with their live subscriptions ----------------------------------------------------

KNOWN, DELETED = 1, 2
# Per subscription a flags byte: the state's index in its low bits, then these.
_STATE_MASK, _SUB_PACKED, _WIDE = 0x3F, 0x40, 0x80
_NARROW = struct.Struct("<HH")  # API and plan indexes
_WIDE_INDEXES = struct.Struct("<II")

# (API index, subscription id code, plan index, state index)
SubscriptionFields = tuple[int, Code, int, int]


class Interned:
    """A few distinct strings (API ids, plan ids, states) numbered in order of first use."""

    __slots__ = ("indexes", "values")

    def __init__(self) -> None:
        self.values: list[str] = []
        self.indexes: dict[str, int] = {}

    def index(self, value: str) -> int:
        found = self.indexes.get(value)
        if found is None:
            found = self.indexes[value] = len(self.values)
            self.values.append(value)
        return found


_NARROW_PACKED = struct.Struct("<BHHQ")  # the usual subscription: flags, API, plan, packed id
_USUAL_APPLICATION = struct.Struct("<BBHHQ")  # application flags, then one usual subscription


def pack_application(flags: int, subscriptions: list[SubscriptionFields]) -> bytes:
    if len(subscriptions) == 1:
        api, sub_code, plan, state = subscriptions[0]
        if isinstance(sub_code, int) and api <= 0xFFFF and plan <= 0xFFFF and state <= _STATE_MASK:
            return _USUAL_APPLICATION.pack(flags, state | _SUB_PACKED, api, plan, sub_code)
    parts = [bytes([flags])]
    for api, sub_code, plan, state in subscriptions:
        if state > _STATE_MASK:
            raise ValueError("too many subscription states")
        packed, sub_id = _pack_code(sub_code)
        wide = api > 0xFFFF or plan > 0xFFFF
        parts.append(bytes([state | (_SUB_PACKED if packed else 0) | (_WIDE if wide else 0)]))
        parts.append((_WIDE_INDEXES if wide else _NARROW).pack(api, plan))
        parts.append(sub_id if packed else _U16.pack(len(sub_id)) + sub_id)
    return b"".join(parts)


def application_subscriptions(record: bytes) -> Iterator[SubscriptionFields]:
    position, end = 1, len(record)
    while position < end:
        flags = record[position]
        indexes = _WIDE_INDEXES if flags & _WIDE else _NARROW
        api, plan = indexes.unpack_from(record, position + 1)
        position += 1 + indexes.size
        sub_code: Code
        if flags & _SUB_PACKED:
            (sub_code,) = _U64.unpack_from(record, position)
            position += 8
        else:
            (length,) = _U16.unpack_from(record, position)
            sub_code = record[position + 2 : position + 2 + length].decode()
            position += 2 + length
        yield api, sub_code, plan, flags & _STATE_MASK


def find_subscription(record: bytes, api: int) -> SubscriptionFields | None:
    """The subscription to API index `api` in an application's record (a Check's lookup)."""
    if len(record) == 1 + _NARROW_PACKED.size and record[1] & (_SUB_PACKED | _WIDE) == _SUB_PACKED:
        flags, sub_api, plan, sub_code = _NARROW_PACKED.unpack_from(record, 1)  # one subscription
        return (sub_api, sub_code, plan, flags & _STATE_MASK) if sub_api == api else None
    for fields in application_subscriptions(record):
        if fields[0] == api:
            return fields
    return None
