"""Bytes to lines: an object's byte chunks as a buffered stream, its physical lines counted into
the cursor, and the errors that end one object (not the run)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from chalicelib.providers.s3_files.plan import Cursor

KIB = 1024
MIB = 1024 * KIB
MAX_LINE_BYTES = MIB  # a longer line is reported invalid and skipped, never buffered
MAX_RECORD_BYTES = 4 * MIB  # a CSV record over several lines (e.g. an unbalanced quote)
BOM = b"\xef\xbb\xbf"


class ObjectProblem(Exception):
    """The object cannot be read (further); it is skipped with this reason."""

    def __init__(self, reason: str, *, forget: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forget = forget  # drop it from the next state: the next run must read it


class LineTooLong(Exception):
    pass


class RecordTooLong(Exception):
    pass


class ChunkReader(io.RawIOBase):
    """A raw stream over an iterator of byte chunks (for io.BufferedReader)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf = memoryview(nxt)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()  # a generator: runs its `finally`, which closes the HTTP body
        super().close()


class Lines:
    """Physical lines of one object, counted into the cursor as they are consumed."""

    def __init__(self, stream: io.BufferedIOBase, cur: Cursor) -> None:
        self._stream = stream
        self._cur = cur

    def next_line(self) -> bytes | None:
        at_start = self._cur.offset == 0
        line = self._stream.readline(MAX_LINE_BYTES)
        if not line:
            return None
        if len(line) == MAX_LINE_BYTES and not line.endswith(b"\n"):
            n = len(line)
            while True:  # skip the rest of the line without keeping it
                more = self._stream.readline(MAX_LINE_BYTES)
                n += len(more)
                if not more or more.endswith(b"\n"):
                    break
            self._cur.offset += n
            self._cur.line += 1
            raise LineTooLong
        self._cur.offset += len(line)
        self._cur.line += 1
        if at_start and line.startswith(BOM):
            line = line[len(BOM) :]
        return line


class CsvFeeder:
    """Lines for csv.reader, which pulls exactly the lines one record needs. An iterator
    class, not a generator: it raises (too long) and is used again for the next record."""

    def __init__(self, lines: Lines) -> None:
        self._lines = lines
        self._record_bytes = 0
        self.bad_text = False

    def begin_record(self) -> None:
        self._record_bytes = 0
        self.bad_text = False

    def __iter__(self) -> CsvFeeder:
        return self

    def __next__(self) -> str:
        line = self._lines.next_line()
        if line is None:
            raise StopIteration
        self._record_bytes += len(line)
        if self._record_bytes > MAX_RECORD_BYTES:
            raise RecordTooLong
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            self.bad_text = True
            return line.decode("utf-8", errors="replace")
