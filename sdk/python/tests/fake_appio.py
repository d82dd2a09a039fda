"""An in-process ClientAppIo server (a real grpc server on 127.0.0.1:0) that plays the SuperNode
for the runner: it queues instructions, holds chunks and collects replies."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from concurrent import futures
from typing import Dict, List, Optional

import grpc

from pollen._chunks import chunk_id, decode_chunk, encode_chunk
from pollen._proto.pollen.v1 import appio_pb2, records_pb2
from pollen._wire import WireReader, config_value_to_wire, message_to_wire
from pollen.message import Message

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "t" * 43
RUN_ID = "run-1"
NODE_ID = "1234"


class FakeClientAppIo:
    def __init__(self, node_config=None, run_config=None) -> None:
        self.tasks: List[records_pb2.Message] = []
        self.shutdown = False
        self.cond = threading.Condition()
        self.chunks: Dict[str, bytes] = {}
        self.results: "queue.Queue[records_pb2.Message]" = queue.Queue()
        self.asked: List[str] = []  # ids MissingChunks was asked about
        self.pushed: List[str] = []
        self.node_config = {k: config_value_to_wire(v) for k, v in (node_config or {}).items()}
        self.run_config = {k: config_value_to_wire(v) for k, v in (run_config or {}).items()}
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
        )
        ident = lambda b: b  # noqa: E731
        handlers = {
            "PullTask": grpc.unary_unary_rpc_method_handler(
                self._pull_task, appio_pb2.PullTaskRequest.FromString, appio_pb2.PullTaskResponse.SerializeToString
            ),
            "PushResult": grpc.unary_unary_rpc_method_handler(
                self._push_result, appio_pb2.PushResultRequest.FromString, appio_pb2.PushResultResponse.SerializeToString
            ),
            "MissingChunks": grpc.unary_unary_rpc_method_handler(
                self._missing, records_pb2.MissingChunksRequest.FromString, records_pb2.MissingChunksResponse.SerializeToString
            ),
            "PushChunks": grpc.stream_unary_rpc_method_handler(self._push_chunks, ident, records_pb2.PushChunksResponse.SerializeToString),
            "PullChunks": grpc.unary_stream_rpc_method_handler(self._pull_chunks, records_pb2.PullChunksRequest.FromString, ident),
        }
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("pollen.v1.ClientAppIo", handlers)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _auth(self, context: grpc.ServicerContext) -> None:
        md = dict(context.invocation_metadata())
        if md.get("authorization") != f"Bearer {TOKEN}" or md.get("pollen-run-id") != RUN_ID:
            # As Pollen's services answer: the code in a trailer and as the message's prefix.
            context.set_trailing_metadata((("pollen-error-code", "APP_TOKEN_INVALID"),))
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "APP_TOKEN_INVALID: The ClientApp token is not valid")

    def _pull_task(self, req, context):
        self._auth(context)
        deadline = time.monotonic() + min(req.wait_ms, 30_000) / 1000
        with self.cond:
            while not self.tasks and not self.shutdown and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            res = appio_pb2.PullTaskResponse(node_id=NODE_ID, shutdown=self.shutdown)
            for k, v in self.node_config.items():
                res.node_config[k].CopyFrom(v)
            for k, v in self.run_config.items():
                res.run_config[k].CopyFrom(v)
            if self.tasks and not self.shutdown:
                res.message.CopyFrom(self.tasks.pop(0))
            return res

    def _push_result(self, req, context):
        self._auth(context)
        self.results.put(req.message)
        return appio_pb2.PushResultResponse()

    def _missing(self, req, context):
        self._auth(context)
        self.asked.extend(req.chunk_ids)
        return records_pb2.MissingChunksResponse(chunk_ids=[c for c in req.chunk_ids if c not in self.chunks])

    def _push_chunks(self, requests, context):
        self._auth(context)
        n = size = 0
        for raw in requests:
            cid, data = decode_chunk(raw)
            if chunk_id(data) != cid:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "CHUNK_MISMATCH")
            self.chunks[cid] = bytes(data)
            self.pushed.append(cid)
            n, size = n + 1, size + len(data)
        return records_pb2.PushChunksResponse(stored=n, bytes=size)

    def _pull_chunks(self, req, context):
        self._auth(context)
        for cid in req.chunk_ids:
            if cid not in self.chunks:
                context.abort(grpc.StatusCode.NOT_FOUND, f"CHUNK_MISSING: {cid}")
            yield encode_chunk(cid, self.chunks[cid])

    # -- the test's side

    def send(self, message: Message) -> records_pb2.Message:
        """Queue an instruction (run id and node filled in), its chunks held here."""
        message = message.with_metadata(run_id=RUN_ID, dst_node_id=NODE_ID)
        wire, chunks = message_to_wire(message)
        for cid, data in chunks.items():
            self.chunks[cid] = bytes(data)
        with self.cond:
            self.tasks.append(wire)
            self.cond.notify_all()
        return wire

    def reply(self, timeout: float = 20) -> Message:
        wire = self.results.get(timeout=timeout)
        reader = WireReader(wire)
        for cid in reader.chunk_ids:
            reader.put(cid, self.chunks[cid])
        return reader.message()

    def end_run(self) -> None:
        with self.cond:
            self.shutdown = True
            self.cond.notify_all()

    def start_runner(self, bundle: str, app_ref: str, token: str = TOKEN, extra_env: Optional[dict] = None) -> subprocess.Popen:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "POLLEN_APPIO_URL": self.url,
            "POLLEN_APP_TOKEN": token,
            "POLLEN_RUN_ID": RUN_ID,
            "POLLEN_APP_REF": app_ref,
            "PYTHONPATH": f"{SDK}:{bundle}",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **(extra_env or {}),
        }
        return subprocess.Popen(
            [sys.executable, "-m", "pollen._runner", "clientapp"],
            cwd=bundle,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        self.server.stop(0)
