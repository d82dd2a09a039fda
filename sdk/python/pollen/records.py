"""Records: the data a Message carries (Flower's message API names).

- ``Array``: one array, its dtype, shape and little-endian element bytes.
- ``ArrayRecord``: named arrays (model parameters), from and to numpy arrays or a PyTorch
  ``state_dict`` without an extra copy where the layout allows.
- ``MetricRecord``: named numbers or lists of numbers (loss, accuracy, ``num-examples``).
- ``ConfigRecord``: named settings (numbers, strings, booleans, bytes, or lists of one kind).
- ``RecordDict``: named records of the three kinds, the content of a Message.

Setters validate what they are given and raise ``RecordError``, so a bad record is refused where
it is made, not on the far side of the network. The rules are those of the TypeScript SDK.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import CodedError

# The dtypes both SDKs carry; the wire names them so, elements little-endian, bool one byte 0/1.
DTYPES = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
)
_NP_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in DTYPES}
MAX_NAME_LENGTH = 256
MAX_NDIM = 32


class RecordError(CodedError, ValueError):
    """A record refused as invalid (code RECORD_INVALID, as in the TypeScript SDK)."""

    CODE = "RECORD_INVALID"


def validate_name(kind: str, name: object) -> str:
    """Names are 1-256 characters with no control characters."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        raise RecordError(f"{kind} name must be a string of 1-{MAX_NAME_LENGTH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise RecordError(f"{kind} name {name!r} contains a control character")
    return name


def numpy_dtype(dtype: str) -> np.dtype:
    """The little-endian numpy dtype of a wire dtype name."""
    try:
        return _NP_DTYPES[dtype]
    except KeyError:
        raise RecordError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}") from None


def dtype_name(dtype: np.dtype) -> str:
    """The wire name of a numpy dtype, or RecordError for one the wire does not carry."""
    name = np.dtype(dtype).name
    if name not in _NP_DTYPES or np.dtype(dtype).kind not in "fiub":
        raise RecordError(f"arrays of dtype {dtype} cannot be sent; use one of {', '.join(DTYPES)}")
    return name


def _shape_of(shape: Iterable[Any]) -> Tuple[int, ...]:
    dims = tuple(shape)
    if len(dims) > MAX_NDIM:
        raise RecordError(f"shape must have at most {MAX_NDIM} dimensions")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise RecordError("shape dimensions must be non-negative integers")
    return tuple(int(d) for d in dims)


class Array:
    """One array: ``dtype`` (a name of DTYPES), ``shape`` and its element bytes, row-major.

    ``Array(ndarray)`` keeps the numpy array itself (no copy when it is C-contiguous and
    little-endian); ``Array(dtype, shape, data)`` wraps bytes. ``numpy()`` is a view, not a copy.
    """

    __slots__ = ("dtype", "shape", "_array")

    def __init__(
        self,
        dtype: Union[str, np.ndarray, Any],
        shape: Optional[Sequence[int]] = None,
        data: Union[bytes, bytearray, memoryview, None] = None,
    ) -> None:
        if isinstance(dtype, str):
            if shape is None or data is None:
                raise RecordError("Array(dtype, shape, data) needs all three")
            np_dtype = numpy_dtype(dtype)
            dims = _shape_of(shape)
            count = math.prod(dims)
            flat = np.frombuffer(data, dtype=np.uint8)
            if flat.nbytes != count * np_dtype.itemsize:
                raise RecordError(
                    f"shape {list(dims)} of {dtype} needs {count * np_dtype.itemsize} bytes, "
                    f"data has {flat.nbytes}"
                )
            array = flat.view(np_dtype).reshape(dims)
        else:
            array = _as_numpy(dtype)
            if shape is not None or data is not None:
                raise RecordError("Array(ndarray) takes no shape or data")
        self._array = array
        self.dtype = dtype_name(array.dtype)
        self.shape = tuple(array.shape)

    @classmethod
    def from_numpy_ndarray(cls, ndarray: np.ndarray) -> "Array":
        return cls(ndarray)

    @classmethod
    def from_torch_tensor(cls, tensor: Any) -> "Array":
        return cls(_tensor_to_numpy(tensor))

    def numpy(self) -> np.ndarray:
        """The array as numpy (a view of the held bytes, not a copy)."""
        return self._array

    @property
    def nbytes(self) -> int:
        return int(self._array.nbytes)

    @property
    def data(self) -> memoryview:
        """The little-endian element bytes (a view)."""
        return element_bytes(self._array)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Array)
            and self.dtype == other.dtype
            and self.shape == other.shape
            and self.data == other.data
        )

    def __repr__(self) -> str:
        return f"Array(dtype={self.dtype!r}, shape={list(self.shape)})"


