"""Records and messages <-> protobuf, the same wire form as src/transport/wire.ts.

Sending: array bytes are never copied here; inline bytes and chunks are views of the arrays.
Receiving: everything the peer controls (dtype, shape, sizes, chunk ids) is checked before any
allocation; each array is allocated once, writable, and chunks are copied into it as they arrive,
each hashed against its id.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np

from ._chunks import CHUNK_SIZE, INLINE_MAX, ChunkError, chunk_id, is_chunk_id, piece_size_of, pieces
from ._proto.pollen.v1 import records_pb2 as pb
from .errors import CodedError
from .message import Error, Message, MessageError, Metadata
from .records import (
    MAX_NDIM,
    Array,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    RecordDict,
    RecordError,
    element_bytes,
    numpy_dtype,
    validate_name,
)

GiB = 1024**3
MAX_ARRAY_BYTES = 4 * GiB
MAX_TOTAL_BYTES = 8 * GiB


class PayloadTooLarge(CodedError, ValueError):
    CODE = "PAYLOAD_TOO_LARGE"


# ---------------------------------------------------------------------------------------------
# Numbers: the wire has only doubles. An integral value comes back as an int, so that settings
# such as `local-epochs` work in range() as they would in Flower.


def _number(v: float) -> Union[int, float]:
    return int(v) if v.is_integer() and abs(v) <= 2**53 else v


def _numbers(values: Iterable[float]) -> List[Union[int, float]]:
    values = list(values)
    return [int(v) for v in values] if all(v.is_integer() and abs(v) <= 2**53 for v in values) else values


def config_value_to_wire(value: Union[int, float, str, bool]) -> pb.ConfigValue:
    if isinstance(value, bool):
        return pb.ConfigValue(flag=value)
    if isinstance(value, (int, float)):
        return pb.ConfigValue(number=float(value))
    if isinstance(value, str):
        return pb.ConfigValue(text=value)
    raise RecordError("a run or node config value must be a number, a string or a boolean")


def config_from_wire(values: Mapping[str, pb.ConfigValue]) -> Dict[str, Union[int, float, str, bool]]:
    """A run or node config map from the wire, keys in order."""
    out: Dict[str, Union[int, float, str, bool]] = {}
    for key in sorted(values):
        v = values[key]
        case = v.WhichOneof("value")
        if case == "number":
            out[key] = _number(v.number)
        elif case == "text":
            out[key] = v.text
        elif case == "flag":
            out[key] = v.flag
        else:
            raise RecordError(f"Config {key!r} has no value")
    return out


# ---------------------------------------------------------------------------------------------
# Sending


def _metadata_to_wire(m: Metadata) -> pb.Metadata:
    return pb.Metadata(
        run_id=m.run_id,
        message_id=m.message_id,
        src_node_id=m.src_node_id,
        dst_node_id=m.dst_node_id,
        reply_to_message_id=m.reply_to_message_id,
        group_id=m.group_id,
        ttl_seconds=m.ttl,
        message_type=m.message_type,
        created_at=int(round(m.created_at * 1000)),
    )


def _config_entry(key: str, value: object) -> pb.ConfigEntry:
    e = pb.ConfigEntry(key=key)
    if isinstance(value, bool):
        e.flag = value
    elif isinstance(value, (int, float)):
        e.number = float(value)
    elif isinstance(value, str):
        e.text = value
    elif isinstance(value, bytes):
        e.binary = value
    elif isinstance(value, list):
        first = value[0] if value else 0.0
        # An empty list has no kind: it travels as an empty number list and comes back as [].
        if isinstance(first, bool):
            e.flags.values.extend(value)
        elif isinstance(first, (int, float)):
            e.numbers.SetInParent()
            e.numbers.values.extend(float(v) for v in value)
        elif isinstance(first, str):
            e.texts.values.extend(value)
        else:
            e.binaries.values.extend(value)
    return e


def message_pieces(message: Message, inline_max: int = INLINE_MAX, chunk_size: int = CHUNK_SIZE) -> List[memoryview]:
    """The pieces message_to_wire cuts the message's large arrays into, in order (views)."""
    out: List[memoryview] = []
    if message.content is None:
        return out
    for record in message.content.values():
        if isinstance(record, ArrayRecord):
            for array in record.values():
                data = array.data
                if len(data) > inline_max:
                    out.extend(pieces(data, chunk_size))
    return out


