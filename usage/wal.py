"""A local write-ahead log: numbered segment files of CRC-checked frames.

A frame is `length (4 bytes) | crc32 (4 bytes) | payload`. A crash can leave a torn frame only at
the end of the segment being written; replay stops at the first frame that does not check out, so a
torn tail is dropped and never half-read. Segments are deleted only once their records are
committed to the database. One process owns a WAL directory (an exclusive flock), so two replicas
can never replay the same entries."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from tollway.private_files import private_dir

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
MAX_FRAME = 64 << 20


class WalLockedError(RuntimeError):
    pass


class WriteAheadLog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        private_dir(directory)  # the WAL holds request metadata: the Tollway user's only
        self._lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise WalLockedError(f"usage WAL {directory} is in use by another process") from None
        existing = self.segment_numbers()
        self._seq = (existing[-1] if existing else 0) + 1
        self._file: int | None = None
        self.torn_frames = 0

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}.wal"

    def segment_numbers(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.wal") if p.stem.isdigit())

    def size_bytes(self) -> int:
        total = 0
        for seq in self.segment_numbers():
            with contextlib.suppress(FileNotFoundError):  # deleted by a flush meanwhile
                total += self._path(seq).stat().st_size
        return total

    def replay(self) -> Iterator[tuple[int, bytes]]:
        """(segment, payload) of every intact frame, oldest first."""
        for seq in self.segment_numbers():
            if self._file is not None and seq >= self._seq:
                break
            data = self._path(seq).read_bytes()
            offset = 0
            while offset < len(data):
                if offset + _HEADER.size > len(data):
                    self._torn(seq, offset)
                    break
                length, crc = _HEADER.unpack_from(data, offset)
                payload = data[offset + _HEADER.size : offset + _HEADER.size + length]
                if length > MAX_FRAME or len(payload) != length or zlib.crc32(payload) != crc:
                    self._torn(seq, offset)
                    break
                yield seq, payload
                offset += _HEADER.size + length

    def _torn(self, seq: int, offset: int) -> None:
        self.torn_frames += 1
        log.warning(
            "usage WAL segment %d: torn or corrupt frame at byte %d; rest of segment skipped", seq, offset
        )

    def open_segment(self) -> int:
        """Starts a new segment (after replay, and at every rotation); returns its number."""
        if self._file is not None:
            os.close(self._file)
        self._seq += 1 if self._file is not None else 0
        self._file = os.open(self._path(self._seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.directory)
        return self._seq

    @property
    def current(self) -> int:
        return self._seq

    def append(self, payloads: list[bytes]) -> int:
        """Writes frames and fsyncs: once this returns, they survive a kill -9 or power loss."""
        assert self._file is not None, "open_segment() first"
        data = b"".join(_HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads)
        view = memoryview(data)
        while view:
            written = os.write(self._file, view)
            view = view[written:]
        os.fsync(self._file)
        return len(data)

    def remove_through(self, seq: int) -> None:
        """Deletes segments up to and including `seq` (their records are committed)."""
        for number in self.segment_numbers():
            if number <= seq and number != self._seq:
                self._path(number).unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        os.close(self._lock_fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
