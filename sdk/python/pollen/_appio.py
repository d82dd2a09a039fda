"""The loopback AppIo channel an app process uses (ClientAppIo; ServerAppIo shares the chunk calls).

Cleartext gRPC to POLLEN_APPIO_URL with the per-run token on every call. Methods are called by
name (``channel.unary_unary(METHOD, ...)``): no grpc plugin needed,
and test/python-proto.test.ts checks each name against the protos.
"""

from __future__ import annotations

import itertools
import re
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple
from urllib.parse import urlparse

import grpc

from ._chunks import MAX_IDS_PER_REQUEST, decode_chunk, encode_chunk, iter_chunk_ids
from ._proto.pollen.v1 import appio_pb2, records_pb2
from ._wire import WireReader, message_pieces, message_to_wire
from .errors import PollenError
from .message import Message

# Chunk messages are 4 MiB of data plus their id; leave room for large metric or config records.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A long poll holds the connection idle for its wait; keep it alive without pinging a
    # loopback peer into GOAWAY.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.enable_retries", 0),
    # A wide receive window for model traffic, as the TypeScript side sets (16 MiB per stream):
    # grpc's default starts at 64 KiB and the loopback peer then waits on window updates.
    ("grpc.http2.lookahead_bytes", 16 * 1024 * 1024),
]


class AppIoError(PollenError, RuntimeError):
    """A failed AppIo call: ``code`` is the peer's (e.g. APP_TOKEN_INVALID, from the
    pollen-error-code trailer) when it sent one, else UNAVAILABLE or INTERNAL by the gRPC status."""

    def __init__(self, method: str, status: grpc.StatusCode, details: str, code: str = "") -> None:
        fallback = "UNAVAILABLE" if status == grpc.StatusCode.UNAVAILABLE else "INTERNAL"
        super().__init__(code or fallback, f"{method} failed: {status.name}: {details}")
        self.method = method
        self.status = status
        self.details = details


_CODE_PREFIX = re.compile(r"^([A-Z][A-Z0-9_]+): ")


def _peer_code(e: grpc.RpcError) -> str:
    """The Pollen code the peer sent: its pollen-error-code trailer, else the ``CODE: `` prefix
    of its message (src/transport/errors.ts sends both)."""
    trailers = e.trailing_metadata() if callable(getattr(e, "trailing_metadata", None)) else None
    sent = next((str(v) for k, v in trailers or () if k == "pollen-error-code"), "")
    prefix = _CODE_PREFIX.match(e.details() or "") if callable(getattr(e, "details", None)) else None
    return sent or (prefix.group(1) if prefix else "")


