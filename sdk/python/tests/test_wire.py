import hashlib

import numpy as np
import pytest

from pollen import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from pollen._chunks import CHUNK_SIZE, INLINE_MAX, ChunkError, decode_chunk, encode_chunk, piece_size_of
from pollen._proto.pollen.v1 import records_pb2 as pb
from pollen._wire import PayloadTooLarge, WireReader, chunk_ids_of, config_from_wire, error_reply_to_wire, message_from_wire, message_to_wire
from pollen.message import Error, MessageError
from pollen.records import DTYPES, RecordError


def instruction(arrays, **records):
    return Message(RecordDict({"arrays": ArrayRecord(arrays), **records}), dst_node_id="3", message_type="train", group_id="g")


def round_trip(message, **options):
    wire, chunks = message_to_wire(message, **options)
    wire = pb.Message.FromString(wire.SerializeToString())
    return message_from_wire(wire, chunks.get), wire, chunks


def test_every_dtype_and_odd_shapes_round_trip_bit_exactly():
    rng = np.random.default_rng(1)
    arrays = {}
    for dtype in DTYPES:
        raw = rng.integers(0, 256, size=2 * 3 * 5 * np.dtype(dtype).itemsize, dtype=np.uint8)
        arrays[dtype] = (raw % 2).astype(bool).reshape(2, 3, 5) if dtype == "bool" else raw.view(dtype).reshape(2, 3, 5)
    arrays.update({"scalar": np.array(7, "i2"), "empty": np.zeros((4, 0), "f2"), "long": np.arange(70_000, dtype="u1")})
    back, wire, chunks = round_trip(instruction(arrays))
    assert len(chunks) == 1  # only "long" is over the inline limit
    for name, a in arrays.items():
        got = back.content["arrays"][name].numpy()
        assert got.dtype == a.dtype and got.shape == a.shape, name
        assert got.tobytes() == a.tobytes(), name  # bits, NaN payloads included
        assert got.flags.writeable, name


def test_metadata_metrics_and_configs_round_trip():
    msg = instruction(
        {"w": np.zeros(2)},
        metrics=MetricRecord({"num-examples": 600, "loss": 0.25, "per-class": [1, 2], "mixed": [0.5, 1.0]}),
        config=ConfigRecord({"lr": 0.01, "epochs": 3, "opt": "sgd", "on": True, "b": b"\x00\xff", "none": [], "ss": ["a"], "fs": [True, False], "bs": [b"x"]}),
    )
    back, _, _ = round_trip(msg)
    assert back.metadata == msg.metadata.__class__(**{**msg.metadata.__dict__, "created_at": round(msg.metadata.created_at * 1000) / 1000})
    m = back.content["metrics"]
    assert dict(m) == {"num-examples": 600, "loss": 0.25, "per-class": [1, 2], "mixed": [0.5, 1.0]}
    assert type(m["num-examples"]) is int  # integral numbers come back as ints (range() works)
    c = back.content["config"]
    assert dict(c) == {"lr": 0.01, "epochs": 3, "opt": "sgd", "on": True, "b": b"\x00\xff", "none": [], "ss": ["a"], "fs": [True, False], "bs": [b"x"]}


def test_error_messages_round_trip():
    msg = instruction({})
    err = Message(error=Error("CLIENT_APP_RAISED_EXCEPTION", "ValueError: no"), reply_to=msg)
    back, wire, chunks = round_trip(err)
    assert back.error == err.error and back.content is None and chunks == {}


