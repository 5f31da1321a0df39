"""The supervisor <-> worker control channel: length-prefixed msgpack messages on a socketpair.

One channel per worker, made before fork. The supervisor sends `{"op": "apply", "version": v,
"snapshot": bytes, "digest": sha256}`: a snapshot it validated and the sha256 of the content it
validated, which the worker checks instead of validating the snapshot again (a mismatch is
refused). The worker answers `{"op": "ack", "version": v}` or `{"op": "nack", "version": v,
"error": why}`. A restarted worker is forked with the current snapshot and its digest, and gets
later ones the same way.
"""

from __future__ import annotations

import asyncio
import struct

import msgpack

HEADER = struct.Struct("!I")
MAX_MESSAGE = 256 * 1024 * 1024


async def read_message(reader: asyncio.StreamReader) -> dict | None:
    """The next message, or None when the other side closed the channel."""
    try:
        (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        if size > MAX_MESSAGE:
            raise ValueError(f"control message of {size} bytes")
        return msgpack.unpackb(await reader.readexactly(size), raw=False)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def write_message(writer: asyncio.StreamWriter, message: dict) -> None:
    data = msgpack.packb(message, use_bin_type=True)
    writer.write(HEADER.pack(len(data)) + data)
