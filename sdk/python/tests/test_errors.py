"""Every error the SDK raises is a PollenError with a stable code, a message and a hint; the
refusals stay ValueErrors (and AppIo failures RuntimeErrors) for code that catches those."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from fake_appio import RUN_ID, FakeClientAppIo

from pollen import ArrayRecord, PollenError
from pollen._appio import AppIoError, ClientAppIo
from pollen._chunks import ChunkError
from pollen._wire import PayloadTooLarge
from pollen.client_app import ClientApp
from pollen.errors import describe
from pollen.message import MessageError
from pollen.records import RecordError


def test_sdk_refusals_are_pollen_errors_with_their_code():
    with pytest.raises(RecordError) as e:
        ArrayRecord({"w": np.zeros(2, np.complex64)})
    assert isinstance(e.value, PollenError) and isinstance(e.value, ValueError)
    assert e.value.code == "RECORD_INVALID" and str(e.value) == f"RECORD_INVALID: {e.value.message}"
    for error, code in [
        (MessageError("bad"), "MESSAGE_INVALID"),
        (PayloadTooLarge("big"), "PAYLOAD_TOO_LARGE"),
        (ChunkError("CHUNK_MISSING", "gone"), "CHUNK_MISSING"),
    ]:
        assert isinstance(error, PollenError) and isinstance(error, ValueError) and error.code == code
    assert describe(RecordError("w is bad", "Send float32.")) == "RECORD_INVALID: w is bad"
    assert describe(KeyError("x")) == "KeyError: 'x'"


def test_an_appio_failure_carries_the_peers_code():
    server = FakeClientAppIo()
    try:
        io = ClientAppIo(server.url, "wrong", RUN_ID)
        with pytest.raises(AppIoError) as e:
            io.pull_task(wait_ms=0)
        io.close()
    finally:
        server.stop()
    assert isinstance(e.value, PollenError) and isinstance(e.value, RuntimeError)
    assert e.value.code == "APP_TOKEN_INVALID" and e.value.status == grpc.StatusCode.UNAUTHENTICATED
    assert str(e.value).startswith("APP_TOKEN_INVALID: PullTask failed: UNAUTHENTICATED: ")


def test_a_clientapp_error_reply_names_a_pollen_errors_code_once():
    app = ClientApp()
    assert app._reason(RecordError("Array w is bad")) == "RECORD_INVALID: Array w is bad"
