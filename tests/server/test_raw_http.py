"""Raw HTTP, written by hypothesis, at real servers: whatever the path, headers and body, the
answer is never a 5xx and the server logs no ERROR (an ERROR is a fault of the server's own)."""

from __future__ import annotations

import json
import socket
import string
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api import API_KEY, AUTH
from tests.support.profile import scaled
from tests.support.servers import Server, serve

UNLIMITED = {
    "USERS_RATE_LIMIT_WRITES": "1000000/second",
    "USERS_RATE_LIMIT_REQUESTS": "1000000/second",
}

LONG_NUMBER = st.sampled_from([1001, 4000, 4301, 6000]).map(lambda digits: "9" * digits)
"""Past the 4,300 digits Python converts, or near them."""
TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1)
"""RFC 9110's token: a method or a header name."""
SEGMENT = st.one_of(
    st.sampled_from(
        [
            "users",
            "healthz",
            "readyz",
            "metrics",
            "ui",
            "openapi.json",
            "",
            "..",
            "%00",
            "%ff",
            "%2F",
        ]
    ),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    LONG_NUMBER,
    st.text(max_size=12).map(lambda text: quote(text, safe="")),
)
PATH = st.one_of(
    st.builds(
        str.format,
        st.sampled_from(
            ["/users/{}", "/users?{}", "/{}/users", "/users/{}/", "//users/{}", "/ui/{}"]
        ),
        SEGMENT,
    ),
    st.sampled_from(["/users", "/healthz", "/readyz", "/metrics", "/openapi.json", "/ui/", "/"]),
    st.lists(SEGMENT, min_size=1, max_size=4).map(lambda segments: "/" + "/".join(segments)),
)
"""The service's own paths with a part replaced, or any path at all."""
QUERY = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["limit", "cursor", "username", "limit[]"]), st.text(max_size=8)),
        st.one_of(
            st.integers(min_value=-(10**25), max_value=10**25).map(str),
            LONG_NUMBER,
            st.text(max_size=12),
        ),
    ),
    max_size=4,
).map(lambda pairs: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs))
FIELD_VALUE = st.binary(max_size=60).map(
    lambda raw: bytes(b for b in raw if b in FIELD_BYTES).strip(b" \t")
)
FIELD_BYTES = set(range(0x20, 0x7F)) | set(range(0x80, 0x100)) | {0x09}
"""What a field value may hold on the wire (RFC 9110 section 5.5): no CR, LF or NUL."""
HEADER = st.one_of(
    st.tuples(
        st.sampled_from(
            [
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "Authorization",
                "X-Request-ID",
                "Accept",
                "X-Forwarded-For",
                "Origin",
            ]
        ),
        st.one_of(
            FIELD_VALUE,
            st.sampled_from(
                [b"application/json", b"APPLICATION/JSON", b'"1"', b"*", b'W/"1", "2"']
            ),
            LONG_NUMBER.map(lambda number: f'"{number}"'.encode()),
            st.sampled_from([b'"9223372036854775808"', b'"2147483648"', b'"\xd9\xa5"', b"\xb2"]),
        ),
    ),
    st.tuples(TOKEN, FIELD_VALUE),
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["username", "id", "x"]) | st.text(max_size=6), children, max_size=4
        )
    ),
    max_leaves=12,
)
BODY = st.one_of(
    st.just(b""),
    JSON_VALUE.map(lambda value: json.dumps(value).encode()),
    st.text(max_size=30).map(lambda name: json.dumps({"username": name}).encode()),
    LONG_NUMBER.map(lambda number: b'{"username": "kramer", "n": ' + number.encode() + b"}"),
    st.binary(max_size=200),
)


@pytest.fixture(scope="module", params=["async", "flask"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    flavour: str = request.param
    with serve(
        tmp_path_factory.mktemp(flavour),
        "--app",
        flavour,
        env=UNLIMITED | {"USERS_LOG_FORMAT": "json"},
    ) as running:
        for username in ("cosmo", "kramer", "elaine"):  # users 1 to 3, for PUT and DELETE to find
            httpx.post(f"{running.url}/users", json={"username": username}, headers=AUTH)
        yield running


@settings(
    derandomize=True,  # the same requests on every run: CI stays repeatable
    max_examples=scaled(300, 60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.one_of(
        st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"]), TOKEN
    ),
    path=PATH,
    query=QUERY,
    headers=st.lists(HEADER, max_size=12),
    keyed=st.booleans(),
    typed=st.booleans(),
    body=BODY,
)
def test_no_request_gets_a_5xx(
    server: Server,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, bytes]],
    keyed: bool,
    typed: bool,
    body: bytes,
) -> None:
    target = path + (f"?{query}" if query and "?" not in path else "")
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers]
    if keyed:
        lines.append(f"Authorization: Bearer {API_KEY}".encode())
    if typed:
        lines.append(b"Content-Type: application/json")
    if method in ("GET", "HEAD", "DELETE"):
        body = b""
    lines.append(f"Content-Length: {len(body)}".encode())
    status = _exchange(server, b"\r\n".join(lines) + b"\r\n\r\n" + body)
    assert status is None or status < 500, (status, target, headers)


def test_the_servers_logged_no_error(server: Server) -> None:
    """Run after the requests above (pytest keeps a file's order). A traceback or a failure to
    log would be a plain-text line among the JSON ones."""
    errors = [line for line in _log(server) if line.get("level") == "ERROR"]
    assert errors == []
    assert "Traceback" not in server.output()
    assert "Logging error" not in server.output()


def _exchange(server: Server, request: bytes) -> int | None:
    """The response's status, or None if the server closed without one."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        with suppress(OSError):  # a server may answer, and close, before it has read it all
            connection.sendall(request)
        received = b""
        while b"\r\n" not in received:
            chunk = connection.recv(4096)
            if not chunk:
                return None
            received += chunk
    status_line = received.split(b"\r\n", 1)[0].split(b" ")
    return int(status_line[1])


def _log(server: Server) -> Iterator[dict[str, object]]:
    # Lines end at "\n" only: a JSON string may hold U+2028 or U+0085, which splitlines() splits at.
    for line in Path(server.log).read_text().split("\n"):
        if line.startswith("{"):
            yield json.loads(line)
