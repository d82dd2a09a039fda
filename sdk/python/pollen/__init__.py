"""Pollen's Python SDK: write a ClientApp or ServerApp in Python (Flower's Message API).

The SuperNode puts this package on an app's PYTHONPATH; it needs numpy, grpcio and protobuf
(and PyTorch only for apps that use ``ArrayRecord(model.state_dict())``).
"""

from importlib import import_module
from importlib.util import find_spec
from typing import Any

from .client_app import ClientApp
from .context import Context
from .errors import PollenError
from .message import Error, Message, MessageType, Metadata
from .records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

# The ServerApp side loads on first use, so a ClientApp process never imports it.
_LAZY = {
    "ServerApp": "server_app",
    "Grid": "grid",
    "FedAvg": "strategy",
    "FedProx": "strategy",
    "run": "control",
}

__all__ = [
    "Array",
    "ArrayRecord",
    "ClientApp",
    "ConfigRecord",
    "Context",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "PollenError",
    "RecordDict",
    # `from pollen import *` offers the ServerApp side where it is installed.
    *(name for name, module in _LAZY.items() if find_spec(f"{__name__}.{module}") is not None),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pollen' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
