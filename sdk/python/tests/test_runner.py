"""The ClientApp runner as a real process against an in-process ClientAppIo server."""

import hashlib
import signal
import subprocess
import textwrap
import time

import numpy as np
import pytest

from fake_appio import FakeClientAppIo
from pollen import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from pollen._chunks import CHUNK_SIZE
from pollen._runner import USAGE, main
from pollen._wire import config_value_to_wire

APP = """
import os
import numpy as np
from pollen import ClientApp, Message, RecordDict, ArrayRecord, MetricRecord, ConfigRecord

app = ClientApp()

@app.train()
def train(msg, context):
    arrays = msg.content["arrays"]
    if context.run_config.get("fail"):
        raise ValueError("boom at the site")
    trained = ArrayRecord({name: a.numpy() + 1 for name, a in arrays.items()})
    trained["echo"] = arrays["w"]  # unchanged: the SuperNode holds its chunks already
    context.state["seen"] = MetricRecord({"n": len(context.state.get("seen", {})) + 1})
    info = ConfigRecord({
        "node": context.node_id,
        "run": context.run_id,
        "data": context.node_config["data-path"],
        "epochs-type": type(context.run_config["epochs"]).__name__,
        "token-visible": "POLLEN_APP_TOKEN" in os.environ,
        "gpus": [str(g) for g in context.gpus],
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "-"),
    })
    return Message(RecordDict({"arrays": trained, "info": info, "metrics": MetricRecord({"num-examples": 10})}), reply_to=msg)

@app.query()
def query(msg, context):
    import time
    time.sleep(60)  # a hung handler

@app.evaluate()
def evaluate(msg, context):
    return RecordDict({"metrics": MetricRecord({"loss": 0.5})})
"""


def bundle(tmp_path, source, name="site_app"):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return str(tmp_path)


def instruction(arrays, message_type="train"):
    return Message(RecordDict({"arrays": ArrayRecord(arrays)}), dst_node_id="x", message_type=message_type)


@pytest.fixture
def io():
    server = FakeClientAppIo(node_config={"data-path": "/data/site-1"}, run_config={"epochs": 2})
    yield server
    server.stop()


