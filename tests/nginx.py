"""nginx with deploy/nginx/users-api.conf, as an operator installs it, on a test's ports."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.installed import CHECKOUT
from tests.servers import running, wait_for

NGINX = Path("/usr/sbin/nginx")


@contextmanager
def nginx(
    folder: Path, port: int, upstreams: tuple[int, int], *, shorter: Mapping[str, str] = {}
) -> Iterator[str]:
    """deploy/nginx/users-api.conf as an operator installs it, on this test's ports, with the
    timeouts named in `shorter` (`{"client_header_timeout": "2s"}`) shortened for a test."""
    assert NGINX.exists(), "nginx is missing: apt-get install nginx (.ci/run does)"
    site = (CHECKOUT / "deploy" / "nginx" / "users-api.conf").read_text()
    shortened = [
        (re.search(rf"{name} \S+;", site)[0], f"{name} {value};")  # type: ignore[index]
        for name, value in shorter.items()
    ]
    for old, new in [
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("127.0.0.1:8081", f"127.0.0.1:{upstreams[0]}"),
        ("127.0.0.1:8082", f"127.0.0.1:{upstreams[1]}"),
        *shortened,
    ]:
        assert old in site
        site = site.replace(old, new)
    folder.mkdir()
    (folder / "users-api.conf").write_text(site)
    temp_paths = (
        " ".join(
            f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi")
        )
        + f" uwsgi_temp_path {folder / 'uwsgi'}; scgi_temp_path {folder / 'scgi'};"
    )
    (folder / "nginx.conf").write_text(
        f"daemon off; worker_processes 2; pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; {temp_paths} include {folder / 'users-api.conf'}; }}\n"
    )
    command = [str(NGINX), "-p", str(folder), "-c", str(folder / "nginx.conf")]
    with running(command, folder / "stdout.log"):
        wait_for(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
            "nginx",
        )
        yield f"http://127.0.0.1:{port}"
