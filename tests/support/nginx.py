"""nginx with deploy/nginx/, as an operator installs it, on a test's ports."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.installed import CHECKOUT
from tests.support.servers import running, wait_for

NGINX = Path("/usr/sbin/nginx")
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
"""Debian's libnginx-mod-stream: the stream front of deploy/nginx/users-api.stream.conf."""
DEPLOY = CHECKOUT / "deploy" / "nginx"
SOCKET = "unix:/run/nginx-users-api.sock"
"""Where the stream front hands connections to the HTTP server: `HTTP_SOCKET` in a test's folder."""
HTTP_SOCKET = "http.sock"


@contextmanager
def nginx(
    folder: Path, port: int, upstreams: tuple[int, int], *, shorter: Mapping[str, str] = {}
) -> Iterator[str]:
    """deploy/nginx/ as an operator installs it (nginx.conf, with the stream front and the HTTP
    server it includes), on this test's ports, with the timeouts named in `shorter`
    (`{"client_header_timeout": "2s"}`) shortened for a test."""
    assert NGINX.exists(), "nginx is missing: apt-get install nginx (.ci/run does)"
    assert STREAM_MODULE.exists(), "apt-get install libnginx-mod-stream (.ci/run does)"
    folder.mkdir()
    site = (DEPLOY / "users-api.conf").read_text()
    shortened = [
        (re.search(rf"{name} \S+;", site)[0], f"{name} {value};")  # type: ignore[index]
        for name, value in shorter.items()
    ]
    sock = f"unix:{folder / HTTP_SOCKET}"
    temp_paths = " ".join(
        f"{kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    changes = {
        "users-api.stream.conf": [("listen 8080 ", f"listen 127.0.0.1:{port} "), (SOCKET, sock)],
        "users-api.conf": [
            (SOCKET, sock),
            ("127.0.0.1:8081", f"127.0.0.1:{upstreams[0]}"),
            ("127.0.0.1:8082", f"127.0.0.1:{upstreams[1]}"),
            *shortened,
        ],
        "nginx.conf": [
            # Workers as root: the socket is in this test's folder, which only root may enter.
            ("user www-data;", "daemon off; user root;"),
            ("/run/nginx.pid", str(folder / "nginx.pid")),
            ("/var/log/nginx/error.log;", f"{folder / 'error.log'} warn;"),
            ("include /etc/nginx/modules-enabled/*.conf;", f"load_module {STREAM_MODULE};"),
            ("access_log /var/log/nginx/access.log;", f"access_log off; {temp_paths}"),
            ("/etc/nginx/conf.d/*.conf", str(folder / "users-api.conf")),
            ("/etc/nginx/stream.d/*.conf", str(folder / "users-api.stream.conf")),
        ],
    }
    for name, replacements in changes.items():
        text = (DEPLOY / name).read_text()
        for old, new in replacements:
            assert text.count(old) == 1, (name, old)
            text = text.replace(old, new)
        (folder / name).write_text(text)
    command = [str(NGINX), "-p", str(folder), "-c", str(folder / "nginx.conf")]
    with running(command, folder / "stdout.log"):
        wait_for(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
            "nginx",
        )
        yield f"http://127.0.0.1:{port}"
