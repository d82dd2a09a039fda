"""The baseline of bench/python-appio.ts: a plain grpcio loopback echo (server and client in this
process, Debian's grpcio), the same bytes in the same 4 MiB messages, no Pollen code.

    python3 bench/python/grpc_echo.py MIB REPS   -> one JSON line: {"seconds": [...], "cpu": S}
"""

import json
import os
import sys
import time
from concurrent import futures

import grpc

PIECE = 4 * 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


def main(mib: int, reps: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=OPTIONS)
    ident = lambda b: b  # noqa: E731
    store = {}

    def push(requests, _context):
        for i, raw in enumerate(requests):
            store[i] = raw
        return b""

    def pull(_request, _context):
        for i in range(len(store)):
            yield store[i]

    handlers = {
        "Push": grpc.stream_unary_rpc_method_handler(push, ident, ident),
        "Pull": grpc.unary_stream_rpc_method_handler(pull, ident, ident),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo.Echo", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)
    push_call = channel.stream_unary("/echo.Echo/Push", request_serializer=ident, response_deserializer=ident)
    pull_call = channel.unary_stream("/echo.Echo/Pull", request_serializer=ident, response_deserializer=ident)
    data = os.urandom(mib * 1024 * 1024)
    view = memoryview(data)
    seconds = []
    cpu0 = time.process_time()
    for _ in range(reps):
        store.clear()
        start = time.perf_counter()
        # As Pollen does: each piece becomes its own bytes message (one copy), sent and echoed back.
        push_call(bytes(view[at : at + PIECE]) for at in range(0, len(view), PIECE))
        received = sum(len(piece) for piece in pull_call(b""))
        seconds.append(time.perf_counter() - start)
        assert received == len(data)
    channel.close()
    server.stop(0)
    # CPU seconds per round of this process: client and server together.
    print(json.dumps({"seconds": seconds, "cpu": (time.process_time() - cpu0) / reps}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
