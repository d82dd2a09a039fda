"""Strategy: the whole federated loop, as Flower's message-API strategies run it (and as
src/strategies/strategy.ts does): configure a round, send, aggregate, evaluate, report."""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ..errors import PollenError
from ..grid import Grid
from ..message import Message
from ..records import ArrayRecord, ConfigRecord, MetricRecord

EvaluateFn = Callable[[int, ArrayRecord], Optional[MetricRecord]]

DEFAULT_TIMEOUT = 3600.0
DEFAULT_NODE_TIMEOUT = 60.0
# Waiting for nodes asks the grid again after 0.2 s, then twice as long each time, up to 5 s.
FIRST_POLL = 0.2
MAX_POLL = 5.0


@dataclass
class Failure:
    """A node that was sent a message and gave no usable reply."""

    node_id: str
    message_type: str
    code: str  # the error reply's code, or NO_REPLY
    reason: str


@dataclass
class Result:
    """What ``start()`` returns (Flower's ``Result``): the final arrays and the metrics per round."""

    arrays: ArrayRecord
    train_metrics_clientapp: Dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_clientapp: Dict[int, MetricRecord] = field(default_factory=dict)
    # Round 0 is the initial arrays.
    evaluate_metrics_serverapp: Dict[int, MetricRecord] = field(default_factory=dict)
    failures: Dict[int, List[Failure]] = field(default_factory=dict)


@dataclass
class _Phase:
    node_ids: List[str]
    replies: List[Message]
    failures: List[Failure]


def _failures(message_type: str, sent: List[Message], replies: List[Message], timeout: float) -> List[Failure]:
    out: List[Failure] = []
    answered = set()
    for r in replies:
        answered.add(r.metadata.src_node_id)
        if r.error is not None:
            out.append(Failure(r.metadata.src_node_id, message_type, r.error.code, r.error.reason))
    for m in sent:
        if m.metadata.dst_node_id not in answered:
            out.append(Failure(m.metadata.dst_node_id, message_type, "NO_REPLY", f"No reply within {timeout:g} s"))
    return out


