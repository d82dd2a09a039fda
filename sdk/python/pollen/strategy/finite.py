"""The rule for non-finite updates, as src/strategies/replies.ts has it: a reply whose float32 or
float64 arrays hold NaN or ±Inf is left out of the aggregate and becomes a failure of the round
(code UPDATE_NOT_FINITE) naming its node and the array, so one broken node can neither poison
the model nor go unnoticed. float16 arrays are averaged as they come (an infinity is a float16
value a model may hold); integer and bool arrays are always finite."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PollenError
from ..records import ArrayRecord
from .strategy import Failure

NOT_FINITE = "UPDATE_NOT_FINITE"
HINT = (
    "The named nodes sent NaN or Inf values: their replies are left out of the round. "
    "Check their training (learning rate, data) in the nodes' logs."
)


def non_finite_array(record: ArrayRecord) -> Optional[str]:
    """The name of the first float32 or float64 array of ``record`` holding NaN or ±Inf, or None."""
    for name, array in record.items():
        if array.dtype in ("float32", "float64") and not np.isfinite(array.numpy()).all():
            return name
    return None


def drop_non_finite(records: Sequence[ArrayRecord], sources: Sequence[str]) -> Tuple[List[int], List[Failure]]:
    """The indices of the finite replies, and a failure for each other one; UPDATE_NOT_FINITE
    when none is left."""
    keep: List[int] = []
    failures: List[Failure] = []
    for k, record in enumerate(records):
        name = non_finite_array(record)
        if name is None:
            keep.append(k)
        else:
            reason = f'Array "{name}" holds NaN or Inf: the reply is left out of the aggregate'
            failures.append(Failure(sources[k], "train", NOT_FINITE, reason))
    if not keep:
        nodes = ", ".join(f.node_id for f in failures)
        raise PollenError(NOT_FINITE, f"Every reply holds NaN or Inf (nodes {nodes}): nothing is left to aggregate", HINT)
    return keep, failures