def element_bytes(array: np.ndarray) -> memoryview:
    """Little-endian element bytes of a C-contiguous little-endian array, as a view (no copy)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _as_numpy(value: Any) -> np.ndarray:
    """A C-contiguous little-endian ndarray for ``value``, copying only when the layout needs it."""
    if not isinstance(value, np.ndarray):
        if _is_torch_tensor(value):
            return _tensor_to_numpy(value)
        if isinstance(value, (np.generic, int, float, bool)):
            value = np.asarray(value)
        else:
            raise RecordError(f"an array must be a numpy array or a torch tensor, not {type(value).__name__}")
    name = dtype_name(value.dtype)
    le = _NP_DTYPES[name]
    if value.dtype != le:  # big-endian: the wire is little-endian
        value = value.astype(le)
    # Not np.ascontiguousarray: it turns a 0-d array into a 1-d one.
    return value if value.flags.c_contiguous else value.copy(order="C")


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A CPU view of a tensor's data (GPU tensors are moved to CPU: one copy, unavoidable)."""
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    if str(t.dtype) == "torch.bfloat16":
        raise RecordError("bfloat16 tensors cannot be sent; convert them with .float() or .half()")
    return _as_numpy(t.numpy())


class ArrayRecord(MutableMapping):
    """An ordered map from names to ``Array`` (Flower's ``ArrayRecord``): model parameters.

    Build it from a list of numpy arrays (named "0", "1", ...), a dict of arrays, or a PyTorch
    ``state_dict``; convert back with ``to_numpy_ndarrays()`` or ``to_torch_state_dict()``. Arrays
    are held by reference, never copied where the layout allows.
    """

    def __init__(self, arrays: Any = None, *, keep_input: bool = True) -> None:
        self._arrays: "OrderedDict[str, Array]" = OrderedDict()
        if arrays is None:
            return
        if isinstance(arrays, Mapping):
            for name, value in arrays.items():
                self[name] = value
        elif isinstance(arrays, (list, tuple)):
            for i, value in enumerate(arrays):
                self[str(i)] = value
        else:
            raise RecordError(
                "ArrayRecord takes a list of numpy arrays, a dict of arrays or a PyTorch state_dict"
            )
        if not keep_input and isinstance(arrays, MutableMapping):
            arrays.clear()

    @classmethod
    def from_numpy_ndarrays(cls, ndarrays: Sequence[np.ndarray]) -> "ArrayRecord":
        return cls(list(ndarrays))

    @classmethod
    def from_torch_state_dict(cls, state_dict: Mapping[str, Any]) -> "ArrayRecord":
        return cls(dict(state_dict))

    def __setitem__(self, name: str, value: Any) -> None:
        validate_name("Array", name)
        self._arrays[name] = value if isinstance(value, Array) else Array(value)

    def __getitem__(self, name: str) -> Array:
        return self._arrays[name]

    def __delitem__(self, name: str) -> None:
        del self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return f"ArrayRecord({list(self._arrays.values())!r})"

    def count_bytes(self) -> int:
        """Total bytes of array data."""
        return sum(a.nbytes for a in self._arrays.values())

    def to_numpy_ndarrays(self) -> List[np.ndarray]:
        """The arrays in order, as numpy views of the held data."""
        return [a.numpy() for a in self._arrays.values()]

    def to_torch_state_dict(self) -> "OrderedDict[str, Any]":
        """A PyTorch state_dict whose tensors share memory with the held data."""
        import torch  # only apps that use PyTorch need it

        out: "OrderedDict[str, Any]" = OrderedDict()
        for name, a in self._arrays.items():
            array = a.numpy()
            if not array.flags.writeable:  # torch wants writable memory; a small array: copy it
                array = array.copy()
            out[name] = torch.from_numpy(array)
        return out