def _reported(metrics: Iterable[Optional[MetricRecord]], failures: List[Failure]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for record in metrics:
        for name, value in (record or {}).items():
            if not isinstance(value, list):
                out[name] = float(value)
    for kind in ("train", "evaluate"):
        n = sum(1 for f in failures if f.message_type == kind)
        if n:
            out[f"{kind}-failures"] = n
    return out


class Strategy(ABC):
    """The base of every strategy: say how to configure a round and aggregate its replies;
    ``start()`` runs the loop."""

    @abstractmethod
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> List[Message]:
        """The train messages of a round (raise PollenError UNAVAILABLE when too few nodes)."""

    @abstractmethod
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> Tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        """The new global arrays and the metrics of a round's train replies."""

    def train_failures(self) -> List[Failure]:
        """The replies the last ``aggregate_train`` left out by the strategy's rules (NaN or Inf
        in an update: UPDATE_NOT_FINITE); ``start()`` logs and counts them with the round's
        failures. None by default."""
        return []

    @abstractmethod
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> List[Message]:
        """The evaluate messages of a round ([] skips client-side evaluation)."""

    @abstractmethod
    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Optional[MetricRecord]:
        """The metrics of a round's evaluate replies."""

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = DEFAULT_TIMEOUT,
        train_config: Optional[ConfigRecord] = None,
        evaluate_config: Optional[ConfigRecord] = None,
        evaluate_fn: Optional[EvaluateFn] = None,
        node_timeout: float = DEFAULT_NODE_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Result:
        """Run ``num_rounds`` rounds: train on sampled nodes and aggregate, evaluate on sampled
        nodes, evaluate centrally with ``evaluate_fn(round, arrays)``, report the round with the
        run (``pollen list --run-id``). A round fails when too few nodes are available after
        ``node_timeout`` seconds (UNAVAILABLE) or no train reply succeeds (RUN_FAILED); other
        failed replies are logged, counted and left out. Replies are aggregated in node-id order.
        """
        if not isinstance(initial_arrays, ArrayRecord):
            raise PollenError("INVALID_ARGUMENT", "initial_arrays must be an ArrayRecord")
        if isinstance(num_rounds, bool) or not isinstance(num_rounds, int) or num_rounds < 0:
            raise PollenError("INVALID_ARGUMENT", f"num_rounds must be an integer >= 0, got {num_rounds!r}")
        for name, value in (("timeout", timeout), ("node_timeout", node_timeout)):
            if not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise PollenError("INVALID_ARGUMENT", f"{name} must be a finite number of seconds >= 0, got {value!r}")
        result = Result(arrays=initial_arrays)
        initial = evaluate_fn(0, initial_arrays) if evaluate_fn else None
        if initial is not None:
            result.evaluate_metrics_serverapp[0] = initial

        def phase(kind: str, server_round: int) -> _Phase:
            config = (train_config if kind == "train" else evaluate_config) or ConfigRecord()
            sent = self._configure(kind, server_round, result.arrays, config, grid, node_timeout, sleep, clock)
            if not sent:
                return _Phase([], [], [])
            replies = sorted(grid.send_and_receive(sent, timeout=timeout), key=lambda r: r.metadata.src_node_id)
            failures = _failures(kind, sent, replies, timeout)
            for f in failures:
                print(f"node {f.node_id} {kind} failed: {f.reason}", file=sys.stderr)
            return _Phase([m.metadata.dst_node_id for m in sent], replies, failures)

        for server_round in range(1, num_rounds + 1):
            train = phase("train", server_round)
            if not any(r.has_content() for r in train.replies):
                codes = ", ".join(sorted({f.code for f in train.failures}))
                raise PollenError(
                    "RUN_FAILED",
                    f"Round {server_round}: no node returned a model "
                    f"({len(train.failures)} of {len(train.node_ids)} failed: {codes})",
                    "Read the run log: pollen log RUN_ID.",
                )
            arrays, train_metrics = self.aggregate_train(server_round, train.replies)
            if arrays is not None:
                result.arrays = arrays
            left_out = self.train_failures()
            for f in left_out:
                print(f"node {f.node_id} train failed: {f.reason}", file=sys.stderr)
            train.failures.extend(left_out)
            evaluation = phase("evaluate", server_round)
            evaluated = (
                self.aggregate_evaluate(server_round, evaluation.replies)
                if any(r.has_content() for r in evaluation.replies)
                else None
            )
            central = evaluate_fn(server_round, result.arrays) if evaluate_fn else None
            if train_metrics is not None:
                result.train_metrics_clientapp[server_round] = train_metrics
            if evaluated is not None:
                result.evaluate_metrics_clientapp[server_round] = evaluated
            if central is not None:
                result.evaluate_metrics_serverapp[server_round] = central
            failures = train.failures + evaluation.failures
            result.failures[server_round] = failures
            # The nodes whose model went into the aggregate; the failed ones are counted apart.
            left = {f.node_id for f in left_out}
            grid.report_round(
                server_round,
                _reported((train_metrics, evaluated, central), failures),
                [r.metadata.src_node_id for r in train.replies if r.has_content() and r.metadata.src_node_id not in left],
            )
        return result

    def _configure(
        self,
        kind: str,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        node_timeout: float,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> List[Message]:
        since = clock()
        pause = FIRST_POLL
        while True:
            try:
                if kind == "train":
                    return list(self.configure_train(server_round, arrays, config, grid))
                return list(self.configure_evaluate(server_round, arrays, config, grid))
            except PollenError as e:
                if e.code != "UNAVAILABLE":
                    raise
                waited = clock() - since
                if waited >= node_timeout:
                    raise PollenError("UNAVAILABLE", f"Round {server_round}, after {waited:.1f} s: {e.args[0]}", e.hint) from None
                sleep(min(pause, node_timeout - waited))
                pause = min(2 * pause, MAX_POLL)
