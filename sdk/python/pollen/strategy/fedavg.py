"""FedAvg (McMahan et al., 2017) with Flower's options; averages exactly as the TypeScript FedAvg."""

from __future__ import annotations

import math
import random
from typing import Iterable, List, Optional, Sequence, Tuple

from ..errors import PollenError
from ..grid import Grid
from ..message import Message, MessageType
from ..records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from .aggregate import aggregate_arrays, aggregate_metrics, check_same_arrays
from .finite import drop_non_finite
from .strategy import Failure, Strategy


def _invalid(message: str) -> PollenError:
    return PollenError("INVALID_ARGUMENT", message)


def sample_size(available: int, fraction: float, min_nodes: int) -> int:
    return max(math.floor(available * fraction), min_nodes)


class FedAvg(Strategy):
    """Federated averaging: each round samples nodes, sends them the global arrays, and averages
    their replies' arrays and metrics weighted by each reply's ``weighted_by_key`` metric.

        strategy = FedAvg(fraction_train=0.5, min_available_nodes=2)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=3)
    """

    def __init__(
        self,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        rng: Optional[random.Random] = None,
    ) -> None:
        for name, value in (("fraction_train", fraction_train), ("fraction_evaluate", fraction_evaluate)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise _invalid(f"{name} must be in [0, 1], got {value!r}")
        for name, value in (
            ("min_train_nodes", min_train_nodes),
            ("min_evaluate_nodes", min_evaluate_nodes),
            ("min_available_nodes", min_available_nodes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _invalid(f"{name} must be an integer >= 0, got {value!r}")
        for name, value in (
            ("weighted_by_key", weighted_by_key),
            ("arrayrecord_key", arrayrecord_key),
            ("configrecord_key", configrecord_key),
        ):
            if not isinstance(value, str) or value == "":
                raise _invalid(f"{name} must be a non-empty string")
        if arrayrecord_key == configrecord_key:
            raise _invalid(f'arrayrecord_key and configrecord_key must differ, both are "{arrayrecord_key}"')
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.weighted_by_key = weighted_by_key
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        self._rng = rng or random.Random()
        self._left_out: List[Failure] = []

    def sample_nodes(self, node_ids: Sequence[str], phase: str = "train") -> List[str]:
        """The nodes of a round, uniformly without replacement; UNAVAILABLE when too few."""
        available = len(node_ids)
        if len(set(node_ids)) != available:
            raise _invalid("The node ids contain duplicates")
        if phase == "evaluate" and self.fraction_evaluate == 0:
            return []
        fraction, min_nodes = (
            (self.fraction_train, self.min_train_nodes)
            if phase == "train"
            else (self.fraction_evaluate, self.min_evaluate_nodes)
        )
        n = sample_size(available, fraction, min_nodes)
        required = max(self.min_available_nodes, n)
        if available < required:
            raise PollenError(
                "UNAVAILABLE",
                f"Not enough nodes to {phase}: {available} available, {required} required",
                "Wait for more SuperNodes to connect, or lower the minimum node settings of the strategy.",
            )
        return self._rng.sample(list(node_ids), n)

    def _messages(
        self, message_type: str, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> List[Message]:
        nodes = self.sample_nodes(grid.get_node_ids(), "train" if message_type == MessageType.TRAIN else "evaluate")
        cfg = ConfigRecord(dict(config))
        cfg["server-round"] = server_round
        content = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: cfg})
        return [grid.create_message(content, message_type, node, str(server_round)) for node in nodes]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> List[Message]:
        return self._messages(MessageType.TRAIN, server_round, arrays, config, grid)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> List[Message]:
        return self._messages(MessageType.EVALUATE, server_round, arrays, config, grid)

    def _weighted(self, replies: Iterable[Message]) -> Tuple[List[Message], List[MetricRecord], List[float]]:
        ok = [r for r in replies if r.content is not None]
        if not ok:
            raise PollenError("INVALID_ARGUMENT", "No replies to aggregate", "A round needs at least one reply.")
        metrics = [self._single(r, k, MetricRecord) for k, r in enumerate(ok)]
        weights: List[float] = []
        for k, (r, m) in enumerate(zip(ok, metrics)):
            n = m.get(self.weighted_by_key)
            if isinstance(n, (bool, list)) or not isinstance(n, (int, float)) or not n > 0:
                raise PollenError(
                    "INVALID_ARGUMENT",
                    f"Reply {k} (node {r.metadata.src_node_id}) reports {self.weighted_by_key} = {n!r}: it must be a number > 0",
                    f'Every reply\'s MetricRecord carries "{self.weighted_by_key}"; a node that used no examples must not send a reply to be averaged.',
                )
            weights.append(n)
        return ok, metrics, weights

    @staticmethod
    def _single(reply: Message, k: int, kind: type):
        assert reply.content is not None
        found = [r for r in reply.content.values() if isinstance(r, kind)]
        if len(found) != 1:
            raise PollenError(
                "INVALID_ARGUMENT",
                f"Reply {k} (node {reply.metadata.src_node_id}) holds {len(found)} {kind.__name__}s: a reply must hold exactly one",
                f'The ClientApp replies with one {kind.__name__} (e.g. "arrays") and one MetricRecord (e.g. "metrics").',
            )
        return found[0]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> Tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        """Average the replies with content (error replies are skipped) by ``weighted_by_key``.
        A reply whose float32 or float64 arrays hold NaN or Inf is left out and becomes a failure
        of the round (``train_failures()``, code UPDATE_NOT_FINITE); with none left, the step
        raises UPDATE_NOT_FINITE."""
        ok, metrics, weights = self._weighted(replies)
        records = [self._single(r, k, ArrayRecord) for k, r in enumerate(ok)]
        sources = [r.metadata.src_node_id for r in ok]
        check_same_arrays(records, sources)
        keep, self._left_out = drop_non_finite(records, sources)
        kept_weights = [weights[k] for k in keep]
        return (
            aggregate_arrays([records[k] for k in keep], kept_weights, [sources[k] for k in keep]),
            aggregate_metrics([metrics[k] for k in keep], kept_weights, self.weighted_by_key),
        )

    def train_failures(self) -> List[Failure]:
        return list(self._left_out)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Optional[MetricRecord]:
        _ok, metrics, weights = self._weighted(replies)
        return aggregate_metrics(metrics, weights, self.weighted_by_key)