def _finite(kind: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RecordError(f"{kind} {name!r} must be a finite number or a list of them")
    if not math.isfinite(float(value)):
        raise RecordError(f"{kind} {name!r} must be a finite number (not NaN or infinity)")
    return value.item() if isinstance(value, np.generic) else value


class _ValueRecord(MutableMapping):
    _label = ""

    def __init__(self, values: Optional[Mapping[str, Any]] = None, *, keep_input: bool = True) -> None:
        self._values: "OrderedDict[str, Any]" = OrderedDict()
        for name, value in (values or {}).items():
            self[name] = value
        if not keep_input and isinstance(values, MutableMapping):
            values.clear()

    def _check(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def __setitem__(self, name: str, value: Any) -> None:
        validate_name(self._label, name)
        self._values[name] = self._check(name, value)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __delitem__(self, name: str) -> None:
        del self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self._values)!r})"


class MetricRecord(_ValueRecord):
    """Named metrics (Flower's ``MetricRecord``): finite numbers or lists of finite numbers.
    Strategies weigh replies by their ``num-examples``."""

    _label = "Metric"

    def _check(self, name: str, value: Any) -> Any:
        if isinstance(value, (list, tuple, np.ndarray)):
            return [_finite("Metric", name, v) for v in list(value)]
        return _finite("Metric", name, value)


_SCALARS = (bool, int, float, str, bytes)


def _config_scalar(name: str, value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _finite("Config", name, value)
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise RecordError(f"Config {name!r} must be a number, string, boolean, bytes or a list of one of them")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


class ConfigRecord(_ValueRecord):
    """Named settings (Flower's ``ConfigRecord``): a number, string, boolean or bytes, or a list
    of values of one kind."""

    _label = "Config"

    def _check(self, name: str, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            return _config_scalar(name, value)
        items = [_config_scalar(name, v) for v in value]
        if len({_kind(v) for v in items}) > 1:
            raise RecordError(f"Config {name!r}: a list must hold values of one kind")
        return items


AnyRecord = Union[ArrayRecord, MetricRecord, ConfigRecord]


class RecordDict(MutableMapping):
    """Named records of the three kinds: the content of a Message (Flower's ``RecordDict``)."""

    def __init__(self, records: Optional[Mapping[str, AnyRecord]] = None) -> None:
        self._records: "OrderedDict[str, AnyRecord]" = OrderedDict()
        for name, record in (records or {}).items():
            self[name] = record

    def __setitem__(self, name: str, record: AnyRecord) -> None:
        validate_name("Record", name)
        if not isinstance(record, (ArrayRecord, MetricRecord, ConfigRecord)):
            raise RecordError(f"Record {name!r} must be an ArrayRecord, MetricRecord or ConfigRecord")
        self._records[name] = record

    def __getitem__(self, name: str) -> AnyRecord:
        return self._records[name]

    def __delitem__(self, name: str) -> None:
        del self._records[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"RecordDict({dict(self._records)!r})"

    def _of(self, kind: type) -> "OrderedDict[str, Any]":
        return OrderedDict((n, r) for n, r in self._records.items() if isinstance(r, kind))

    @property
    def array_records(self) -> "OrderedDict[str, ArrayRecord]":
        return self._of(ArrayRecord)

    @property
    def metric_records(self) -> "OrderedDict[str, MetricRecord]":
        return self._of(MetricRecord)

    @property
    def config_records(self) -> "OrderedDict[str, ConfigRecord]":
        return self._of(ConfigRecord)
