"""Pure logic: what the WAL holds (Envoy's messages as received) and how they become usage records.

The hot path does not classify. It checks a message's structure with a skeleton parse (C speed: the
entries stay opaque bytes), counts its entries and writes the message's own bytes to the WAL, framed
with the node id (sent only on a stream's first message) and the receive time. Classification happens
in the background flush, from the frame alone, so a replay after a kill -9 derives exactly the records
the first attempt derived (the receive time bounds an entry's start time, not the clock at replay).

Frame payload: version (1) | received_at (f64, epoch s) | len(node) (u16) | entries (u32) | node | message.
A payload starting with `[` is a JSON list of records (written by Tollway before this format); replay
still reads it."""

from __future__ import annotations

import hashlib
import json
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, get_args

from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from usage.classify import Record, Skip, classify, entry_id

VERSION = 1
_HEAD = struct.Struct(">BdHI")
MAX_NODE_ID = 256


def _skeleton_class() -> type[Message]:
    """StreamAccessLogsMessage with the identifier and every entry left as bytes: parsing it checks the
    framing of two levels (a message cut mid-way fails) without decoding a single entry."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="tollway_usage_skeleton.proto", package="tollway.usage.skeleton", syntax="proto3"
    )
    field_type = descriptor_pb2.FieldDescriptorProto
    logs = proto.message_type.add(name="Logs")
    logs.field.add(name="log_entry", number=1, type=field_type.TYPE_BYTES, label=field_type.LABEL_REPEATED)
    message = proto.message_type.add(name="Message")
    message.field.add(
        name="identifier", number=1, type=field_type.TYPE_BYTES, label=field_type.LABEL_OPTIONAL
    )
    for name, number in (("http_logs", 2), ("tcp_logs", 3)):
        message.field.add(
            name=name,
            number=number,
            type=field_type.TYPE_MESSAGE,
            type_name=".tollway.usage.skeleton.Logs",
            label=field_type.LABEL_OPTIONAL,
        )
    pool = descriptor_pool.DescriptorPool()  # private: nothing else can clash with these names
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tollway.usage.skeleton.Message"))


# Built at run time from a descriptor: its fields are unknown to the type checker.
Skeleton: Any = _skeleton_class()


class MalformedMessage(ValueError):
    pass


@dataclass(frozen=True)
class Received:
    """What the hot path learns from one message without decoding its entries."""

    node_id: str  # from this message's identifier; "" when it has none
    http_entries: int
    tcp_entries: int


def inspect(raw: bytes) -> Received:
    """Skeleton-parses one serialized StreamAccessLogsMessage; MalformedMessage when it is not one."""
    try:
        skeleton = Skeleton.FromString(raw)
        node_id = ""
        if skeleton.identifier:
            node_id = als_pb2.StreamAccessLogsMessage.Identifier.FromString(skeleton.identifier).node.id
    except DecodeError as exc:
        raise MalformedMessage(str(exc)) from None
    return Received(node_id, len(skeleton.http_logs.log_entry), len(skeleton.tcp_logs.log_entry))


def valid_node_id(node_id: str) -> bool:
    return bool(node_id) and len(node_id) <= MAX_NODE_ID and node_id.isprintable()


def encode(node_id: str, received_at: float, entries: int, raw: bytes) -> bytes:
    node = node_id.encode()
    return _HEAD.pack(VERSION, received_at, len(node), entries) + node + raw


@dataclass(frozen=True)
class Frame:
    node_id: str
    received_at: float
    entries: int
    message: bytes


def decode(payload: bytes) -> Frame:
    version, received_at, node_len, entries = _HEAD.unpack_from(payload)
    if version != VERSION:
        raise ValueError(f"unknown usage WAL frame version {version}")
    start = _HEAD.size
    node_id = payload[start : start + node_len].decode()
    return Frame(node_id, received_at, entries, payload[start + node_len :])


def entries_in(payload: bytes) -> int:
    """The entry count a frame's header states (legacy JSON frames: their record count)."""
    try:
        if payload[:1] == b"[":
            return len(json.loads(payload))
        return int(_HEAD.unpack_from(payload)[3])
    except (ValueError, TypeError, struct.error):
        return 0  # unreadable: records_of() skips it with a reason


@dataclass(frozen=True, slots=True)
class SkipTally:
    """Entries that were not counted, by reason, for the completeness report: one entry's, keyed by its
    request id, or an unreadable frame's, keyed by the frame's digest. Applied with a dedupe row of its
    own, (node, "skip:" + key), in the transaction of the frame's records, so a frame replayed after a
    crash, or a copy of an entry sent to a second usage process, is accounted once, like a record."""

    node_id: str
    key: str
    minute: int  # the UTC minute (epoch s) the frame was received in
    reasons: dict[str, int]


@dataclass
class Records:
    """The records of some frames, and the entries that were not counted, by reason (in all, and per
    frame whose node is known)."""

    records: list[Record] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    tallies: list[SkipTally] = field(default_factory=list)


def records_of(payload: bytes, into: Records) -> None:
    """Adds one frame's records (and skips) to `into`. Never raises on a frame's content: what cannot be
    read is skipped with a reason, so one bad message cannot stop the flush of the others."""
    if payload[:1] == b"[":
        try:
            legacy = [tuple(item) for item in json.loads(payload)]
            if not all(len(item) == len(get_args(Record)) for item in legacy):
                raise ValueError("not a list of usage records")
            into.records.extend(legacy)
        except (ValueError, TypeError):
            into.skipped["unreadable_frame"] += 1
        return
    try:
        frame = decode(payload)
    except (ValueError, struct.error, UnicodeDecodeError):
        into.skipped["unreadable_frame"] += 1
        return
    node_id, now = frame.node_id, frame.received_at
    skipped: Counter[str] = Counter()
    try:
        message = als_pb2.StreamAccessLogsMessage.FromString(frame.message)
        entries = list(message.http_logs.log_entry)
        if message.HasField("tcp_logs"):
            skipped["tcp_entry"] += len(message.tcp_logs.log_entry)
    except DecodeError:
        # One garbled entry must not cost the others their count: decode them one by one.
        entries = []
        try:
            raw_entries = Skeleton.FromString(frame.message).http_logs.log_entry
        except DecodeError:
            raw_entries = []
            skipped["malformed_message"] += frame.entries
        for raw_entry in raw_entries:
            try:
                entries.append(accesslog_pb2.HTTPAccessLogEntry.FromString(raw_entry))
            except DecodeError:
                skipped["malformed_entry"] += 1
    append = into.records.append
    minute = int(now) - int(now) % 60
    for entry in entries:
        try:
            append(classify(entry, node_id, now))
        except Skip as skip:
            # Keyed by the entry, as a counted one is: Envoy sends each entry to more than one usage
            # process (TOLLWAY_USAGE_COPIES), batched differently, and it must be accounted once.
            into.skipped[skip.reason] += 1
            if node_id:
                tally = SkipTally(node_id, "skip:" + entry_id(entry), minute, {skip.reason: 1})
                into.tallies.append(tally)
    if skipped:
        # What cannot be told apart entry by entry (an unreadable message): once per frame.
        into.skipped.update(skipped)
        digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
        into.tallies.append(SkipTally(node_id, "skip:" + digest, minute, dict(skipped)))
