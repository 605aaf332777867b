"""Real faults in front of the service's dependencies, on loopback: a TCP proxy to stall or kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.support.servers import free_port, running, wait_for


@dataclass
class Proxy:
    port: int
    process: subprocess.Popen[bytes]

    def stall(self) -> None:
        """Accepts still, answers nothing: a database or Redis that hangs."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@contextmanager
def proxy_to(target_port: int, *, port: int | None = None) -> Iterator[Proxy]:
    """A running `tests.support.tcp_proxy` from `port` (any free one) to `127.0.0.1:target_port`;
    killed on the way out."""
    port = port or free_port()
    command = [sys.executable, "-m", "tests.support.tcp_proxy", str(port), str(target_port)]
    with running(command) as process:
        wait_for(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
            "the proxy",
            seconds=10,
        )
        yield Proxy(port, process)
