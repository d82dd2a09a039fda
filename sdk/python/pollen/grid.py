"""Grid: how a ServerApp reaches the nodes of its run (Flower's ``Grid``).

    ids = grid.get_node_ids()
    messages = [grid.create_message(content, "train", node_id, group_id="1") for node_id in ids]
    replies = grid.send_and_receive(messages, timeout=600)

In a run the Grid speaks ServerAppIo to the SuperLink (``_remote_grid.RemoteGrid``);
``InMemoryGrid`` routes to ClientApps in this process, for tests and simulations.
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from .client_app import ClientApp
from .context import Context
from .message import SERVER_NODE_ID, Message, MessageError
from .records import RecordDict


class Grid(ABC):
    """The nodes of one run, and the messages to and from them."""

    run_id: str = ""

    @abstractmethod
    def get_node_ids(self) -> List[str]:
        """Ids of the nodes that take part in the run now."""

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: str,
        group_id: str = "",
        ttl: Optional[float] = None,
    ) -> Message:
        """An instruction for one node, stamped with this run."""
        message = Message(content, dst_node_id=str(dst_node_id), message_type=message_type, group_id=group_id, ttl=ttl)
        return message.with_metadata(run_id=self.run_id)

    @abstractmethod
    def send(self, messages: Iterable[Message]) -> List[str]:
        """Queue instructions; their message ids, in order."""

    @abstractmethod
    def pull(self, message_ids: Iterable[str]) -> List[Message]:
        """The replies to these instructions that have arrived (each returned once)."""

    @abstractmethod
    def send_and_receive(self, messages: Iterable[Message], *, timeout: Optional[float] = None) -> List[Message]:
        """Send, then wait up to ``timeout`` seconds (default: the messages' TTL) for every reply;
        the replies that arrived."""

    def report_round(self, server_round: int, metrics: Mapping[str, float], node_ids: Sequence[str]) -> None:
        """Store a round's metrics with the run (``pollen list --run-id``); a grid without a run keeps none."""

    # Flower's names for send and pull, so ported ServerApps run unchanged.
    def push_messages(self, messages: Iterable[Message]) -> List[str]:
        return self.send(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> List[Message]:
        return self.pull(message_ids)


def check_instruction(message: Message) -> None:
    """What an instruction must be: a Message with content, from the server, not a reply."""
    if not isinstance(message, Message):
        raise MessageError("send() takes Message objects")
    m = message.metadata
    if message.content is None:
        raise MessageError(f"Message {m.message_id}: an instruction must carry content")
    if m.reply_to_message_id:
        raise MessageError("A reply cannot be sent as an instruction")
    if m.src_node_id != SERVER_NODE_ID:
        raise MessageError(f"The source must be the server ({SERVER_NODE_ID})")


class InMemoryGrid(Grid):
    """ClientApps in this process, one Context (and state) per node for the life of the grid.
    Content is deep-copied both ways, as over a network.

        grid = InMemoryGrid({"1": client_app, "2": client_app}, run_config={"num-server-rounds": 2})
    """

    def __init__(
        self,
        nodes: Mapping[str, ClientApp],
        run_id: str = "simulation",
        run_config: Optional[Mapping[str, object]] = None,
        node_configs: Optional[Mapping[str, Mapping[str, object]]] = None,
    ) -> None:
        self.run_id = run_id
        self._apps = dict(nodes)
        if SERVER_NODE_ID in self._apps:
            raise MessageError(f"Node id {SERVER_NODE_ID} is the server's")
        self._contexts = {
            node: Context(
                run_id=run_id,
                node_id=node,
                node_config=dict((node_configs or {}).get(node, {})),  # type: ignore[arg-type]
                run_config=dict(run_config or {}),  # type: ignore[arg-type]
            )
            for node in self._apps
        }
        self._replies: Dict[str, Message] = {}
        self.rounds: List[dict] = []

    def get_node_ids(self) -> List[str]:
        return sorted(self._apps)

    def send(self, messages: Iterable[Message]) -> List[str]:
        ids = []
        for message in messages:
            check_instruction(message)
            node = message.metadata.dst_node_id
            if node not in self._apps:
                raise MessageError(f"Node {node} is not in the grid")
            instruction = Message(copy.deepcopy(message.content), metadata=message.metadata)
            reply = self._apps[node].handle(instruction, self._contexts[node])
            self._replies[message.metadata.message_id] = Message(
                copy.deepcopy(reply.content), error=reply.error, metadata=reply.metadata
            )
            ids.append(message.metadata.message_id)
        return ids

    def pull(self, message_ids: Iterable[str]) -> List[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: Optional[float] = None) -> List[Message]:
        return self.pull(self.send(messages))

    def report_round(self, server_round: int, metrics: Mapping[str, float], node_ids: Sequence[str]) -> None:
        self.rounds.append({"round": server_round, "metrics": dict(metrics), "node_ids": list(node_ids), "at": time.time()})
