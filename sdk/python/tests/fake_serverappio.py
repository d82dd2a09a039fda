"""An in-process ServerAppIo server (a real grpc server on 127.0.0.1:0) that plays the SuperLink
for a Python ServerApp: it hands instructions to in-process ClientApps (one per node, through the
wire form and chunks, each node's uploads in its own scope) and keeps rounds, artefacts and how
the run finished."""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent import futures
from typing import Dict, List, Optional, Tuple

import grpc

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SDK not in sys.path:
    sys.path.insert(0, SDK)

from pollen._chunks import decode_chunk, encode_chunk  # noqa: E402
from pollen._proto.pollen.v1 import appio_pb2, records_pb2  # noqa: E402
from pollen._wire import config_value_to_wire, message_from_wire, message_to_wire  # noqa: E402
from pollen.client_app import ClientApp  # noqa: E402
from pollen.context import Context  # noqa: E402

TOKEN = "s" * 43
RUN_ID = "run-9"
SERVER = "server"


class FakeServerAppIo:
    def __init__(self, nodes: Dict[str, ClientApp], run_config: Optional[dict] = None, corrupt: Tuple[str, ...] = ()) -> None:
        self.nodes = nodes
        self.contexts = {n: Context(run_id=RUN_ID, node_id=n, run_config=dict(run_config or {})) for n in nodes}
        self.run_config = run_config or {}
        self.corrupt = corrupt  # nodes whose reply chunks are spoiled on the way
        self.chunks: Dict[Tuple[str, str], bytes] = {}  # (scope, id) -> bytes
        self.replies: Dict[str, records_pb2.Message] = {}
        self.rounds: List[records_pb2.RoundMetrics] = []
        self.finished: Optional[Tuple[str, str]] = None
        self.artefacts: Dict[str, bytes] = {}
        self.stopped = False
        self.pushed: List[str] = []
        self.asked: List[str] = []
        self.sources: List[str] = []
        self.lock = threading.Lock()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
        )
        ident = lambda b: b  # noqa: E731

        def unary(fn, req, res):
            return grpc.unary_unary_rpc_method_handler(fn, req.FromString, res.SerializeToString)

        handlers = {
            "GetRunInfo": unary(self._run_info, appio_pb2.GetRunInfoRequest, appio_pb2.GetRunInfoResponse),
            "GetNodes": unary(self._nodes, appio_pb2.GetNodesRequest, appio_pb2.GetNodesResponse),
            "PushInstructions": unary(self._push, appio_pb2.PushInstructionsRequest, appio_pb2.PushInstructionsResponse),
            "PullReplies": unary(self._pull, appio_pb2.PullRepliesRequest, appio_pb2.PullRepliesResponse),
            "ReportRound": unary(self._report, appio_pb2.ReportRoundRequest, appio_pb2.ReportRoundResponse),
            "FinishRun": unary(self._finish, appio_pb2.FinishRunRequest, appio_pb2.FinishRunResponse),
            "SaveArtefact": unary(self._save, appio_pb2.SaveArtefactRequest, appio_pb2.SaveArtefactResponse),
            "MissingChunks": unary(self._missing, records_pb2.MissingChunksRequest, records_pb2.MissingChunksResponse),
            "PushChunks": grpc.stream_unary_rpc_method_handler(self._push_chunks, ident, records_pb2.PushChunksResponse.SerializeToString),
            "PullChunks": grpc.unary_stream_rpc_method_handler(self._pull_chunks, records_pb2.PullChunksRequest.FromString, ident),
        }
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("pollen.v1.ServerAppIo", handlers)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop(None)

    def _auth(self, context) -> Dict[str, str]:
        md = dict(context.invocation_metadata())
        if md.get("authorization") != f"Bearer {TOKEN}" or md.get("pollen-run-id") != RUN_ID:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "APP_TOKEN_INVALID: The ServerApp token is not valid")
        return md

    def _run_info(self, req, context):
        self._auth(context)
        run = records_pb2.Run(run_id=RUN_ID)
        for k, v in self.run_config.items():
            run.run_config[k].CopyFrom(config_value_to_wire(v))
        return appio_pb2.GetRunInfoResponse(run=run)

    def _nodes(self, req, context):
        self._auth(context)
        return appio_pb2.GetNodesResponse(node_ids=list(self.nodes))

    def _push(self, req, context):
        self._auth(context)
        ids = []
        for wire in req.messages:
            node = wire.metadata.dst_node_id
            assert wire.metadata.run_id == RUN_ID
            message = message_from_wire(wire, lambda cid: self.chunks.get((SERVER, cid)))
            reply = self.nodes[node].handle(message, self.contexts[node])
            out, chunks = message_to_wire(reply)
            for cid, data in chunks.items():
                data = bytes(data)
                if node in self.corrupt:
                    data = b"x" + data[1:]
                self.chunks[(node, cid)] = data
            self.replies[wire.metadata.message_id] = out
            ids.append(wire.metadata.message_id)
        return appio_pb2.PushInstructionsResponse(message_ids=ids)

    def _pull(self, req, context):
        self._auth(context)
        out = [self.replies.pop(i) for i in req.message_ids if i in self.replies]
        return appio_pb2.PullRepliesResponse(messages=out, run_stopped=self.stopped)

    def _report(self, req, context):
        self._auth(context)
        self.rounds.append(req.round)
        return appio_pb2.ReportRoundResponse()

    def _finish(self, req, context):
        self._auth(context)
        self.finished = (req.sub_status, req.reason)
        return appio_pb2.FinishRunResponse()

    def _save(self, req, context):
        self._auth(context)
        data = b"".join(self.chunks[(SERVER, cid)] for cid in req.chunk_ids)
        assert len(data) == req.size
        self.artefacts[req.name] = data
        return appio_pb2.SaveArtefactResponse()

    def _missing(self, req, context):
        self._auth(context)
        self.asked.extend(req.chunk_ids)
        return records_pb2.MissingChunksResponse(chunk_ids=[c for c in req.chunk_ids if (SERVER, c) not in self.chunks])

    def _push_chunks(self, stream, context):
        self._auth(context)
        for raw in stream:
            cid, data = decode_chunk(raw)
            self.pushed.append(cid)
            self.chunks[(SERVER, cid)] = bytes(data)
        return records_pb2.PushChunksResponse()

    def _pull_chunks(self, req, context):
        md = self._auth(context)
        source = md.get("pollen-chunk-source", SERVER)
        self.sources.append(source)
        for cid in req.chunk_ids:
            data = self.chunks.get((source, cid))
            if data is not None:
                yield encode_chunk(cid, data)


def wait_until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)
