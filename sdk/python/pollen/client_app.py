"""ClientApp: the app that runs at each site (Flower's ``ClientApp`` with the Message API).

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        loss = train_locally(model, context.node_config["data-path"])
        content = RecordDict({
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"num-examples": n, "train-loss": loss}),
        })
        return Message(content=content, reply_to=msg)

A handler may also return the reply's RecordDict. An exception in a handler becomes an error
reply (CLIENT_APP_RAISED_EXCEPTION), never a crash of the node.
"""

from __future__ import annotations

import sys
import traceback
from typing import Callable, Dict, Union

from .context import Context
from .errors import describe
from .message import MESSAGE_TYPES, Error, Message
from .records import RecordDict

Handler = Callable[[Message, Context], Union[Message, RecordDict]]

MAX_REASON_LENGTH = 1000


class ReplyErrorCode:
    """Codes a ClientApp puts in error replies (``reply.error.code``)."""

    CLIENT_APP_RAISED_EXCEPTION = "CLIENT_APP_RAISED_EXCEPTION"
    UNSUPPORTED_MESSAGE_TYPE = "UNSUPPORTED_MESSAGE_TYPE"
    MESSAGE_INVALID = "MESSAGE_INVALID"
    MESSAGE_EXPIRED = "MESSAGE_EXPIRED"


def clip(text: str, limit: int = MAX_REASON_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ClientApp:
    """One handler per message type, registered with ``@app.train()``, ``@app.evaluate()`` and
    ``@app.query()``.

    ``error_detail``: what an error reply says about an exception: ``"message"`` (default) its
    type and message (never the traceback, which goes to the node's log), ``"none"`` only that
    the app failed, for sites whose error messages might reveal local data.
    """

    def __init__(self, *, error_detail: str = "message") -> None:
        if error_detail not in ("message", "none"):
            raise ValueError('error_detail must be "message" or "none"')
        self._error_detail = error_detail
        self._handlers: Dict[str, Handler] = {}

    def _register(self, message_type: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            if not callable(handler):
                raise TypeError(f"The {message_type} handler must be a function")
            if message_type in self._handlers:
                raise ValueError(f"A {message_type} handler is already registered")
            self._handlers[message_type] = handler
            return handler

        return decorator

    def train(self) -> Callable[[Handler], Handler]:
        return self._register("train")

    def evaluate(self) -> Callable[[Handler], Handler]:
        return self._register("evaluate")

    def query(self) -> Callable[[Handler], Handler]:
        return self._register("query")

    @property
    def message_types(self) -> list:
        return [t for t in MESSAGE_TYPES if t in self._handlers]

    def __call__(self, message: Message, context: Context) -> Message:
        return self.handle(message, context)

    def handle(self, message: Message, context: Context) -> Message:
        """Answer one message. Never raises: a refused message or a failing handler becomes an
        error reply, so one bad round never takes the node down."""

        def fail(code: str, reason: str) -> Message:
            return Message(error=Error(code, reason), reply_to=message)

        m = message.metadata
        if m.dst_node_id != context.node_id:
            return fail(ReplyErrorCode.MESSAGE_INVALID, f"Message is for node {m.dst_node_id}, not {context.node_id}")
        if m.run_id != context.run_id:
            return fail(ReplyErrorCode.MESSAGE_INVALID, f"Message is for run {m.run_id}, not {context.run_id}")
        if message.is_expired():
            return fail(ReplyErrorCode.MESSAGE_EXPIRED, "Message expired before it was handled")
        if message.content is None:
            return fail(ReplyErrorCode.MESSAGE_INVALID, "Message carries no content")
        handler = self._handlers.get(m.message_type)
        if handler is None:
            return fail(ReplyErrorCode.UNSUPPORTED_MESSAGE_TYPE, f"This ClientApp has no {m.message_type} handler")
        try:
            result = handler(message, context)
        except Exception as e:  # noqa: BLE001 - any exception becomes an error reply
            traceback.print_exc(file=sys.stderr)  # the node's log keeps the traceback
            return fail(ReplyErrorCode.CLIENT_APP_RAISED_EXCEPTION, self._reason(e))
        if isinstance(result, RecordDict):
            return Message(content=result, reply_to=message)
        if isinstance(result, Message) and _answers(result, message):
            return result
        return fail(
            ReplyErrorCode.MESSAGE_INVALID,
            f"The {m.message_type} handler must return Message(content=..., reply_to=msg) or a RecordDict",
        )

    def _reason(self, e: BaseException) -> str:
        if self._error_detail == "none":
            return "The ClientApp raised an exception"
        return clip(describe(e))


def _answers(reply: Message, to: Message) -> bool:
    r, m = reply.metadata, to.metadata
    return (
        r.reply_to_message_id == m.message_id
        and r.dst_node_id == m.src_node_id
        and r.src_node_id == m.dst_node_id
        and r.run_id == m.run_id
        and r.message_type == m.message_type
    )
