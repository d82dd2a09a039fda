"""Weighted averages of replies, bit for bit those of src/strategies/aggregate.ts and records.ts.

Both compute as Flower's message-API FedAvg (``aggregate_arrayrecords``) does, the same
operations in the same order (no fused multiply-add), so all three give identical bytes:

- weights are normalised once, in float64, to sum to 1 (summed left to right);
- a float32 layer is ``x0 * w0``, then ``+= xk * wk`` reply by reply, in float32 (numpy rounds
  each Python-float weight to float32 and every product and sum to float32);
- a float64 layer the same in float64; metrics are ``Σ v·n / Σ n`` in float64;
- a float16 layer the same in float16 (each weight rounded straight from float64 to float16,
  every product and sum to float16), as numpy runs Flower's ``value * weight`` on float16 arrays;
- an integer layer is summed in float64 as float64 is, rounded half to even (``np.rint``) and
  clipped to its dtype's range; bool the same as 0/1 (the weighted majority, a tie is False).
  These are the rules of src/strategies/average-dtypes.ts.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from ..errors import PollenError
from ..records import ArrayRecord, MetricRecord

MetricValue = Union[float, List[float]]


def _invalid(message: str, hint: str = "") -> PollenError:
    return PollenError("INVALID_ARGUMENT", message, hint)


def normalize_weights(weights: Sequence[float]) -> List[float]:
    """Weights that sum to 1; refuses none, and any weight that is not finite and > 0."""
    if len(weights) == 0:
        raise _invalid("No updates to aggregate")
    total = 0.0
    for k, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise _invalid(f"Update {k} has weight {w}: weights must be finite and > 0")
        total += w
    if not math.isfinite(total):
        raise _invalid("The sum of the weights overflows")
    return [float(w) / total for w in weights]


def _sum_in_dtype(xs: Sequence[np.ndarray], ws: Sequence[float], dtype: type) -> np.ndarray:
    """``x0*w0``, then ``+= xk*wk``, in ``dtype`` (weights rounded to it): from the first term, not
    from +0, so a lone -0 stays -0."""
    acc = xs[0].reshape(-1).astype(dtype) * dtype(ws[0])
    for w, x in zip(ws[1:], xs[1:]):
        acc += x.reshape(-1).astype(dtype) * dtype(w)
    return acc


def average_float32(xs: Sequence[np.ndarray], ws: Sequence[float]) -> np.ndarray:
    """``Σ ws[k]·xs[k]`` of float32 arrays in float32, as Flower and the TypeScript kernel (weights normalised)."""
    return _sum_in_dtype(xs, ws, np.float32)


def average_float64(xs: Sequence[np.ndarray], ws: Sequence[float]) -> np.ndarray:
    return _sum_in_dtype(xs, ws, np.float64)


def average_float16(xs: Sequence[np.ndarray], ws: Sequence[float]) -> np.ndarray:
    return _sum_in_dtype(xs, ws, np.float16)


def average_integers(dtype: str, xs: Sequence[np.ndarray], ws: Sequence[float]) -> np.ndarray:
    """Averaged in float64, rounded half to even and clipped to the range of ``dtype``."""
    r = np.rint(average_float64([x.astype(np.float64) for x in xs], ws))
    if dtype == "bool":
        return r >= 1.0  # rint of a weighted mean of 0/1 is 0 or 1
    info = np.iinfo(dtype)
    lo, hi = float(info.min), float(info.max)
    # float(2**63 - 1) and float(2**64 - 1) round up to 2^63 and 2^64, which no cast takes: what
    # reaches that bound is set to the dtype's maximum after the cast, not clipped before it.
    high = r >= hi
    out = np.where(high, 0.0, np.maximum(r, lo)).astype(np.dtype(dtype).newbyteorder("<"))
    out[high] = info.max
    return out


def average(dtype: str, xs: Sequence[np.ndarray], ws: Sequence[float]) -> np.ndarray:
    """The weighted average of arrays of one dtype (weights normalised), as the header says."""
    if dtype == "float32":
        return average_float32(xs, ws)
    if dtype == "float64":
        return average_float64(xs, ws)
    if dtype == "float16":
        return average_float16(xs, ws)
    return average_integers(dtype, xs, ws)


def check_same_arrays(records: Sequence[ArrayRecord], sources: Sequence[str]) -> None:
    """Every reply has reply 0's array names, and per name the same dtype and shape."""
    if not records:
        raise _invalid("No replies to aggregate", "A round needs at least one reply.")
    first = records[0]
    names = list(first.keys())
    for k, record in enumerate(records):
        if len(record) != len(names) or any(n not in record for n in names):
            raise _invalid(
                f"Reply {k} (node {sources[k]}) has arrays [{', '.join(record)}], reply 0 has [{', '.join(names)}]",
                "Every node must send the same named arrays.",
            )
    for name in names:
        a0 = first[name]
        for k, record in enumerate(records):
            a = record[name]
            if a.dtype != a0.dtype or a.shape != a0.shape:
                raise _invalid(
                    f'Reply {k} (node {sources[k]}) array "{name}" is {a.dtype} {list(a.shape)}, '
                    f"reply 0 sends {a0.dtype} {list(a0.shape)}",
                    "Every node must send arrays of the same dtype and shape.",
                )


def aggregate_arrays(records: Sequence[ArrayRecord], weights: Sequence[float], sources: Sequence[str]) -> ArrayRecord:
    """The weighted average of ArrayRecords: reply 0's names and order; per name the same dtype
    and shape in every reply (``check_same_arrays``)."""
    check_same_arrays(records, sources)
    ws = normalize_weights(weights)
    out = ArrayRecord()
    for name, a0 in records[0].items():
        xs = [record[name].numpy() for record in records]
        out[name] = average(a0.dtype, xs, ws).reshape(a0.shape)
    return out


def aggregate_metrics(records: Sequence[MetricRecord], weights: Sequence[float], weight_key: str) -> MetricRecord:
    """Metrics averaged by ``weights`` (the weight metric itself left out). A metric missing from
    some replies is averaged over those that report it; lists element by element."""
    sums: "OrderedDict[str, Tuple[List[float], bool, float]]" = OrderedDict()
    for k, (record, n) in enumerate(zip(records, weights)):
        for name, value in record.items():
            if name == weight_key:
                continue
            is_list = isinstance(value, list)
            values = value if is_list else [value]
            s, was_list, total = sums.get(name, ([0.0] * len(values), is_list, 0.0))
            if was_list != is_list or len(s) != len(values):
                raise _invalid(f'Reply {k} metric "{name}" does not have the shape of the other replies\' "{name}"')
            s = [acc + float(v) * n for acc, v in zip(s, values)]
            sums[name] = (s, is_list, total + n)
    out: Dict[str, MetricValue] = {}
    for name, (s, is_list, total) in sums.items():
        avg = [v / total for v in s]
        out[name] = avg if is_list else avg[0]
    return MetricRecord(out)
