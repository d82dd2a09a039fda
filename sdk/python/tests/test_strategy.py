"""FedAvg and FedProx over an in-process grid: averages, sampling, waiting for nodes, failures
and the precise refusals (the TypeScript parity is test/python-strategy.test.ts)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sample_nodes import node

from pollen import ArrayRecord, ClientApp, ConfigRecord, FedAvg, FedProx, Message, MetricRecord, RecordDict
from pollen.errors import PollenError
from pollen.grid import InMemoryGrid
from pollen.message import Error


def initial(n: int = 2) -> ArrayRecord:
    return ArrayRecord({"w": np.zeros(n, np.float32), "b": np.zeros(1)})


def code_of(fn) -> str:
    with pytest.raises(PollenError) as e:
        fn()
    return f"{e.value.code}: {e.value.args[0]}"


def test_fedavg_weighted_average_hand_computed_and_the_metrics_of_every_round():
    seen: list = []
    grid = InMemoryGrid({"1": node(1, 10, seen), "2": node(2, 20, seen), "3": node(3, 70, seen)})
    result = FedAvg().start(grid=grid, initial_arrays=initial(), num_rounds=2, train_config=ConfigRecord({"lr": 0.1}))
    np.testing.assert_array_equal(result.arrays["w"].numpy(), np.float32([5.2, 5.2]))
    assert result.arrays["w"].dtype == "float32" and result.arrays["b"].dtype == "float64"
    assert result.train_metrics_clientapp[2]["train-loss"] == pytest.approx(2.6)
    assert "num-examples" not in result.train_metrics_clientapp[1]
    assert result.evaluate_metrics_clientapp[1]["pair"] == pytest.approx([2.6, 5.2])
    assert [c["server-round"] for c in seen] == [1, 1, 1, 2, 2, 2] and all(c["lr"] == 0.1 for c in seen)
    assert [r["node_ids"] for r in grid.rounds] == [["1", "2", "3"]] * 2


def test_evaluate_fn_sees_round_0_and_every_round():
    calls = []

    def evaluate_fn(server_round, arrays):
        calls.append((server_round, float(arrays["b"].numpy()[0])))
        return MetricRecord({"centralized-loss": server_round})

    grid = InMemoryGrid({"1": node(1, 1), "2": node(1, 1)})
    result = FedAvg(fraction_evaluate=0).start(grid=grid, initial_arrays=initial(), num_rounds=2, evaluate_fn=evaluate_fn)
    assert calls == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert sorted(result.evaluate_metrics_serverapp) == [0, 1, 2]
    assert result.evaluate_metrics_clientapp == {}


def test_fedprox_sends_proximal_mu_and_fraction_train_samples():
    seen: list = []
    grid = InMemoryGrid({str(i): node(i, 1, seen) for i in range(1, 11)})
    FedProx(proximal_mu=0.3, fraction_train=0.3, min_available_nodes=1, rng=random.Random(1)).start(
        grid=grid, initial_arrays=initial(), num_rounds=1
    )
    assert len(seen) == 3 and all(c["proximal-mu"] == 0.3 for c in seen)


def test_failed_nodes_are_left_out_and_counted_and_a_round_without_models_fails():
    grid = InMemoryGrid({"1": node(1, 1), "2": node(5, 1, fail=True)})
    result = FedAvg(fraction_evaluate=0).start(grid=grid, initial_arrays=initial(), num_rounds=1)
    (failure,) = result.failures[1]
    assert (failure.node_id, failure.code) == ("2", "CLIENT_APP_RAISED_EXCEPTION")
    assert "MemoryError: out of memory" in failure.reason
    assert grid.rounds[0]["metrics"]["train-failures"] == 1
    np.testing.assert_array_equal(result.arrays["w"].numpy(), [1, 1])
    broken = InMemoryGrid({"1": node(1, 1, fail=True), "2": node(1, 1, fail=True)})
    assert code_of(lambda: FedAvg().start(grid=broken, initial_arrays=initial(), num_rounds=1)) == (
        "RUN_FAILED: Round 1: no node returned a model (2 of 2 failed: CLIENT_APP_RAISED_EXCEPTION)"
    )


def test_waits_for_nodes_then_fails_unavailable_with_backoff():
    now = [0.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    grid = InMemoryGrid({"1": node(1, 1)})
    message = code_of(
        lambda: FedAvg().start(grid=grid, initial_arrays=initial(), num_rounds=1, node_timeout=3, sleep=sleep, clock=lambda: now[0])
    )
    assert message == "UNAVAILABLE: Round 1, after 3.0 s: Not enough nodes to train: 1 available, 2 required"
    assert sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6])


def test_every_dtype_averaged_rounded_half_to_even_and_clipped_to_its_range():
    instruction = Message(RecordDict(), dst_node_id="1", message_type="train")
    i64, u64 = np.iinfo(np.int64), np.iinfo(np.uint64)
    sides = [
        {
            "h": np.float16([1, 1 + 2**-10, 2**-24, 2048, np.inf]),
            "i8": np.int8([1, 2, -1, 127, -128]),
            "i64": np.int64([1, 2, i64.max, i64.min, i64.max - 1]),
            "u64": np.uint64([1, 2, u64.max, 0, u64.max - 1]),
            "flag": np.array([True, False, True, False]),
        },
        {
            "h": np.float16([1 + 2**-10, 1 + 2**-9, 0, 2050, np.inf]),
            "i8": np.int8([2, 3, -2, 126, -128]),
            "i64": np.int64([2, 3, i64.max, i64.min, i64.max]),
            "u64": np.uint64([2, 3, u64.max, 0, u64.max]),
            "flag": np.array([False, True, True, False]),
        },
    ]
    replies = [
        Message(
            RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": 5})}),
            reply_to=instruction.with_metadata(dst_node_id=str(k + 1)),
        )
        for k, arrays in enumerate(sides)
    ]
    with np.errstate(invalid="raise"):  # no integer cast may overflow on the way
        arrays, _ = FedAvg().aggregate_train(1, replies)
    # Equal weights: every value is a tie, rounded to the even neighbour, or a range edge (the
    # float64 sums of int64 and uint64 maxima are 2^63 and 2^64, kept at the maxima).
    assert arrays["h"].numpy().tolist() == [1, 1 + 2**-9, 0, 2048, np.inf]
    assert arrays["i8"].numpy().tolist() == [2, 2, -2, 126, -128]
    assert arrays["i64"].numpy().tolist() == [2, 2, i64.max, i64.min, i64.max]
    assert arrays["u64"].numpy().tolist() == [2, 2, u64.max, 0, u64.max]
    assert arrays["flag"].numpy().tolist() == [False, False, True, False]
    assert [arrays[n].dtype for n in arrays] == ["float16", "int8", "int64", "uint64", "bool"]

    three = [
        Message(
            RecordDict({"arrays": ArrayRecord({"flag": np.array([v])}), "metrics": MetricRecord({"num-examples": n})}),
            reply_to=instruction.with_metadata(dst_node_id=str(k + 1)),
        )
        for k, (v, n) in enumerate([(True, 1), (True, 1), (False, 3)])
    ]
    assert FedAvg().aggregate_train(1, three)[0]["flag"].numpy().tolist() == [False]  # weighted majority


def test_float16_is_summed_in_float16_as_flower_sums_it():
    # Each weight, product and sum rounds to float16 (numpy on Flower's ``value * weight``, ``+=``):
    # with these weights the sum near the largest float16 rounds past 65520 to inf, though the
    # exact average is 65504; widened to float32 and rounded once it would be [65504, -65504, 1, 0.09998].
    instruction = Message(RecordDict(), dst_node_id="1", message_type="train")
    replies = [
        Message(
            RecordDict(
                {
                    "arrays": ArrayRecord({"h": np.float16([65504, -65504, 1, 0.1])}),
                    "metrics": MetricRecord({"num-examples": n}),
                }
            ),
            reply_to=instruction.with_metadata(dst_node_id=str(k + 1)),
        )
        for k, n in enumerate([2427, 1071, 105])
    ]
    with np.errstate(over="ignore"):
        arrays, _ = FedAvg().aggregate_train(1, replies)
    assert arrays["h"].dtype == "float16"
    assert arrays["h"].numpy().tolist() == [np.inf, -np.inf, 1.0, 0.10003662109375]


def test_refuses_bad_options_and_mismatched_replies():
    assert code_of(lambda: FedAvg(fraction_train=1.5)) == "INVALID_ARGUMENT: fraction_train must be in [0, 1], got 1.5"
    assert code_of(lambda: FedAvg(min_train_nodes=-1)).startswith("INVALID_ARGUMENT: min_train_nodes must be an integer")
    assert code_of(lambda: FedAvg(arrayrecord_key="x", configrecord_key="x")).startswith("INVALID_ARGUMENT: arrayrecord_key")
    assert code_of(lambda: FedProx(proximal_mu=-1)) == "INVALID_ARGUMENT: proximal_mu must be finite and >= 0, got -1"
    grid = InMemoryGrid({})
    assert code_of(lambda: FedAvg().start(grid=grid, initial_arrays={"w": 1}, num_rounds=1)).startswith(  # type: ignore[arg-type]
        "INVALID_ARGUMENT: initial_arrays must be an ArrayRecord"
    )

    instruction = Message(RecordDict(), dst_node_id="1", message_type="train")

    def reply(node_id, arrays, metrics):
        content = RecordDict({"metrics": MetricRecord(metrics)})
        if arrays is not None:
            content["arrays"] = ArrayRecord(arrays)
        return Message(content, reply_to=instruction.with_metadata(dst_node_id=node_id))

    fedavg = FedAvg()
    shapes = [reply("1", {"w": np.zeros(2, np.float32)}, {"num-examples": 1}), reply("2", {"w": np.zeros(3, np.float32)}, {"num-examples": 1})]
    assert code_of(lambda: fedavg.aggregate_train(1, shapes)) == (
        'INVALID_ARGUMENT: Reply 1 (node 2) array "w" is float32 [3], reply 0 sends float32 [2]'
    )
    dtypes = [reply("1", {"w": np.zeros(2, np.int32)}, {"num-examples": 1}), reply("2", {"w": np.zeros(2, np.int64)}, {"num-examples": 1})]
    assert code_of(lambda: fedavg.aggregate_train(1, dtypes)) == (
        'INVALID_ARGUMENT: Reply 1 (node 2) array "w" is int64 [2], reply 0 sends int32 [2]'
    )
    no_weight = [reply("1", {"w": np.zeros(2, np.float32)}, {"loss": 1})]
    assert code_of(lambda: fedavg.aggregate_train(1, no_weight)) == (
        "INVALID_ARGUMENT: Reply 0 (node 1) reports num-examples = None: it must be a number > 0"
    )
    error_only = [Message(Error("NODE_UNAVAILABLE", "gone"), reply_to=instruction)]
    assert code_of(lambda: fedavg.aggregate_train(1, error_only)) == "INVALID_ARGUMENT: No replies to aggregate"


def train_reply(node_id: str, arrays: dict, examples: float, loss: float) -> Message:
    instruction = Message(RecordDict(), dst_node_id=node_id, message_type="train")
    content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": examples, "loss": loss})})
    return Message(content, reply_to=instruction)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "+inf", "-inf"])
def test_a_reply_holding_nan_or_inf_is_left_out_and_named_as_a_failure(bad):
    poisoned = np.float64([1, 1])
    poisoned[1] = bad
    replies = [
        train_reply("1", {"w": np.float32([1, 2]), "b": np.float64([1, 1])}, 1, 1.0),
        train_reply("2", {"w": np.float32([7, 7]), "b": poisoned}, 10, 9.0),
        train_reply("3", {"w": np.float32([3, 4]), "b": np.float64([3, 3])}, 3, 2.0),
    ]
    fedavg = FedAvg()
    arrays, metrics = fedavg.aggregate_train(1, replies)
    # The average of nodes 1 and 3 only (weights 1 and 3), their metrics too.
    np.testing.assert_array_equal(arrays["w"].numpy(), np.float32([2.5, 3.5]))
    np.testing.assert_array_equal(arrays["b"].numpy(), [2.5, 2.5])
    assert metrics["loss"] == pytest.approx(1.75)
    (failure,) = fedavg.train_failures()
    assert (failure.node_id, failure.message_type, failure.code, failure.reason) == (
        "2",
        "train",
        "UPDATE_NOT_FINITE",
        'Array "b" holds NaN or Inf: the reply is left out of the aggregate',
    )
    # The next step starts afresh.
    fedavg.aggregate_train(2, [replies[0]])
    assert fedavg.train_failures() == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "+inf", "-inf"])
def test_a_round_where_every_reply_holds_nan_or_inf_is_refused(bad):
    replies = [train_reply(str(k), {"w": np.float32([0, bad])}, 1, 1.0) for k in (1, 2)]
    with pytest.raises(PollenError) as e:
        FedAvg().aggregate_train(1, replies)
    assert str(e.value) == "UPDATE_NOT_FINITE: Every reply holds NaN or Inf (nodes 1, 2): nothing is left to aggregate"
    assert "nodes' logs" in e.value.hint


def test_start_logs_counts_and_leaves_out_a_node_that_sends_nan(capsys):
    diverged = ClientApp()

    @diverged.train()
    def train(msg, context):
        arrays = ArrayRecord({k: np.full_like(a.numpy(), np.nan) for k, a in msg.content["arrays"].items()})
        return RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 1, "train-loss": 1e9})})

    grid = InMemoryGrid({"1": node(1, 1), "2": diverged, "3": node(3, 1)})
    result = FedProx(proximal_mu=0.1, fraction_evaluate=0).start(grid=grid, initial_arrays=initial(), num_rounds=1)
    np.testing.assert_array_equal(result.arrays["w"].numpy(), [2, 2])
    (failure,) = result.failures[1]
    assert (failure.node_id, failure.code) == ("2", "UPDATE_NOT_FINITE")
    assert grid.rounds[0]["metrics"]["train-failures"] == 1
    assert grid.rounds[0]["node_ids"] == ["1", "3"]
    assert 'node 2 train failed: Array "w" holds NaN or Inf: the reply is left out of the aggregate' in capsys.readouterr().err
