"""The Grid of a ServerApp process (as src/apps/remote-grid.ts): ServerAppIo calls to its
SuperLink. Arrays travel as chunks pushed before the instructions that name them; a reply's
chunks are read from the scope of the node that sent it and verified here, so a node whose bytes
do not match their ids spoils only its own reply. It counts what each round moves for the run."""

from __future__ import annotations

import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import grpc

from ._appio import AppIoError
from ._proto.pollen.v1 import records_pb2
from ._serverappio import ServerAppIo
from ._wire import WireReader, message_to_wire
from .errors import PollenError
from .grid import Grid, check_instruction
from .message import MESSAGE_TYPES, SERVER_NODE_ID, Error, Message, Metadata

POLL_WAIT_MS = 10_000
# Chunk ids remembered as sent or received (a hint only: forgetting costs a push).
MAX_KNOWN_IDS = 100_000


def _array_bytes(wire: records_pb2.Message) -> int:
    if wire.WhichOneof("body") != "content":
        return 0
    return sum(a.nbytes for r in wire.content.records if r.WhichOneof("record") == "arrays" for a in r.arrays.arrays)


def _piece_ids(wire: records_pb2.Message) -> List[str]:
    """Every piece's chunk id in order (repeats included): what message_to_wire may reuse."""
    return [cid for r in wire.content.records if r.WhichOneof("record") == "arrays" for a in r.arrays.arrays for cid in a.chunk_ids]


class RemoteGrid(Grid):
    def __init__(self, io: ServerAppIo, run_id: str) -> None:
        self.run_id = run_id
        self._io = io
        self.stopped = False
        self._known: Set[str] = set()
        self._bytes_sent = 0
        self._bytes_received = 0
        self._replies = 0
        self._failures = 0

    def get_node_ids(self) -> List[str]:
        return sorted(self._io.get_nodes())

    def _remember(self, ids: Iterable[str]) -> None:
        for cid in ids:
            if len(self._known) >= MAX_KNOWN_IDS:
                self._known.clear()
            self._known.add(cid)

    def send(self, messages: Iterable[Message]) -> List[str]:
        wires: List[records_pb2.Message] = []
        chunks: Dict[str, memoryview] = {}
        # One content sent to many nodes is hashed once. The content is kept with its ids, so
        # its id() cannot be reused by another content during this call.
        hashed: Dict[int, Tuple[object, List[str]]] = {}
        for message in messages:
            check_instruction(message)
            stamped = message.with_metadata(run_id=self.run_id)
            key = id(message.content)
            known = hashed.get(key)
            wire, pieces = message_to_wire(stamped, piece_ids=known[1] if known else None)
            if known is None:
                hashed[key] = (message.content, _piece_ids(wire))
            chunks.update(pieces)
            wires.append(wire)
        # A model this grid has not sent or received before (a new aggregate) is new to the
        # SuperLink: pushed without asking; others are asked about first.
        ask = [cid for cid in chunks if cid in self._known]
        present = set(ask) - set(self._io.chunks.missing(ask)) if ask else set()
        todo = [(cid, data) for cid, data in chunks.items() if cid not in present]
        if todo:
            self._io.chunks.push(todo)
        self._remember(chunks)
        ids = self._io.push_instructions(wires)
        self._bytes_sent += sum(_array_bytes(w) for w in wires)
        return ids

    def _decode(self, wire: records_pb2.Message) -> Message:
        self._bytes_received += _array_bytes(wire)
        try:
            reader = WireReader(wire)
            ids = reader.chunk_ids
            if ids:
                src = wire.metadata.src_node_id
                for cid, data in self._io.chunks_of(src).pull(ids):
                    reader.put(cid, data)
                self._remember(ids)
            reply = reader.message()
        except AppIoError as e:
            if e.status == grpc.StatusCode.UNAVAILABLE:
                raise
            reply = _unreadable(wire, "CHUNK_MISSING", e.details or str(e))
        except PollenError as e:  # RecordError, MessageError, ChunkError, PayloadTooLarge
            reply = _unreadable(wire, e.code, e.message)
        if reply.has_content():
            self._replies += 1
        else:
            self._failures += 1
        return reply

    def _pull(self, ids: List[str], wait_ms: int) -> List[Message]:
        res = self._io.pull_replies(ids, wait_ms)
        if res.run_stopped:
            self.stopped = True
        return [self._decode(w) for w in res.messages]

    def pull(self, message_ids: Iterable[str]) -> List[Message]:
        return self._pull(list(message_ids), 0)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: Optional[float] = None) -> List[Message]:
        batch = list(messages)
        ids = self.send(batch)
        ttl = max([m.metadata.ttl for m in batch], default=0.0)
        deadline = time.monotonic() + (ttl if timeout is None else timeout)
        waiting = set(ids)
        replies: List[Message] = []
        while waiting and not self.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for reply in self._pull(list(waiting), int(min(left * 1000, POLL_WAIT_MS))):
                waiting.discard(reply.metadata.reply_to_message_id)
                replies.append(reply)
        if self.stopped:
            raise PollenError("RUN_STOPPED", f"Run {self.run_id} was stopped", "The run was stopped by an admin.")
        # Messages still unanswered at the deadline failed too (a strategy's NO_REPLY).
        self._failures += len(waiting)
        return replies

    def report_round(self, server_round: int, metrics: Mapping[str, float], node_ids: Sequence[str]) -> None:
        """Store the round's metrics with the bytes moved and the replies and failures since the last report."""
        finite = {k: float(v) for k, v in metrics.items() if v == v and abs(float(v)) != float("inf")}
        self._io.report_round(
            records_pb2.RoundMetrics(
                round=server_round,
                metrics=finite,
                node_ids=list(node_ids),
                bytes_sent=self._bytes_sent,
                bytes_received=self._bytes_received,
                replies=self._replies,
                failures=self._failures,
            )
        )
        self._bytes_sent = self._bytes_received = self._replies = self._failures = 0


def _unreadable(wire: records_pb2.Message, code: str, reason: str) -> Message:
    """An error reply standing for a reply that could not be read (the node's failure, not the round's)."""
    md = wire.metadata

    def text(v: str, fallback: str = "") -> str:
        return v if isinstance(v, str) and len(v) <= 256 else fallback

    return Message(
        error=Error(code, f"The reply could not be read: {reason}"),
        metadata=Metadata(
            run_id=text(md.run_id),
            message_id=text(md.message_id) or f"unreadable-{text(md.reply_to_message_id)}",
            src_node_id=text(md.src_node_id),
            dst_node_id=SERVER_NODE_ID,
            reply_to_message_id=text(md.reply_to_message_id),
            group_id=text(md.group_id),
            ttl=0.0,
            message_type=md.message_type if md.message_type in MESSAGE_TYPES else "train",
            created_at=time.time(),
        ),
    )
