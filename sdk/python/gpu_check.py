#!/usr/bin/env python3
"""GPU check: the PyTorch example's ClientApp trains on ``cuda`` through the Python SDK.

For a GPU machine that has Python (numpy, grpcio, protobuf, torch with CUDA) but no Node.js:
an in-process ClientAppIo (a real grpc server on 127.0.0.1, the test double of the SDK's own
tests) plays the SuperNode. It starts ``python -m pollen._runner clientapp`` as a SuperNode
would, with the GPU given to the run (POLLEN_GPUS, CUDA_VISIBLE_DEVICES), sends train
instructions carrying the example's model, and reads the replies. It prints:

- the device the app trained on and the time per training step (per optimizer step: a batch);
- a bit-exact check of each reply's arrays: decoded and encoded again, they give the same wire
  form (dtype, shape, byte count, inline bytes or SHA-256 chunk ids) the app sent;
- a bit-exact round trip of every dtype through the wire, and through a tensor on the device.

Without CUDA it runs the same on CPU and says ``cuda not available — ran on cpu``. The digits
are synthetic (no download): the check measures the path, not the accuracy.

    python3 sdk/python/gpu_check.py [--example DIR] [--rounds N] [--examples N] [--json]

Exits 0 when every check passes, 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "tests")]

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from google.protobuf import __version__ as protobuf_version  # noqa: E402

from fake_appio import NODE_ID, FakeClientAppIo  # noqa: E402
from pollen import ArrayRecord, ConfigRecord, Message, RecordDict  # noqa: E402
from pollen._proto.pollen.v1 import records_pb2  # noqa: E402
from pollen._wire import message_from_wire, message_to_wire  # noqa: E402
from pollen.records import DTYPES  # noqa: E402

EXAMPLE = os.path.join(HERE, "..", "..", "examples", "pytorch-mnist")
APP_REF = "pytorch_mnist.client_app:app"
# The example's run config (pyproject.toml [tool.pollen.app.config]) for one local epoch.
RUN_CONFIG = {"seed": 42, "local-epochs": 1, "batch-size": 32, "partitioning": "iid"}
LEARNING_RATE = 0.003
WIRE_CHANGED = "the reply's arrays do not encode back to the wire form the app sent"
# What the app process needs of this environment besides what a SuperNode sets.
PASSED_ENV = ("PATH", "LD_LIBRARY_PATH", "HOME", "CUDA_HOME", "CUDA_MODULE_LOADING", "NVIDIA_DRIVER_CAPABILITIES")


def synthetic_digits(folder: str, n: int, seed: int) -> None:
    """An mnist.npz as the example's prepare_data.py writes it (x uint8 N×28×28, y labels)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 64, size=(n, 28, 28), dtype=np.uint8)
    for digit in range(10):  # a bright bar per class, so the loss can fall
        x[y == digit, 2 + 2 * digit : 4 + 2 * digit, :] = 255
    np.savez(os.path.join(folder, "mnist.npz"), x=x, y=y.astype(np.int64))


def wire_form(wire: records_pb2.Message) -> List[Tuple[str, str, str, Tuple[int, ...], int, bytes, Tuple[str, ...]]]:
    """Every array of a message as it travels: record, name, dtype, shape, nbytes, inline, chunk ids."""
    return [
        (r.name, a.name, a.dtype, tuple(a.shape), a.nbytes, bytes(a.inline), tuple(a.chunk_ids))
        for r in wire.content.records
        if r.WhichOneof("record") == "arrays"
        for a in r.arrays.arrays
    ]


def over_the_wire(message: Message, **sizes: int) -> Message:
    """Encode, serialise, parse and decode ``message``, as two processes would."""
    wire, chunks = message_to_wire(message, **sizes)
    parsed = records_pb2.Message.FromString(wire.SerializeToString())
    return message_from_wire(parsed, lambda cid: chunks.get(cid))


