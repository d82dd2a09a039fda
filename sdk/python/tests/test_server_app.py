"""A Python ServerApp against an in-process ServerAppIo (fake_serverappio): the Grid's calls,
chunks, round reports, artefacts, and how the run finishes in every failure."""

from __future__ import annotations

import io
import sys
import textwrap

import numpy as np
import pytest
from fake_serverappio import RUN_ID, TOKEN, FakeServerAppIo
from sample_nodes import node

from pollen import ArrayRecord, ConfigRecord, RecordDict
from pollen._remote_grid import RemoteGrid
from pollen._serverappio import ServerAppIo
from pollen.errors import PollenError
from pollen.server_app import run_serverapp

BIG = 70_000  # float32 elements: chunked (> 64 KiB), and past the kernel's small-layer path


def write_app(tmp_path, monkeypatch, source: str, name: str = "my_server") -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)  # each test its own module
    return f"{name}:app"


FEDAVG_APP = """
    import numpy as np
    from pollen import ArrayRecord, ConfigRecord, FedAvg, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context):
        initial = ArrayRecord({"w": np.zeros(%d, np.float32), "b": np.zeros(2)})
        result = FedAvg(min_available_nodes=3).start(
            grid=grid, initial_arrays=initial, num_rounds=context.run_config["num-server-rounds"],
            train_config=ConfigRecord({"lr": 0.5}),
        )
        context.save_artefact("final_model.npz", result.arrays)
        context.save_artefact("notes.txt", "done")
""" % BIG