def finish(proc, timeout=20):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_a_clientapp_trains_on_chunked_arrays_and_replies(io, tmp_path):
    proc = io.start_runner(bundle(tmp_path, APP), "site_app:app", extra_env={"POLLEN_GPUS": "1,3", "CUDA_VISIBLE_DEVICES": "1,3"})
    w = np.arange(CHUNK_SIZE // 4 * 2 + 3, dtype="f4")  # three chunks
    sent = io.send(instruction({"w": w, "b": np.zeros((2, 3), "f2")}))
    reply = io.reply()
    assert reply.error is None, reply.error
    m = reply.metadata
    assert (m.reply_to_message_id, m.src_node_id, m.dst_node_id, m.message_type) == (sent.metadata.message_id, "1234", "0", "train")
    arrays = reply.content["arrays"]
    assert np.array_equal(arrays["w"].numpy(), w + 1) and arrays["b"].numpy().dtype == np.float16
    assert np.array_equal(arrays["echo"].numpy(), w)
    info = dict(reply.content["info"])
    assert info == {
        "node": "1234",
        "run": "run-1",
        "data": "/data/site-1",
        "epochs-type": "int",
        "token-visible": False,
        "gpus": ["1", "3"],
        "cuda": "1,3",
    }
    # Only the instruction's chunks were asked about; the new model's were pushed without asking.
    assert set(io.asked) == set(sent.content.records[0].arrays.arrays[0].chunk_ids)
    assert len(io.pushed) == 3
    # State lives as long as the process; a RecordDict reply is wrapped.
    io.send(instruction({"w": np.zeros(1, "f4")}, "evaluate"))
    assert dict(io.reply().content["metrics"]) == {"loss": 0.5}
    io.end_run()
    assert finish(proc)[0] == 0


def test_an_exception_becomes_an_error_reply_and_the_app_keeps_serving(io, tmp_path):
    io.run_config["fail"] = config_value_to_wire(True)
    proc = io.start_runner(bundle(tmp_path, APP), "site_app:app")
    io.send(instruction({"w": np.zeros(3, "f4")}))
    reply = io.reply()
    assert reply.error.code == "CLIENT_APP_RAISED_EXCEPTION"
    assert reply.error.reason == "ValueError: boom at the site"
    io.send(instruction({"w": np.zeros(3, "f4")}).with_metadata(message_type="evaluate"))
    assert io.reply().error is None
    io.end_run()
    code, _, err = finish(proc)
    assert code == 0
    assert "Traceback" in err and "boom at the site" in err  # the node's log keeps the traceback


@pytest.mark.parametrize(
    "source, ref, code, text",
    [
        ("import not_installed_anywhere\n", "site_app:app", "APP_LOAD_FAILED", "ModuleNotFoundError: No module named 'not_installed_anywhere'"),
        ("def broken(:\n", "site_app:app", "APP_LOAD_FAILED", "SyntaxError"),
        ("from pollen import ClientApp\nmy_app = ClientApp()\n", "site_app:app", "APP_EXPORT_MISSING", "no attribute 'app'; its ClientApp is 'my_app'"),
        ("app = 42\n", "site_app:app", "APP_EXPORT_MISSING", "'app' is a int"),
        ("", "", "APP_EXPORT_MISSING", "POLLEN_APP_REF is empty"),
    ],
)
def test_an_app_that_cannot_load_refuses_every_instruction(io, tmp_path, source, ref, code, text):
    proc = io.start_runner(bundle(tmp_path, source), ref)
    for _ in range(2):
        io.send(instruction({"w": np.zeros(CHUNK_SIZE, "u1")}))  # chunked: never fetched
        reply = io.reply()
        assert reply.error.code == code
        assert text in reply.error.reason
        assert "then start the run again" in reply.error.reason
    assert io.asked == []
    io.end_run()
    assert finish(proc)[0] == 0


def test_a_chunk_that_does_not_match_its_id_gets_an_error_reply(io, tmp_path):
    proc = io.start_runner(bundle(tmp_path, APP), "site_app:app")
    sent = io.send(instruction({"w": np.ones(CHUNK_SIZE, "u1")}))
    io.chunks[sent.content.records[0].arrays.arrays[0].chunk_ids[0]] = b"\x00" * CHUNK_SIZE
    reply = io.reply()
    assert reply.error.code == "CHUNK_MISMATCH"
    io.end_run()
    assert finish(proc)[0] == 0


def test_chunks_the_node_vouches_for_are_not_hashed_again(io, tmp_path):
    # As the SuperNode starts it: its store holds only chunks hashed on the way in.
    proc = io.start_runner(bundle(tmp_path, APP), "site_app:app", extra_env={"POLLEN_CHUNKS_VERIFIED": "1"})
    sent = io.send(instruction({"w": np.ones(CHUNK_SIZE, "u1")}))
    cid = sent.content.records[0].arrays.arrays[0].chunk_ids[0]
    ones, io.chunks[cid] = io.chunks[cid], b"\x00" * CHUNK_SIZE
    wire = io.results.get(timeout=20)
    assert wire.WhichOneof("body") == "content"  # the node's word taken: no CHUNK_MISMATCH
    # It used the node's bytes: its "echo" of them (zeros) is the one chunk new to the node.
    assert io.pushed == [hashlib.sha256(b"\x00" * CHUNK_SIZE).hexdigest()]
    io.chunks[cid] = ones
    io.end_run()
    assert finish(proc)[0] == 0


def test_sigterm_ends_a_waiting_runner(io, tmp_path):
    proc = io.start_runner(bundle(tmp_path, APP), "site_app:app")
    io.send(instruction({"w": np.zeros(1, "f4")}, "evaluate"))
    io.reply()  # it is up and waiting for the next instruction
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0
    assert time.monotonic() - started < 5


def test_sigterm_ends_a_hung_handler(io, tmp_path):
    proc = io.start_runner(bundle(tmp_path, APP), "site_app:app")
    io.send(instruction({"w": np.zeros(1, "f4")}, "query"))
    deadline = time.monotonic() + 20
    while io.tasks and time.monotonic() < deadline:  # until the runner has taken it
        time.sleep(0.05)
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0
    assert time.monotonic() - started < 5


def test_a_wrong_token_ends_the_runner_with_the_servers_reason(io, tmp_path):
    proc = io.start_runner(bundle(tmp_path, APP), "site_app:app", token="wrong")
    code, _, err = finish(proc)
    assert code != 0
    assert "PullTask failed: UNAUTHENTICATED: APP_TOKEN_INVALID" in err


def test_usage_and_missing_settings(capsys):
    assert main([]) == 2 and USAGE in capsys.readouterr().err
    r = subprocess.run([__import__("sys").executable, "-m", "pollen._runner", "clientapp"], env={"PYTHONPATH": __import__("fake_appio").SDK}, capture_output=True, text=True)
    assert r.returncode == 1 and "POLLEN_APPIO_URL is not set" in r.stderr


def test_send_pushes_new_chunks_unasked_and_known_ones_only_if_the_node_lacks_them(io):
    from pollen._appio import ClientAppIo
    from pollen._wire import WireReader, chunk_ids_of

    new, kept, lost = (np.full(CHUNK_SIZE, v, "u1") for v in (1, 2, 3))
    known = [hashlib.sha256(a.tobytes()).hexdigest() for a in (kept, lost)]
    io.chunks[known[0]] = kept.tobytes()  # the node still holds the instruction's first chunk only
    client = ClientAppIo(f"http://127.0.0.1:{io.port}", "t" * 43, "run-1")
    try:
        reply = instruction({"a": new, "b": kept, "c": lost, "d": new})
        wire = client.send(reply, known=known)
    finally:
        client.close()
    new_id = hashlib.sha256(new.tobytes()).hexdigest()
    assert chunk_ids_of(wire) == [new_id, *known]
    assert sorted(io.asked) == sorted(known)
    assert io.pushed == [new_id, known[1]]  # each once; the kept chunk not at all
    reader = WireReader(wire)
    for cid in reader.chunk_ids:
        reader.put(cid, io.chunks[cid])
    arrays = reader.message().content["arrays"]
    assert [int(arrays[n].numpy()[0]) for n in "abcd"] == [1, 2, 3, 1]
