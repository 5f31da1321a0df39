"""JSON-lines access log, written in batches.

A worker serves thousands of requests a second; one `write()` syscall per request would cost more
than proxying it. Records are queued and written once per event-loop turn, in writes of whole
lines no larger than PIPE_BUF, so that lines from several workers sharing one stderr pipe or one
O_APPEND file never interleave mid-line.
"""

from __future__ import annotations

import datetime
import json
import os
import select

PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


class AccessLog:
    def __init__(self, loop, fd: int, close_fd: bool = False):
        self.loop = loop
        self.fd = fd
        self.close_fd = close_fd
        self.lines: list[bytes] = []
        self.scheduled = False

    @classmethod
    def open(cls, loop, path: str) -> "AccessLog | None":
        """`path` is 'stderr', 'stdout', 'off' or a file (appended to)."""
        if path == "off":
            return None
        if path == "stderr":
            return cls(loop, 2)
        if path == "stdout":
            return cls(loop, 1)
        return cls(loop, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), True)

    def __call__(self, record: dict) -> None:
        t = record["time"]
        record["time"] = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        self.lines.append(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        lines, self.lines = self.lines, []
        batch: list[bytes] = []
        size = 0
        for line in lines:
            if batch and size + len(line) > PIPE_BUF:
                self._write(b"".join(batch))
                batch, size = [], 0
            batch.append(line)
            size += len(line)
        if batch:
            self._write(b"".join(batch))

    def _write(self, data: bytes) -> None:
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except BlockingIOError:
            pass  # a stuck log reader must never stall the proxy: drop the rest of this batch
        except OSError:
            pass

    def close(self) -> None:
        self.flush()
        if self.close_fd:
            os.close(self.fd)