def _target(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
        raise ValueError(f"POLLEN_APPIO_URL must be http://HOST:PORT, not {url!r}")
    return f"{parsed.hostname}:{parsed.port}"


def _identity(raw: bytes) -> bytes:
    return raw


Metadata = Tuple[Tuple[str, str], ...]


def invoke(method: str, stub: Callable, request: object, metadata: Metadata, timeout: Optional[float] = None) -> object:
    """Call ``stub``; a failure becomes an AppIoError that names the method."""
    try:
        return stub(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as e:
        raise AppIoError(method, e.code(), e.details() or "", _peer_code(e)) from None


# Full method names, written out so test/python-proto.test.ts finds each one in the protos.
CHUNK_METHODS = {
    "ClientAppIo": (
        "/pollen.v1.ClientAppIo/MissingChunks",
        "/pollen.v1.ClientAppIo/PushChunks",
        "/pollen.v1.ClientAppIo/PullChunks",
    ),
    "ServerAppIo": (
        "/pollen.v1.ServerAppIo/MissingChunks",
        "/pollen.v1.ServerAppIo/PushChunks",
        "/pollen.v1.ServerAppIo/PullChunks",
    ),
}


class Chunks:
    """MissingChunks, PushChunks and PullChunks of one AppIo service."""

    def __init__(self, channel: grpc.Channel, service: str, metadata: Metadata) -> None:
        self._metadata = metadata
        missing, push, pull = CHUNK_METHODS[service]
        self._missing = channel.unary_unary(
            missing,
            request_serializer=records_pb2.MissingChunksRequest.SerializeToString,
            response_deserializer=records_pb2.MissingChunksResponse.FromString,
        )
        # Chunks are encoded by hand (_chunks.py): no copy through protobuf classes.
        self._push = channel.stream_unary(
            push,
            request_serializer=_identity,
            response_deserializer=records_pb2.PushChunksResponse.FromString,
        )
        self._pull = channel.unary_stream(
            pull,
            request_serializer=records_pb2.PullChunksRequest.SerializeToString,
            response_deserializer=_identity,
        )

    def missing(self, ids: List[str]) -> List[str]:
        out: List[str] = []
        for at in range(0, len(ids), MAX_IDS_PER_REQUEST):
            req = records_pb2.MissingChunksRequest(chunk_ids=ids[at : at + MAX_IDS_PER_REQUEST])
            out.extend(invoke("MissingChunks", self._missing, req, self._metadata).chunk_ids)
        return out

    def push(self, chunks: Iterable[Tuple[str, memoryview]]) -> None:
        """One PushChunks stream; each chunk is encoded as gRPC asks for it (one in memory at a time)."""
        stream = (encode_chunk(cid, data) for cid, data in chunks)
        invoke("PushChunks", self._push, stream, self._metadata)

    def pull(self, ids: List[str]) -> Iterator[Tuple[str, memoryview]]:
        for at in range(0, len(ids), MAX_IDS_PER_REQUEST):
            req = records_pb2.PullChunksRequest(chunk_ids=ids[at : at + MAX_IDS_PER_REQUEST])
            try:
                for raw in self._pull(req, metadata=self._metadata):
                    yield decode_chunk(raw)
            except grpc.RpcError as e:
                raise AppIoError("PullChunks", e.code(), e.details() or "", _peer_code(e)) from None


class ClientAppIo:
    """The ClientAppIo calls of one app process (token and run id on every call)."""

    PULL_WAIT_MS = 20_000

    def __init__(self, url: str, token: str, run_id: str, chunks_verified: bool = False) -> None:
        # chunks_verified: the SuperNode says (POLLEN_CHUNKS_VERIFIED=1) that every chunk it serves
        # here was hashed against its id on the way into its store (or cut by itself). Only this
        # node, authenticated by the per-run token on a loopback channel, serves them, so hashing
        # them again would trust nothing new: one SHA-256 pass over the model saved per round.
        # Sizes and layout are still checked (WireReader.put).
        self._chunks_verified = chunks_verified
        self.channel = grpc.insecure_channel(_target(url), options=_OPTIONS)
        self._metadata = (("authorization", f"Bearer {token}"), ("pollen-run-id", run_id))
        self._pull_task = self.channel.unary_unary(
            "/pollen.v1.ClientAppIo/PullTask",
            request_serializer=appio_pb2.PullTaskRequest.SerializeToString,
            response_deserializer=appio_pb2.PullTaskResponse.FromString,
        )
        self._push_result = self.channel.unary_unary(
            "/pollen.v1.ClientAppIo/PushResult",
            request_serializer=appio_pb2.PushResultRequest.SerializeToString,
            response_deserializer=appio_pb2.PushResultResponse.FromString,
        )
        self.chunks = Chunks(self.channel, "ClientAppIo", self._metadata)

    def pull_task(self, wait_ms: int = PULL_WAIT_MS) -> appio_pb2.PullTaskResponse:
        # The server answers within wait_ms (at most 30 s); the deadline only guards a stuck peer.
        req = appio_pb2.PullTaskRequest(wait_ms=wait_ms)
        return invoke("PullTask", self._pull_task, req, self._metadata, timeout=wait_ms / 1000 + 30)  # type: ignore[return-value]

    def push_result(self, message: records_pb2.Message) -> None:
        invoke("PushResult", self._push_result, appio_pb2.PushResultRequest(message=message), self._metadata)

    def receive(self, wire: records_pb2.Message) -> Message:
        """The instruction as a Message, its chunks pulled from the SuperNode into the arrays."""
        reader = WireReader(wire)
        ids = reader.chunk_ids
        if ids:
            for cid, data in self.chunks.pull(ids):
                reader.put(cid, data, verified=self._chunks_verified)
        return reader.message()

    def send(self, message: Message, known: Iterable[str] = ()) -> records_pb2.Message:
        """Push the reply's chunks the SuperNode lacks; the wire form to push as the result.

        Chunks in ``known`` (those of the instruction) are asked about with MissingChunks; any
        other chunk (a trained model) is new to the SuperNode and pushed without asking, each as
        soon as it is hashed: the node receives and checks the first chunks while the app hashes
        the rest.
        """
        views = message_pieces(message)
        known_set = set(known)
        ids: List[str] = []
        ask: Dict[str, memoryview] = {}
        pushed = set()

        def new_chunks() -> Iterator[Tuple[str, memoryview]]:
            for view, cid in zip(views, iter_chunk_ids(views)):
                ids.append(cid)
                if cid in known_set:
                    ask.setdefault(cid, view)
                elif cid not in pushed:
                    pushed.add(cid)
                    yield cid, view

        stream = new_chunks()
        first = next(stream, None)  # no PushChunks call when nothing is new
        if first is not None:
            self.chunks.push(itertools.chain((first,), stream))
        if ask:
            missing = self.chunks.missing(list(ask))
            if missing:
                self.chunks.push((cid, ask[cid]) for cid in missing)
        wire, _ = message_to_wire(message, piece_ids=ids)
        return wire

    def close(self) -> None:
        self.channel.close()

