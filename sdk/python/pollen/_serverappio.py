"""The ServerAppIo calls of a ServerApp process: cleartext gRPC to its SuperLink on loopback,
the per-run token on every call (methods called by name; test/python-proto.test.ts checks them)."""

from __future__ import annotations

from typing import List, Optional

import grpc

from ._appio import _OPTIONS, Chunks, Metadata, _target, invoke
from ._proto.pollen.v1 import appio_pb2, records_pb2

# The node whose uploads a chunk read wants (a reply's arrays are in that node's scope).
CHUNK_SOURCE_HEADER = "pollen-chunk-source"


class ServerAppIo:
    def __init__(self, url: str, token: str, run_id: str) -> None:
        self.channel = grpc.insecure_channel(_target(url), options=_OPTIONS)
        self.metadata: Metadata = (("authorization", f"Bearer {token}"), ("pollen-run-id", run_id))
        self.chunks = Chunks(self.channel, "ServerAppIo", self.metadata)
        self._source_chunks: dict = {}

        def unary(name: str, request: type, response: type):
            return self.channel.unary_unary(
                name, request_serializer=request.SerializeToString, response_deserializer=response.FromString
            )

        self._get_run_info = unary("/pollen.v1.ServerAppIo/GetRunInfo", appio_pb2.GetRunInfoRequest, appio_pb2.GetRunInfoResponse)
        self._get_nodes = unary("/pollen.v1.ServerAppIo/GetNodes", appio_pb2.GetNodesRequest, appio_pb2.GetNodesResponse)
        self._push_instructions = unary(
            "/pollen.v1.ServerAppIo/PushInstructions", appio_pb2.PushInstructionsRequest, appio_pb2.PushInstructionsResponse
        )
        self._pull_replies = unary("/pollen.v1.ServerAppIo/PullReplies", appio_pb2.PullRepliesRequest, appio_pb2.PullRepliesResponse)
        self._report_round = unary("/pollen.v1.ServerAppIo/ReportRound", appio_pb2.ReportRoundRequest, appio_pb2.ReportRoundResponse)
        self._finish_run = unary("/pollen.v1.ServerAppIo/FinishRun", appio_pb2.FinishRunRequest, appio_pb2.FinishRunResponse)
        self._save_artefact = unary(
            "/pollen.v1.ServerAppIo/SaveArtefact", appio_pb2.SaveArtefactRequest, appio_pb2.SaveArtefactResponse
        )

    def chunks_of(self, node_id: str) -> Chunks:
        """Chunk calls that read node ``node_id``'s uploads for this run."""
        if node_id not in self._source_chunks:
            self._source_chunks[node_id] = Chunks(self.channel, "ServerAppIo", self.metadata + ((CHUNK_SOURCE_HEADER, node_id),))
        return self._source_chunks[node_id]

    def get_run_info(self) -> appio_pb2.GetRunInfoResponse:
        return invoke("GetRunInfo", self._get_run_info, appio_pb2.GetRunInfoRequest(), self.metadata)  # type: ignore[return-value]

    def get_nodes(self) -> List[str]:
        return list(invoke("GetNodes", self._get_nodes, appio_pb2.GetNodesRequest(), self.metadata).node_ids)  # type: ignore[attr-defined]

    def push_instructions(self, messages: List[records_pb2.Message]) -> List[str]:
        req = appio_pb2.PushInstructionsRequest(messages=messages)
        return list(invoke("PushInstructions", self._push_instructions, req, self.metadata).message_ids)  # type: ignore[attr-defined]

    def pull_replies(self, message_ids: List[str], wait_ms: int) -> appio_pb2.PullRepliesResponse:
        req = appio_pb2.PullRepliesRequest(message_ids=message_ids, wait_ms=wait_ms)
        # The SuperLink answers within wait_ms; the deadline only guards a stuck peer.
        return invoke("PullReplies", self._pull_replies, req, self.metadata, timeout=wait_ms / 1000 + 30)  # type: ignore[return-value]

    def report_round(self, round: records_pb2.RoundMetrics) -> None:  # noqa: A002 - the proto's name
        invoke("ReportRound", self._report_round, appio_pb2.ReportRoundRequest(round=round), self.metadata)

    def finish_run(self, sub_status: str, reason: str = "") -> None:
        invoke("FinishRun", self._finish_run, appio_pb2.FinishRunRequest(sub_status=sub_status, reason=reason), self.metadata)

    def save_artefact(self, name: str, hash: str, size: int, chunk_ids: List[str]) -> Optional[object]:  # noqa: A002
        req = appio_pb2.SaveArtefactRequest(name=name, hash=hash, size=size, chunk_ids=chunk_ids)
        return invoke("SaveArtefact", self._save_artefact, req, self.metadata)

    def close(self) -> None:
        self.channel.close()
