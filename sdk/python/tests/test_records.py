import numpy as np
import pytest

from pollen import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from pollen.records import DTYPES, RecordError

SHAPES = [(), (0,), (3, 0, 2), (1,), (2, 3, 4), (5, 1, 1, 2)]


def sample(dtype, shape):
    count = int(np.prod(shape))
    if dtype == "bool":
        return (np.arange(count) % 3 == 0).reshape(shape)
    if dtype.startswith("float"):
        return np.linspace(-1000.5, 1000.25, count).astype(dtype).reshape(shape)
    info = np.iinfo(dtype)  # the extremes of each integer type, and values between
    return np.resize(np.array([info.min, info.max, 0, 1, info.max // 3], dtype=dtype), count).reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_dtype_and_shape_is_held_without_a_copy(dtype, shape):
    a = sample(dtype, shape)
    array = Array(a)
    assert array.dtype == dtype
    assert array.shape == shape
    assert array.numpy() is a
    assert array.nbytes == a.nbytes
    again = Array(dtype, shape, bytes(array.data))
    assert again == array
    assert again.numpy().dtype == a.dtype and again.numpy().shape == shape
    assert np.array_equal(again.numpy(), a)


def test_bool_is_one_byte_zero_or_one_and_float16_keeps_its_bits():
    assert bytes(Array(np.array([True, False, True])).data) == b"\x01\x00\x01"
    bits = np.array([0x7C00, 0xFC00, 0x7E01, 0x0001, 0x8000], dtype="<u2")  # inf, -inf, NaN payload, subnormal, -0
    half = bits.view(np.float16)
    back = Array("float16", half.shape, bytes(Array(half).data)).numpy()
    assert np.array_equal(back.view("<u2"), bits)


def test_big_endian_and_strided_arrays_become_little_endian_c_order():
    be = np.arange(6, dtype=">i4").reshape(2, 3)
    a = Array(be)
    assert a.dtype == "int32"
    assert bytes(a.data) == np.arange(6, dtype="<i4").tobytes()
    t = np.arange(6, dtype="f8").reshape(2, 3).T
    assert np.array_equal(Array(t).numpy(), t)
    assert Array(t).numpy().flags.c_contiguous


@pytest.mark.parametrize(
    "value, message",
    [
        (np.zeros(2, dtype=np.complex64), "cannot be sent"),
        (np.zeros(2, dtype=object), "cannot be sent"),
        ({"a": 1}, "numpy array or a torch tensor"),
    ],
)
def test_unsupported_arrays_are_refused(value, message):
    with pytest.raises(RecordError, match=message):
        Array(value)


def test_array_from_bytes_checks_size_and_dtype():
    with pytest.raises(RecordError, match="needs 8 bytes, data has 4"):
        Array("float32", [2], b"\x00" * 4)
    with pytest.raises(RecordError, match="dtype must be one of"):
        Array("float128", [1], b"\x00" * 16)
    with pytest.raises(RecordError, match="non-negative integers"):
        Array("uint8", [-1], b"")
    with pytest.raises(RecordError, match="at most 32 dimensions"):
        Array("uint8", [1] * 33, b"\x00")


def test_array_record_from_a_list_and_a_dict_keeps_order_and_names():
    arrays = [np.zeros(2, "f4"), np.ones((2, 2), "i8")]
    record = ArrayRecord(arrays)
    assert list(record) == ["0", "1"]
    out = record.to_numpy_ndarrays()
    assert all(x is y for x, y in zip(out, arrays))
    named = ArrayRecord({"b": arrays[0], "a": arrays[1]})
    assert list(named) == ["b", "a"]
    assert ArrayRecord.from_numpy_ndarrays(arrays)["1"].shape == (2, 2)
    with pytest.raises(RecordError, match="Array name"):
        ArrayRecord({"": arrays[0]})
    with pytest.raises(RecordError, match="control character"):
        ArrayRecord({"a\nb": arrays[0]})
    with pytest.raises(RecordError, match="state_dict"):
        ArrayRecord(42)


def test_state_dict_round_trip_shares_memory():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
    state = model.state_dict()
    record = ArrayRecord(state)
    assert list(record) == list(state)
    assert record["3.weight"].dtype == "float32"
    assert record["1.num_batches_tracked"].dtype == "int64" and record["1.num_batches_tracked"].shape == ()
    for name, tensor in state.items():
        assert np.shares_memory(record[name].numpy(), tensor.numpy()), name
    back = record.to_torch_state_dict()
    for name, tensor in back.items():
        assert tensor.data_ptr() == state[name].data_ptr(), name
    model.load_state_dict(back)


def test_tensors_of_other_layouts_and_dtypes():
    torch = pytest.importorskip("torch")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()  # not contiguous: one copy
    assert np.array_equal(ArrayRecord({"t": t})["t"].numpy(), t.numpy())
    for dtype, name in [(torch.float16, "float16"), (torch.bool, "bool"), (torch.uint8, "uint8"), (torch.int8, "int8")]:
        assert Array.from_torch_tensor(torch.zeros(3, dtype=dtype)).dtype == name
    with pytest.raises(RecordError, match="bfloat16"):
        Array(torch.zeros(2, dtype=torch.bfloat16))
    grad = torch.ones(2, requires_grad=True)
    assert Array(grad).numpy().tolist() == [1.0, 1.0]


def test_to_torch_state_dict_copies_read_only_bytes():
    torch = pytest.importorskip("torch")
    a = Array("float32", [2], np.array([1, 2], "f4").tobytes())  # immutable bytes
    t = ArrayRecord({"w": a}).to_torch_state_dict()["w"]
    t.add_(1)
    assert t.tolist() == [2.0, 3.0]


def test_metric_and_config_records_validate_values():
    m = MetricRecord({"num-examples": 10, "loss": 0.5, "per-class": [0.1, 1], "np": np.float32(2.5)})
    assert m["np"] == 2.5 and type(m["np"]) is float
    for bad in (float("nan"), float("inf"), "x", True, [1, "a"]):
        with pytest.raises(RecordError):
            MetricRecord({"m": bad})
    c = ConfigRecord({"lr": 0.1, "epochs": 2, "name": "adam", "flag": False, "blob": bytearray(b"ab"), "xs": [1, 2.5], "ws": ["a"]})
    assert c["blob"] == b"ab" and type(c["blob"]) is bytes
    with pytest.raises(RecordError, match="one kind"):
        ConfigRecord({"mixed": [1, "a"]})
    with pytest.raises(RecordError, match="one kind"):
        ConfigRecord({"mixed": [True, 1]})
    with pytest.raises(RecordError):
        ConfigRecord({"obj": object()})


def test_record_dict_is_a_dict_of_records_by_kind():
    arrays, metrics, config = ArrayRecord([np.zeros(1)]), MetricRecord({"a": 1}), ConfigRecord({"b": "x"})
    rd = RecordDict({"arrays": arrays, "metrics": metrics, "config": config})
    assert rd["arrays"] is arrays
    assert list(rd.array_records) == ["arrays"]
    assert list(rd.metric_records) == ["metrics"]
    assert list(rd.config_records) == ["config"]
    del rd["config"]
    assert len(rd) == 2
    with pytest.raises(RecordError, match="must be an ArrayRecord"):
        rd["x"] = {"a": 1}


def test_message_replies_swap_ends_and_keep_the_deadline():
    content = RecordDict({"m": MetricRecord({"a": 1})})
    msg = Message(content, dst_node_id="7", message_type="train", ttl=60, group_id="round-1")
    assert msg.metadata.src_node_id == "0" and msg.metadata.ttl == 60
    reply = Message(content=RecordDict(), reply_to=msg)
    m = reply.metadata
    assert (m.src_node_id, m.dst_node_id, m.reply_to_message_id, m.group_id, m.message_type) == ("7", "0", msg.metadata.message_id, "round-1", "train")
    assert 0 < m.ttl <= 60
    assert not msg.is_expired() and msg.is_expired(now=msg.metadata.created_at + 60)
    with pytest.raises(ValueError, match="either content or an error"):
        Message(dst_node_id="1", message_type="train")
    with pytest.raises(ValueError, match="message_type must be one of"):
        Message(content, dst_node_id="1", message_type="fit")
    with pytest.raises(ValueError, match="dst_node_id and message_type"):
        Message(content)


def test_context_defaults():
    c = Context(run_id="r", node_id="n")
    assert c.gpus == [] and c.resources == {"cpu": None, "gpus": []} and len(c.state) == 0