def message_to_wire(
    message: Message,
    inline_max: int = INLINE_MAX,
    chunk_size: int = CHUNK_SIZE,
    piece_ids: Optional[List[str]] = None,
) -> Tuple[pb.Message, Dict[str, memoryview]]:
    """The protobuf form of ``message`` and its chunks (id -> view of the array bytes).

    ``piece_ids``: the ids of ``message_pieces(message)`` already computed (not hashed again).
    """
    wire = pb.Message(metadata=_metadata_to_wire(message.metadata))
    chunks: Dict[str, memoryview] = {}
    if message.error is not None:
        wire.error.code = message.error.code
        wire.error.reason = message.error.reason
        return wire, chunks
    given = iter(piece_ids) if piece_ids is not None else None
    content = wire.content
    content.SetInParent()
    for name, record in (message.content or RecordDict()).items():
        r = content.records.add(name=name)
        if isinstance(record, ArrayRecord):
            r.arrays.SetInParent()
            for array_name, array in record.items():
                data = array.data
                a = r.arrays.arrays.add(name=array_name, dtype=array.dtype, shape=array.shape, nbytes=len(data))
                if len(data) <= inline_max:
                    a.inline = data.tobytes()
                    continue
                ids = []
                for piece in pieces(data, chunk_size):
                    cid = next(given) if given is not None else chunk_id(piece)
                    chunks.setdefault(cid, piece)
                    ids.append(cid)
                a.chunk_ids.extend(ids)
        elif isinstance(record, MetricRecord):
            r.metrics.SetInParent()
            for key, value in record.items():
                e = r.metrics.entries.add(key=key)
                if isinstance(value, list):
                    e.list.SetInParent()
                    e.list.values.extend(float(v) for v in value)
                else:
                    e.scalar = float(value)
        else:
            r.configs.SetInParent()
            for key, value in record.items():
                r.configs.entries.append(_config_entry(key, value))
    return wire, chunks


def error_reply_to_wire(instruction: pb.Message, code: str, reason: str, src_node_id: str, now_ms: int) -> pb.Message:
    """Node ``src_node_id``'s error reply to a wire instruction, without decoding its content."""
    import uuid

    md = instruction.metadata
    return pb.Message(
        metadata=pb.Metadata(
            run_id=md.run_id,
            message_id=uuid.uuid4().hex,
            src_node_id=src_node_id,
            dst_node_id=md.src_node_id,
            reply_to_message_id=md.message_id,
            group_id=md.group_id,
            ttl_seconds=md.ttl_seconds,
            message_type=md.message_type,
            created_at=now_ms,
        ),
        error=pb.MessageError(code=code, reason=reason),
    )


def chunk_ids_of(wire: pb.Message) -> List[str]:
    """The chunk ids a wire message refers to: unique, in order of first use."""
    ids: Dict[str, None] = {}
    if wire.WhichOneof("body") == "content":
        for r in wire.content.records:
            if r.WhichOneof("record") == "arrays":
                for a in r.arrays.arrays:
                    for cid in a.chunk_ids:
                        ids[cid] = None
    return list(ids)


# ---------------------------------------------------------------------------------------------
# Receiving


