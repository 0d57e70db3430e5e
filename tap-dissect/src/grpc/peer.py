"""A tiny gRPC server and client for the HTTP/2 oracle test (grpcio, no stubs).

    grpc_peer.py serve PORT   serves demo.Greeter on 127.0.0.1:PORT until killed
    grpc_peer.py call PORT    makes a unary call, a server-streaming call and a
                              call that fails with NOT_FOUND, then exits

Messages are protobuf bytes written by hand: field 1 as a string (SayHello)
or a varint (Count), so no protoc or grpcio-tools is needed.
"""

import sys
import time
from concurrent import futures

import grpc


def string_field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def varint_field(number, value):
    out = bytes([number << 3])
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def say_hello(request, context):
    # request is {1: name}; the answer {1: "hello " + name}.
    name = request[2:].decode()
    return string_field(1, "hello " + name)


def count(request, context):
    # request is {1: n} with n < 128: one varint byte.
    n = request[1]
    for i in range(n):
        yield varint_field(1, i + 1)


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def serve(port):
    handlers = {
        "SayHello": grpc.unary_unary_rpc_method_handler(say_hello),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.Greeter", handlers),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def call(port):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        hello = channel.unary_unary("/demo.Greeter/SayHello")
        reply = hello(string_field(1, "kubetap"), timeout=10)
        assert reply == string_field(1, "hello kubetap"), reply
        stream = channel.unary_stream("/demo.Greeter/Count")
        replies = list(stream(varint_field(1, 3), timeout=10))
        assert len(replies) == 3, replies
        failing = channel.unary_unary("/demo.Greeter/Fail")
        try:
            failing(b"", timeout=10)
            raise SystemExit("Fail did not fail")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
        # Let the last frames (trailers, GOAWAY) reach the wire before the channel closes.
        time.sleep(0.2)


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "serve":
        serve(port)
    else:
        call(port)