@pytest.fixture
def fake():
    servers = []

    def make(nodes, **kw):
        s = FakeServerAppIo(nodes, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def run(fake_io, ref: str) -> int:
    return run_serverapp(url=fake_io.url, token=TOKEN, run_id=RUN_ID, app_ref=ref, env={})


def test_fedavg_run_completes_reports_rounds_and_saves_the_model(fake, tmp_path, monkeypatch):
    seen: list = []
    io_ = fake({"1": node(1, 10, seen), "2": node(2, 30, seen), "3": node(3, 60, seen)}, run_config={"num-server-rounds": 2})
    assert run(io_, write_app(tmp_path, monkeypatch, FEDAVG_APP)) == 0
    assert io_.finished == ("completed", "")
    assert sorted(c["server-round"] for c in seen) == [1, 1, 1, 2, 2, 2]
    assert all(c["lr"] == 0.5 for c in seen)
    model = np.load(io.BytesIO(io_.artefacts["final_model.npz"]))
    # Each round adds 0.1·1 + 0.3·2 + 0.6·3 = 2.5.
    np.testing.assert_array_equal(model["b"], [5.0, 5.0])
    assert model["w"].dtype == np.float32 and model["w"].shape == (BIG,)
    assert np.allclose(model["w"], 5.0)
    assert io_.artefacts["notes.txt"] == b"done"
    assert [r.round for r in io_.rounds] == [1, 2]
    r1 = io_.rounds[0]
    assert list(r1.node_ids) == ["1", "2", "3"]
    assert r1.metrics["train-loss"] == pytest.approx(2.5) and r1.metrics["accuracy"] == pytest.approx(0.25)
    # Train and evaluate messages both carry the model; replies to train only.
    assert r1.bytes_sent == 6 * (BIG * 4 + 16) and r1.bytes_received == 3 * (BIG * 4 + 16)
    assert (r1.replies, r1.failures) == (6, 0)
    # Each reply's chunks were read from its node's scope; the global model pushed once a round.
    assert set(io_.sources) == {"1", "2", "3"}
    assert len(io_.pushed) == len(set(io_.pushed))


def test_a_node_whose_chunks_do_not_match_fails_alone(fake):
    io_ = fake({"1": node(1, 10), "2": node(2, 10), "3": node(3, 10)}, corrupt=("2",))
    sio = ServerAppIo(io_.url, TOKEN, RUN_ID)
    try:
        from pollen import FedAvg

        result = FedAvg(fraction_evaluate=0).start(
            grid=RemoteGrid(sio, RUN_ID), initial_arrays=ArrayRecord({"w": np.zeros(BIG, np.float32)}), num_rounds=1
        )
    finally:
        sio.close()
    (failure,) = result.failures[1]
    assert (failure.node_id, failure.code) == ("2", "CHUNK_MISMATCH")
    assert failure.reason.startswith("The reply could not be read: Chunk data does not match its id")
    np.testing.assert_array_equal(result.arrays["w"].numpy()[:3], [2.0, 2.0, 2.0])  # nodes 1 and 3
    assert (io_.rounds[0].replies, io_.rounds[0].failures) == (2, 1)
    assert io_.rounds[0].metrics["train-failures"] == 1


def test_the_grid_api_send_pull_and_send_and_receive(fake):
    io_ = fake({"7": node(1, 1)})
    sio = ServerAppIo(io_.url, TOKEN, RUN_ID)
    try:
        grid = RemoteGrid(sio, RUN_ID)
        assert grid.get_node_ids() == ["7"]
        content = RecordDict({"arrays": ArrayRecord({"w": np.ones(3, np.float32)}), "config": ConfigRecord({"x": 1})})
        msg = grid.create_message(content, "train", "7", group_id="g")
        assert (msg.metadata.run_id, msg.metadata.group_id, msg.metadata.dst_node_id) == (RUN_ID, "g", "7")
        ids = grid.send([msg])
        (reply,) = grid.pull(ids)
        assert reply.metadata.reply_to_message_id == ids[0]
        np.testing.assert_array_equal(reply.content["arrays"]["w"].numpy(), [2, 2, 2])
        assert grid.pull(ids) == []  # each reply once
        (flower,) = grid.pull_messages(grid.push_messages([grid.create_message(content, "train", "7")]))
        assert flower.has_content()  # Flower's names for send and pull
        (again,) = grid.send_and_receive([grid.create_message(content, "evaluate", "7")], timeout=5)
        assert again.content["metrics"]["accuracy"] == pytest.approx(0.1)
        # Fresh contents, one per message, made as they are sent: each keeps its own arrays.
        made = (grid.create_message(RecordDict({"arrays": ArrayRecord({"w": np.full(BIG, k, np.float32)}), "config": ConfigRecord()}), "train", "7") for k in range(3))
        replies = grid.pull(grid.send(made))
        assert sorted(float(r.content["arrays"]["w"].numpy()[0]) for r in replies) == [1.0, 2.0, 3.0]
        with pytest.raises(ValueError, match="A reply cannot be sent"):
            grid.send([again])
    finally:
        sio.close()


def test_a_stopped_run_ends_quietly(fake, tmp_path, monkeypatch):
    io_ = fake({"1": node(1, 1)}, run_config={"num-server-rounds": 1})
    io_.stopped = True
    ref = write_app(
        tmp_path,
        monkeypatch,
        """
        from pollen import RecordDict, ServerApp
        app = ServerApp()

        @app.main()
        def main(grid, context):
            grid.send_and_receive([grid.create_message(RecordDict(), "query", "1")])
        """,
        "stopped_app",
    )
    assert run(io_, ref) == 0
    assert io_.finished is None


@pytest.mark.parametrize(
    "source, reason",
    [
        (
            """
            from pollen import ServerApp
            app = ServerApp()

            @app.main()
            def main(grid, context):
                raise ValueError("the learning rate is negative")
            """,
            "ValueError: the learning rate is negative",
        ),
        (
            """
            import numpy as np
            from pollen import ArrayRecord, FedAvg, ServerApp
            app = ServerApp()

            @app.main()
            def main(grid, context):
                FedAvg(min_available_nodes=5).start(grid=grid, initial_arrays=ArrayRecord([np.zeros(1)]), num_rounds=1, node_timeout=0)
            """,
            "UNAVAILABLE: Round 1, after 0.0 s: Not enough nodes to train: 1 available, 5 required",
        ),
        ("server = 1\n", "APP_EXPORT_MISSING: The ServerApp module failing_app exports no ServerApp named 'app'"),
        ("import not_a_module_anywhere\n", "APP_LOAD_FAILED: The ServerApp module failing_app could not be loaded"),
    ],
)
def test_a_failing_app_fails_the_run_with_its_reason(fake, tmp_path, monkeypatch, source, reason):
    io_ = fake({"1": node(1, 1)})
    assert run(io_, write_app(tmp_path, monkeypatch, source, "failing_app")) == 1
    status, text = io_.finished
    assert status == "failed" and text.startswith(reason), text


def test_save_artefact_without_a_run_is_refused():
    from pollen.server_app import ServerContext

    with pytest.raises(PollenError) as e:
        ServerContext(run_id="r", node_id="0").save_artefact("x.txt", "y")
    assert e.value.code == "ARTEFACTS_UNAVAILABLE"