class _Plan:
    """One array as planned from its header, and the buffer it is filled into."""

    __slots__ = ("name", "dtype", "shape", "nbytes", "chunk_ids", "piece_size", "buffer", "filled")

    def __init__(self, a: pb.Array, max_array_bytes: int) -> None:
        where = f"Array {a.name[:256]!r}"
        validate_name("Array", a.name)
        try:
            np_dtype = numpy_dtype(a.dtype)
        except RecordError:
            raise RecordError(f"{where}: unknown dtype {a.dtype[:32]!r}") from None
        if len(a.shape) > MAX_NDIM:
            raise RecordError(f"{where}: more than {MAX_NDIM} dimensions")
        count = math.prod(a.shape)
        if count * np_dtype.itemsize != a.nbytes:
            raise RecordError(f"{where}: shape and dtype give {count * np_dtype.itemsize} bytes, nbytes says {a.nbytes}")
        if a.nbytes > max_array_bytes:
            raise PayloadTooLarge(f"{where} is {a.nbytes} bytes; at most {max_array_bytes} are accepted")
        self.name, self.dtype, self.shape, self.nbytes = a.name, a.dtype, tuple(a.shape), a.nbytes
        self.chunk_ids = list(a.chunk_ids)
        self.piece_size = 0
        self.buffer: Optional[np.ndarray] = None
        self.filled = 0
        if not self.chunk_ids:
            if len(a.inline) != a.nbytes:
                raise RecordError(f"{where}: {len(a.inline)} inline bytes, nbytes says {a.nbytes}")
            return
        if len(a.inline) != 0:
            raise RecordError(f"{where} has both inline data and chunks")
        for cid in self.chunk_ids:
            if not is_chunk_id(cid):
                raise ChunkError("CHUNK_ID_INVALID", f"{where}: invalid chunk id {cid[:80]!r}")
        size = piece_size_of(a.nbytes, len(self.chunk_ids))
        if size is None:
            raise RecordError(f"{where}: {len(self.chunk_ids)} chunks cannot hold {a.nbytes} bytes in power-of-two pieces")
        self.piece_size = size

    def piece(self, index: int) -> Tuple[int, int]:
        """Offset and length of piece ``index``."""
        last = len(self.chunk_ids) - 1
        offset = index * self.piece_size
        return offset, (self.piece_size if index < last else self.nbytes - offset)

    def array(self) -> Array:
        return Array(self.dtype, self.shape, self.buffer)  # type: ignore[arg-type]


def _metadata_from_wire(m: pb.Metadata) -> Metadata:
    if m.created_at < 0:
        raise MessageError("Message created_at must be a time in milliseconds")
    return Metadata(
        run_id=m.run_id,
        message_id=m.message_id,
        src_node_id=m.src_node_id,
        dst_node_id=m.dst_node_id,
        reply_to_message_id=m.reply_to_message_id,
        group_id=m.group_id,
        ttl=m.ttl_seconds,
        message_type=m.message_type,
        created_at=m.created_at / 1000.0,
    )


def _metric_record(r: pb.Record) -> MetricRecord:
    record = MetricRecord()
    for e in r.metrics.entries:
        if e.key in record:
            raise RecordError(f"Duplicate metric {e.key!r} in {r.name!r}")
        case = e.WhichOneof("value")
        if case == "scalar":
            record[e.key] = _number(e.scalar)
        elif case == "list":
            record[e.key] = _numbers(e.list.values)
        else:
            raise RecordError(f"Metric {e.key!r} in {r.name!r} has no value")
    return record


def _config_record(r: pb.Record) -> ConfigRecord:
    record = ConfigRecord()
    for e in r.configs.entries:
        if e.key in record:
            raise RecordError(f"Duplicate config {e.key!r} in {r.name!r}")
        case = e.WhichOneof("value")
        if case is None:
            raise RecordError(f"Config {e.key!r} in {r.name!r} has no value")
        v = getattr(e, case)
        if case == "number":
            v = _number(v)
        elif case == "numbers":
            v = _numbers(v.values)
        elif case in ("texts", "flags", "binaries"):
            v = list(v.values)
        record[e.key] = v
    return record