def test_large_arrays_are_cut_into_4_mib_pieces_named_by_sha256():
    big = np.arange(2 * CHUNK_SIZE // 4 + 10, dtype="f4")
    same = big.copy()
    back, wire, chunks = round_trip(instruction({"big": big, "same": same, "small": np.zeros(INLINE_MAX, "u1")}))
    a = wire.content.records[0].arrays.arrays
    assert len(a[0].chunk_ids) == 3 and a[0].chunk_ids == a[1].chunk_ids and a[0].inline == b""
    assert len(chunks) == 3  # identical pieces appear once
    data = big.tobytes()
    assert a[0].chunk_ids[0] == hashlib.sha256(data[:CHUNK_SIZE]).hexdigest()
    assert len(chunks[a[0].chunk_ids[2]]) == 40
    assert isinstance(chunks[a[0].chunk_ids[0]], memoryview)  # a view of the array, not a copy
    assert np.shares_memory(np.frombuffer(chunks[a[0].chunk_ids[0]], np.uint8), big)
    assert a[2].inline and not a[2].chunk_ids  # exactly INLINE_MAX bytes travel inline
    assert chunk_ids_of(wire) == list(a[0].chunk_ids)
    assert np.array_equal(back.content["arrays"]["big"].numpy(), big)


def test_smaller_pieces_and_chunks_in_any_order():
    big = np.arange(1000, dtype="i8")
    wire, chunks = message_to_wire(instruction({"big": big}), inline_max=0, chunk_size=1024)
    reader = WireReader(wire)
    ids = reader.chunk_ids
    assert len(ids) == 8
    for cid in reversed(ids):
        reader.put(cid, bytes(chunks[cid]))
    reader.put(ids[0], b"ignored: already placed")
    assert np.array_equal(reader.message().content["arrays"]["big"].numpy(), big)


def test_piece_sizes_follow_the_power_of_two_convention():
    assert piece_size_of(10, 1) == 10
    assert piece_size_of(CHUNK_SIZE * 2 + 1, 3) == CHUNK_SIZE
    assert piece_size_of(100, 2) == 64
    assert piece_size_of(100, 3) is None
    assert piece_size_of(100, 7) == 16
    assert piece_size_of(100, 5) is None  # no power of two cuts 100 bytes into 5 pieces
    assert piece_size_of(3, 4) is None


def test_chunk_messages_match_protobuf():
    data = bytes(range(256)) * 300
    raw = encode_chunk("ab" * 32, memoryview(data))
    assert raw == pb.Chunk(id="ab" * 32, data=data).SerializeToString()
    cid, view = decode_chunk(pb.Chunk(id="cd" * 32, data=data).SerializeToString())
    assert cid == "cd" * 32 and bytes(view) == data and isinstance(view, memoryview)
    assert decode_chunk(b"") == ("", memoryview(b""))
    with pytest.raises(ChunkError):
        decode_chunk(b"\x12\x05abc")


def wire_with(**array):
    base = dict(name="w", dtype="float32", shape=[2], nbytes=8, inline=b"\x00" * 8)
    base.update(array)
    wire, _ = message_to_wire(instruction({}))
    wire.content.records[0].arrays.arrays.add(**base)
    return wire


@pytest.mark.parametrize(
    "array, error, text",
    [
        (dict(dtype="complex64"), RecordError, "unknown dtype"),
        (dict(nbytes=4), RecordError, "nbytes says 4"),
        (dict(inline=b"\x00" * 4), RecordError, "4 inline bytes"),
        (dict(shape=[1] * 33, nbytes=4, inline=b"\x00" * 4), RecordError, "more than 32 dimensions"),
        (dict(name=""), RecordError, "Array name"),
        (dict(inline=b"", chunk_ids=["x"]), ChunkError, "invalid chunk id"),
        (dict(inline=b"", chunk_ids=["a" * 64] * 9), RecordError, "power-of-two pieces"),
        (dict(chunk_ids=["a" * 64]), RecordError, "both inline data and chunks"),
        (dict(shape=[2**40], nbytes=2**42, inline=b""), PayloadTooLarge, "at most"),
    ],
)
def test_hostile_arrays_are_refused_before_allocation(array, error, text):
    with pytest.raises(error, match=text):
        WireReader(wire_with(**array))


def test_wrong_or_missing_chunks_are_refused():
    big = np.arange(CHUNK_SIZE // 4 + 1, dtype="f4")
    wire, chunks = message_to_wire(instruction({"big": big}))
    ids = chunk_ids_of(wire)
    reader = WireReader(wire)
    with pytest.raises(ChunkError, match="does not match its id") as e:
        reader.put(ids[0], b"\x00" * CHUNK_SIZE)
    assert e.value.code == "CHUNK_MISMATCH"
    reader.put(ids[0], chunks[ids[0]])
    with pytest.raises(ChunkError, match="is not available") as e:
        reader.message()
    assert e.value.code == "CHUNK_MISSING"
    # A chunk whose bytes match its id but not the array's layout.
    short = b"\x01" * 3
    bad = wire_with(dtype="uint8", shape=[CHUNK_SIZE + 7], nbytes=CHUNK_SIZE + 7, inline=b"", chunk_ids=[ids[0], hashlib.sha256(short).hexdigest()])
    r = WireReader(bad)
    r.put(ids[0], chunks[ids[0]])
    with pytest.raises(RecordError, match="chunk .* is 3 bytes where the array layout needs 7"):
        r.put(hashlib.sha256(short).hexdigest(), short)


def test_bad_messages_and_duplicate_names():
    wire, _ = message_to_wire(instruction({}))
    wire.ClearField("metadata")
    with pytest.raises(MessageError, match="no metadata"):
        WireReader(wire)
    wire, _ = message_to_wire(instruction({}))
    wire.content.records.add(name="arrays")
    with pytest.raises(RecordError, match="Duplicate record name"):
        WireReader(wire)
    wire, _ = message_to_wire(instruction({}))
    wire.ClearField("content")
    with pytest.raises(MessageError, match="neither content nor an error"):
        WireReader(wire)


def test_error_replies_and_configs_from_the_wire():
    wire, _ = message_to_wire(instruction({}))
    reply = error_reply_to_wire(wire, "APP_LOAD_FAILED", "no module", "3", 5)
    assert reply.metadata.reply_to_message_id == wire.metadata.message_id
    assert (reply.metadata.src_node_id, reply.metadata.dst_node_id, reply.metadata.created_at) == ("3", "0", 5)
    assert reply.error.code == "APP_LOAD_FAILED"
    config = {"a": pb.ConfigValue(number=3), "b": pb.ConfigValue(number=0.5), "c": pb.ConfigValue(text="x"), "d": pb.ConfigValue(flag=False)}
    assert config_from_wire(config) == {"a": 3, "b": 0.5, "c": "x", "d": False}
    with pytest.raises(RecordError, match="has no value"):
        config_from_wire({"e": pb.ConfigValue()})
