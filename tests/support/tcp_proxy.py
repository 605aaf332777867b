"""A TCP proxy in front of a database, to fault it: `python -m tests.support.tcp_proxy PORT TARGET`.

Stopped with SIGSTOP, it still accepts connections (the kernel does) but answers nothing: a
database that stalls. Killed, it refuses them: a database that is down. Loopback only.
"""

from __future__ import annotations

import asyncio
import sys


async def main(port: int, target_port: int) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def connect(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            relay(client_reader, server_writer), relay(server_reader, client_writer)
        )

    server = await asyncio.start_server(connect, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