class WireReader:
    """Turns a wire message into a Message: plan (checks, no allocation), then fill, then build.

    Chunks may be given in any order (``put``); each is hashed against its id once and copied to
    every place that uses it, so memory is the model plus the chunks in flight.
    """

    def __init__(self, wire: pb.Message, max_array_bytes: int = MAX_ARRAY_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES) -> None:
        if not wire.HasField("metadata"):
            raise MessageError("Message has no metadata")
        self.metadata = _metadata_from_wire(wire.metadata)
        self.error: Optional[Error] = None
        self._records: List[Tuple[str, object]] = []
        self._places: Dict[str, List[Tuple[_Plan, int]]] = {}
        body = wire.WhichOneof("body")
        if body == "error":
            self.error = Error(wire.error.code, wire.error.reason)
            return
        if body != "content":
            raise MessageError("Message holds neither content nor an error")
        names = set()
        total = 0
        plans: List[_Plan] = []
        for r in wire.content.records:
            validate_name("Record", r.name)
            if r.name in names:
                raise RecordError(f"Duplicate record name {r.name!r}")
            names.add(r.name)
            case = r.WhichOneof("record")
            if case == "arrays":
                arrays: List[_Plan] = []
                array_names = set()
                for a in r.arrays.arrays:
                    plan = _Plan(a, max_array_bytes)
                    if plan.name in array_names:
                        raise RecordError(f"Duplicate array name {plan.name!r} in {r.name!r}")
                    array_names.add(plan.name)
                    total += plan.nbytes
                    if total > max_total_bytes:
                        raise PayloadTooLarge(f"Message arrays exceed {max_total_bytes} bytes in total")
                    arrays.append(plan)
                    if not plan.chunk_ids:  # inline: a small writable copy
                        plan.buffer = np.frombuffer(a.inline, dtype=np.uint8).copy()
                plans.extend(arrays)
                self._records.append((r.name, arrays))
            elif case == "metrics":
                self._records.append((r.name, _metric_record(r)))
            elif case == "configs":
                self._records.append((r.name, _config_record(r)))
            else:
                raise RecordError(f"Record {r.name!r} has no content")
        for plan in plans:
            if plan.chunk_ids:
                try:
                    plan.buffer = np.empty(plan.nbytes, dtype=np.uint8)
                except MemoryError:
                    raise PayloadTooLarge(f"Cannot allocate an array of {plan.nbytes} bytes") from None
                for i, cid in enumerate(plan.chunk_ids):
                    self._places.setdefault(cid, []).append((plan, i))

    @property
    def chunk_ids(self) -> List[str]:
        """Chunks still to be put."""
        return list(self._places)

    def put(self, cid: str, data: Union[memoryview, bytes], verified: bool = False) -> None:
        """Copy a chunk into every place that uses it; unknown and repeated chunks are ignored."""
        places = self._places.pop(cid, None)
        if places is None:
            return
        if not verified and chunk_id(data) != cid:
            self._places[cid] = places
            raise ChunkError("CHUNK_MISMATCH", f"Chunk data does not match its id {cid}")
        src = np.frombuffer(data, dtype=np.uint8)
        for plan, index in places:
            offset, length = plan.piece(index)
            if len(src) != length:
                raise RecordError(
                    f"Array {plan.name!r}: chunk {cid} is {len(src)} bytes where the array layout needs {length}"
                )
            plan.buffer[offset : offset + length] = src  # type: ignore[index]

    def message(self) -> Message:
        if self._places:
            left = list(self._places)
            more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
            raise ChunkError("CHUNK_MISSING", f"Chunk {left[0]} is not available{more}")
        if self.error is not None:
            return Message(error=self.error, metadata=self.metadata)
        content = RecordDict()
        for name, value in self._records:
            if isinstance(value, list):
                content[name] = ArrayRecord({p.name: p.array() for p in value})
            else:
                content[name] = value  # type: ignore[assignment]
        return Message(content, metadata=self.metadata)


def message_from_wire(
    wire: pb.Message,
    get_chunk: Callable[[str], Optional[Union[bytes, memoryview]]] = lambda _id: None,
    **limits: int,
) -> Message:
    """The SDK message for ``wire``, its chunks fetched one at a time with ``get_chunk``."""
    reader = WireReader(wire, **limits)
    for cid in reader.chunk_ids:
        data = get_chunk(cid)
        if data is None:
            raise ChunkError("CHUNK_MISSING", f"Chunk {cid} is not available")
        reader.put(cid, data)
    return reader.message()
