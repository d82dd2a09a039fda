"""Content-addressed chunks, the same rules as the TypeScript side (src/transport/chunks.ts).

An array of more than INLINE_MAX bytes travels as pieces of one power-of-two size (CHUNK_SIZE,
the last piece shorter), each named by the lowercase hex SHA-256 of its bytes. From nbytes and
the number of pieces a receiver knows every piece's offset and length.

Chunk messages are encoded and decoded here by hand rather than through protobuf classes: the
generated classes copy a chunk's bytes in and out, and these are the bulk of a model's traffic.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Optional, Sequence, Tuple

from .errors import PollenError

CHUNK_SIZE = 4 * 1024 * 1024
INLINE_MAX = 64 * 1024
# Ids per MissingChunks / PullChunks request (the servers' limit, chunk-rpc.ts).
MAX_IDS_PER_REQUEST = 1000

_ID_RE = re.compile(r"^[0-9a-f]{64}$")


class ChunkError(PollenError, ValueError):
    """A chunk refused: code CHUNK_ID_INVALID, CHUNK_MISMATCH or CHUNK_MISSING."""


def chunk_id(data: memoryview | bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_hashers: Optional[ThreadPoolExecutor] = None


def iter_chunk_ids(views: Sequence[memoryview]) -> Iterator[str]:
    """The ids of many pieces in order, hashed on several cores (hashlib releases the GIL on
    large data): every piece is queued at once and each id is given as soon as it is known, so
    a caller sends the first pieces while the rest are hashed."""
    global _hashers
    if len(views) < 2:
        return (chunk_id(v) for v in views)
    if _hashers is None:
        _hashers = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="pollen-sha256")
    return _hashers.map(chunk_id, views)


def is_chunk_id(s: object) -> bool:
    return isinstance(s, str) and _ID_RE.match(s) is not None


def pieces(data: memoryview, size: int = CHUNK_SIZE) -> List[memoryview]:
    """Views (no copy) of ``data`` cut into pieces of ``size`` bytes, the last shorter."""
    return [data[at : at + size] for at in range(0, len(data), size)]


def piece_size_of(nbytes: int, count: int) -> Optional[int]:
    """The power-of-two piece size that cuts nbytes into count pieces, or None if none does."""
    if count == 1:
        return nbytes
    if count < 1 or count > nbytes:
        return None
    size = 1
    while size * count < nbytes:
        size *= 2
    return size if (count - 1) * size < nbytes else None


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_chunk(cid: str, data: memoryview | bytes) -> bytes:
    """A serialised ``pollen.v1.Chunk`` (one copy of the data, which gRPC needs as bytes)."""
    key = cid.encode("ascii")
    return b"".join((b"\x0a", _varint(len(key)), key, b"\x12", _varint(len(data)), data))


def _read_varint(buf: memoryview, at: int) -> Tuple[int, int]:
    n = shift = 0
    while True:
        if at >= len(buf) or shift > 63:
            raise ChunkError("CHUNK_MISMATCH", "A chunk message is truncated")
        b = buf[at]
        at += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, at
        shift += 7


def decode_chunk(raw: bytes) -> Tuple[str, memoryview]:
    """``(id, data)`` of a serialised ``pollen.v1.Chunk``; data is a view of ``raw`` (no copy)."""
    buf = memoryview(raw)
    cid, data = "", buf[0:0]
    at = 0
    while at < len(buf):
        key, at = _read_varint(buf, at)
        field, wire = key >> 3, key & 7
        if wire == 2:
            length, at = _read_varint(buf, at)
            if at + length > len(buf):
                raise ChunkError("CHUNK_MISMATCH", "A chunk message is truncated")
            if field == 1:
                cid = bytes(buf[at : at + length]).decode("utf-8", "replace")
            elif field == 2:
                data = buf[at : at + length]
            at += length
        elif wire == 0:
            _, at = _read_varint(buf, at)
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ChunkError("CHUNK_MISMATCH", "A chunk message is malformed")
    return cid, data