def sample(dtype: str, shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random elements of ``dtype`` from random bytes (every bit pattern, NaN payloads included)."""
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(rng.bytes(size), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def check_dtypes(torch: Any, device: str) -> Tuple[Dict[str, str], List[str]]:
    """Each dtype through the wire (inline and chunked, odd shapes) and through a tensor on ``device``:
    the failures, and the dtypes this torch has no tensors for."""
    rng = np.random.default_rng(13)
    failures: Dict[str, str] = {}
    skipped: List[str] = []
    for dtype in DTYPES:
        arrays = {f"{dtype}/{i}": sample(dtype, shape, rng) for i, shape in enumerate([(), (0, 3), (7, 5), (70001,)])}
        for sizes in ({}, {"inline_max": 0, "chunk_size": 64}):
            content = RecordDict({"a": ArrayRecord(dict(arrays))})
            back = over_the_wire(Message(content, dst_node_id=NODE_ID, message_type="train"), **sizes)
            for name, x in arrays.items():
                got = back.content["a"][name].numpy()  # type: ignore[union-attr,index]
                if got.dtype != x.dtype or got.shape != x.shape or got.tobytes() != x.tobytes():
                    failures[dtype] = f"{name} changed through the wire ({sizes or 'inline'})"
        try:
            tensor = torch.from_numpy(arrays[f"{dtype}/2"].copy()).to(device)
        except Exception:  # noqa: BLE001 - a dtype this torch build has no tensors for (uint16/32/64 before 2.3)
            skipped.append(dtype)
            continue
        try:
            back_arrays = over_the_wire(
                Message(RecordDict({"t": ArrayRecord({"x": tensor})}), dst_node_id=NODE_ID, message_type="train")
            )
            restored = back_arrays.content["t"].to_torch_state_dict()["x"].to(device)  # type: ignore[union-attr]
            if restored.cpu().numpy().tobytes() != arrays[f"{dtype}/2"].tobytes():
                failures[dtype] = f"a {device} tensor changed through the wire"
        except Exception as e:  # noqa: BLE001 - reported, not raised: the other checks still run
            failures[dtype] = f"a {device} tensor could not go through the wire: {type(e).__name__}: {e}"
    return failures, skipped


def train_rounds(
    fake: FakeClientAppIo, initial: ArrayRecord, rounds: int, batch_size: int
) -> Tuple[List[float], List[int], List[str], ArrayRecord]:
    """Send ``rounds`` train instructions in turn; seconds per step, steps, wire problems, last arrays."""
    per_step: List[float] = []
    steps: List[int] = []
    problems: List[str] = []
    arrays = initial
    for server_round in range(1, rounds + 1):
        config = ConfigRecord({"learning-rate": LEARNING_RATE, "server-round": server_round})
        started = time.perf_counter()
        fake.send(Message(RecordDict({"arrays": arrays, "config": config}), dst_node_id=NODE_ID, message_type="train"))
        wire = fake.results.get(timeout=600)
        elapsed = time.perf_counter() - started
        if wire.WhichOneof("body") == "error":
            raise RuntimeError(f"the ClientApp answered {wire.error.code}: {wire.error.reason}")
        reply = message_from_wire(wire, lambda cid: fake.chunks.get(cid))
        again, _ = message_to_wire(reply)
        if wire_form(again) != wire_form(wire):
            problems.append(f"round {server_round}: {WIRE_CHANGED}")
        arrays = reply.content["arrays"]  # type: ignore[index,assignment]
        shapes = [(n, a.dtype, tuple(a.shape)) for n, a in arrays.items()]
        if shapes != [(n, a.dtype, tuple(a.shape)) for n, a in initial.items()]:
            problems.append(f"round {server_round}: the reply's arrays are not the model's")
        if not all(np.isfinite(a.numpy()).all() for a in arrays.values()):
            problems.append(f"round {server_round}: the reply holds non-finite weights")
        n = int(reply.content["metrics"]["num-examples"])  # type: ignore[index]
        steps.append(math.ceil(n / batch_size) * int(RUN_CONFIG["local-epochs"]))
        per_step.append(elapsed / steps[-1])
    if rounds > 0 and all(
        a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(arrays.values(), initial.values())
    ):
        problems.append("training left the model unchanged")
    return per_step, steps, problems, arrays


def run_app(example: str, data: str, gpus: str, rounds: int) -> Dict[str, Any]:
    """The example's ClientApp in its own process, trained ``rounds`` times with GPUs ``gpus``."""
    sys.path.insert(0, example)
    from pytorch_mnist.task import new_model  # the example's own model

    initial = ArrayRecord(new_model(int(RUN_CONFIG["seed"])).state_dict())
    node_config = {"partition-id": 0, "num-partitions": 1, "data-path": data}
    fake = FakeClientAppIo(node_config=node_config, run_config=RUN_CONFIG)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update({"POLLEN_GPUS": gpus, "CUDA_VISIBLE_DEVICES": gpus or os.environ.get("CUDA_VISIBLE_DEVICES", "")})
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""  # as a SuperNode does for a run without a GPU
    proc = fake.start_runner(example, APP_REF, extra_env=env)
    try:
        per_step, steps, problems, _ = train_rounds(fake, initial, rounds, int(RUN_CONFIG["batch-size"]))
        fake.end_run()
        code = proc.wait(timeout=60)
        if code != 0:
            problems.append(f"the app process exited with {code}")
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
        fake.stop()
    if problems and stderr:
        problems.append("app stderr: " + stderr[-2000:])
    return {
        "first_step_s": per_step[0] if per_step else None,
        # Round 1 pays for imports and CUDA start-up; the later rounds are the steady state.
        "step_s": statistics.median(per_step[1:] or per_step) if per_step else None,
        "steps_per_round": steps[0] if steps else 0,
        "problems": problems,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--example", default=EXAMPLE, help="the pytorch-mnist example folder")
    parser.add_argument("--rounds", type=int, default=3, help="train instructions per device (default 3)")
    parser.add_argument("--examples", type=int, default=4000, help="synthetic digits (default 4000)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    result: Dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "protobuf": protobuf_version,
        "grpcio": grpc.__version__,
        "torch": torch.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
        "note": "" if cuda else "cuda not available — ran on cpu",
    }
    result["dtype_failures"], result["dtypes_without_tensors"] = check_dtypes(torch, device)
    example = os.path.abspath(args.example)
    with tempfile.TemporaryDirectory(prefix="pollen-gpu-check-") as data:
        synthetic_digits(data, args.examples, int(RUN_CONFIG["seed"]))
        runs = [("train", "0" if cuda else "")] + ([("train_cpu", "")] if cuda else [])
        for key, gpus in runs:  # with CUDA, the same rounds on this machine's CPU for comparison
            try:
                result[key] = run_app(example, data, gpus, args.rounds)
            except ImportError as e:
                why = f"the example at {example} cannot be imported ({e}); --example names the pytorch-mnist folder"
                result[key] = {"first_step_s": None, "step_s": None, "steps_per_round": 0, "problems": [why]}
                break
            except RuntimeError as e:  # the app answered with an error reply
                result[key] = {"first_step_s": None, "step_s": None, "steps_per_round": 0, "problems": [str(e)]}
    problems = [f"dtype {d}: {why}" for d, why in result["dtype_failures"].items()]
    problems += result["train"]["problems"] + result.get("train_cpu", {}).get("problems", [])
    result["bit_exact"] = (
        not result["dtype_failures"]
        and result["train"]["steps_per_round"] > 0
        and not any(p.endswith(WIRE_CHANGED) for p in problems)
    )
    result["ok"] = not problems
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0 if result["ok"] else 1


def print_report(r: Dict[str, Any]) -> None:
    print(f"Python {r['python']}, numpy {r['numpy']}, protobuf {r['protobuf']}, grpcio {r['grpcio']}, torch {r['torch']}")
    print(f"device: {r['device']} ({r['device_name']})" + (f" — {r['note']}" if r["note"] else ""))
    for key, label in (("train", r["device"]), ("train_cpu", "cpu")):
        t = r.get(key)
        if t and t["step_s"] is not None:
            print(
                f"time per step on {label}: {t['step_s'] * 1000:.2f} ms "
                f"({t['steps_per_round']} steps of batch {RUN_CONFIG['batch-size']} per round; "
                f"round 1: {t['first_step_s'] * 1000:.2f} ms per step)"
            )
    tensors = f" (no {', '.join(r['dtypes_without_tensors'])} tensors in this torch)" if r["dtypes_without_tensors"] else ""
    print(f"dtypes through the wire: {len(DTYPES) - len(r['dtype_failures'])}/{len(DTYPES)} bit-exact{tensors}")
    replies = "bit-exact" if r["bit_exact"] else "DIFFERENT" if r["train"]["steps_per_round"] else "not checked (no reply)"
    print(f"reply arrays' wire form: {replies}")
    for p in r["train"]["problems"] + r.get("train_cpu", {}).get("problems", []):
        print(f"problem: {p}")
    print("OK" if r["ok"] else "FAILED")


if __name__ == "__main__":
    sys.exit(main())
