"""A WebSocket server and client for the WebSocket oracle test (PyPI websockets).

    websocket_peer.py serve PORT              echoes on 127.0.0.1:PORT until killed
    websocket_peer.py call PORT PATH MODE     one conversation, then exits

MODE is "plain" (no extension) or "deflate" (permessage-deflate, which the
server accepts when offered). The conversation: a text message, a binary one
of every byte value, a 70,000-byte binary one (a 64-bit length), a text
message the client sends in three fragments, one the server sends in three
(asked for by "fragments please"), a ping answered by a pong; then "close
please" makes the server close with 4001 "asked" (plain), or the client
closes with 1000 "done" (deflate). Keepalive pings are off, so every frame is
one the test expects.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for message in ws:
            if message == "fragments please":
                await ws.send(["frag", "ment", "ed reply"])
            elif message == "close please":
                await ws.close(code=4001, reason="asked")
            else:
                await ws.send(message)
    except ConnectionClosed:
        pass


async def server(port):
    async with serve(echo, "127.0.0.1", port, ping_interval=None):
        await asyncio.get_running_loop().create_future()


async def client(port, path, mode):
    compression = "deflate" if mode == "deflate" else None
    uri = f"ws://127.0.0.1:{port}{path}"
    async with connect(uri, compression=compression, ping_interval=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        every_byte = bytes(range(256))
        await ws.send(every_byte)
        assert await ws.recv() == every_byte
        big = bytes(i % 251 for i in range(70000))
        await ws.send(big)
        assert await ws.recv() == big
        await ws.send(["three ", "frag", "ments"])
        assert await ws.recv() == "three fragments"
        await ws.send("fragments please")
        assert await ws.recv() == "fragmented reply"
        pong = await ws.ping(b"are you there")
        await pong
        if mode == "deflate":
            await ws.close(code=1000, reason="done")
        else:
            await ws.send("close please")
            try:
                await ws.recv()
            except ConnectionClosed as closed:
                assert closed.rcvd.code == 4001, closed


def main():
    command, port = sys.argv[1], int(sys.argv[2])
    if command == "serve":
        asyncio.run(server(port))
    elif command == "call":
        asyncio.run(client(port, sys.argv[3], sys.argv[4]))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
