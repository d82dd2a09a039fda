"""Message: the unit of work between a ServerApp and its ClientApps (Flower's ``Message``).

A message carries either content (a RecordDict) or an error, and metadata that says where it
goes and what it answers. Node ids are strings; the ServerApp side is ``SERVER_NODE_ID``.

    reply = Message(content=RecordDict({"arrays": arrays}), reply_to=msg)
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Optional

from .errors import CodedError
from .records import RecordDict

SERVER_NODE_ID = "0"
DEFAULT_TTL_SECONDS = 3600.0
MESSAGE_TYPES = ("train", "evaluate", "query")


class MessageType:
    """The message types a ClientApp answers (Flower's names)."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    QUERY = "query"


class MessageError(CodedError, ValueError):
    """A message refused as invalid (code MESSAGE_INVALID, as in the TypeScript SDK)."""

    CODE = "MESSAGE_INVALID"


@dataclass(frozen=True)
class Error:
    """An error reply: a stable code (e.g. ``CLIENT_APP_RAISED_EXCEPTION``) and a public reason."""

    code: str
    reason: str = ""


@dataclass(frozen=True)
class Metadata:
    run_id: str
    message_id: str
    src_node_id: str
    dst_node_id: str
    reply_to_message_id: str
    group_id: str
    ttl: float
    message_type: str
    # Seconds since the Unix epoch (Flower's unit; the wire carries milliseconds).
    created_at: float


def _check(m: Metadata) -> Metadata:
    for key in ("run_id", "message_id", "src_node_id", "dst_node_id", "reply_to_message_id", "group_id"):
        value = getattr(m, key)
        if not isinstance(value, str) or len(value) > 256:
            raise MessageError(f"Message {key} must be a string of at most 256 characters")
    if m.message_id == "":
        raise MessageError("Message message_id must not be empty")
    if m.dst_node_id == "":
        raise MessageError("Message dst_node_id must not be empty")
    if m.message_type not in MESSAGE_TYPES:
        raise MessageError(f"Message message_type must be one of {', '.join(MESSAGE_TYPES)}")
    if not isinstance(m.ttl, (int, float)) or not 0 <= m.ttl < float("inf"):
        raise MessageError("Message ttl must be a non-negative number of seconds")
    if not isinstance(m.created_at, (int, float)) or not 0 <= m.created_at < float("inf"):
        raise MessageError("Message created_at must be a time in seconds")
    return m


class Message:
    """Content or an error, with metadata. Three ways to make one (as in Flower):

    - ``Message(content, dst_node_id=..., message_type="train")``: an instruction (ServerApp);
    - ``Message(content, reply_to=msg)``: a reply (ClientApp);
    - ``Message(error, reply_to=msg)``: an error reply.
    """

    __slots__ = ("metadata", "content", "error")

    def __init__(
        self,
        content: Optional[RecordDict | Error] = None,
        dst_node_id: Optional[str] = None,
        message_type: Optional[str] = None,
        *,
        error: Optional[Error] = None,
        reply_to: Optional["Message"] = None,
        ttl: Optional[float] = None,
        group_id: Optional[str] = None,
        metadata: Optional[Metadata] = None,
    ) -> None:
        if isinstance(content, Error):
            content, error = None, content
        if (content is None) == (error is None):
            raise MessageError("A message holds either content or an error")
        if content is not None and not isinstance(content, RecordDict):
            raise MessageError("Message content must be a RecordDict")
        if error is not None and (not isinstance(error.code, str) or not error.code or not isinstance(error.reason, str)):
            raise MessageError("A message error needs a code and a reason")
        if metadata is None:
            if reply_to is not None:
                if dst_node_id is not None or message_type is not None:
                    raise MessageError("A reply takes its destination and type from reply_to")
                metadata = _reply_metadata(reply_to.metadata, ttl)
            else:
                if dst_node_id is None or message_type is None:
                    raise MessageError("A new message needs dst_node_id and message_type (or reply_to=)")
                metadata = Metadata(
                    run_id="",
                    message_id=str(uuid.uuid4()),
                    src_node_id=SERVER_NODE_ID,
                    dst_node_id=str(dst_node_id),
                    reply_to_message_id="",
                    group_id=group_id or "",
                    ttl=DEFAULT_TTL_SECONDS if ttl is None else float(ttl),
                    message_type=message_type,
                    created_at=time.time(),
                )
        self.metadata = _check(metadata)
        self.content = content
        self.error = error

    def has_content(self) -> bool:
        return self.content is not None

    def has_error(self) -> bool:
        return self.error is not None

    def is_expired(self, now: Optional[float] = None) -> bool:
        now = time.time() if now is None else now
        return now >= self.metadata.created_at + self.metadata.ttl

    def with_metadata(self, **changes: object) -> "Message":
        return Message(self.content, error=self.error, metadata=replace(self.metadata, **changes))

    def __repr__(self) -> str:
        m = self.metadata
        body = f"error={self.error!r}" if self.error else f"content={self.content!r}"
        return f"Message({m.message_type} {m.src_node_id}->{m.dst_node_id}, {body})"


def _reply_metadata(to: Metadata, ttl: Optional[float]) -> Metadata:
    now = time.time()
    # A reply lives as long as the instruction it answers has left, unless told otherwise.
    left = max(0.0, to.created_at + to.ttl - now)
    return Metadata(
        run_id=to.run_id,
        message_id=str(uuid.uuid4()),
        src_node_id=to.dst_node_id,
        dst_node_id=to.src_node_id,
        reply_to_message_id=to.message_id,
        group_id=to.group_id,
        ttl=left if ttl is None else float(ttl),
        message_type=to.message_type,
        created_at=now,
    )
