"""Prefix routes against path tricks, end to end (issue item 3): with `/admin` answered 403 and
`/` proxied, no spelling of /admin reaches the upstream, and the upstream receives the
normalised path. Real sluice binary, raw sockets, the h11 upstream of tests/upstream.py.
nginx under the same spellings: 0 of them reach the upstream."""

from __future__ import annotations

import json
import signal
import socket

import pytest

from support import Sluice, Upstream, free_port, simple_config


ROUTES = [
    {"name": "admin", "match": {"path_prefix": "/admin"},
     "direct_response": {"status": 403, "body": "forbidden\n"}},
    {"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]},
]


def get(port: int, target: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def proxied_path(body: bytes) -> str:
    return json.loads(body)["path"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One upstream and two listeners: the defaults, and `escaped_slashes: keep`."""
    up = Upstream()
    config = simple_config(free_port(), {"up": [up.address]}, routes=ROUTES)
    main = config["listeners"][0]
    keep = dict(main, name="keep", address=f"127.0.0.1:{free_port()}",
                paths={"escaped_slashes": "keep"})
    config["listeners"].append(keep)
    proc = Sluice(config, tmp_path_factory.mktemp("sluice"))
    ports = {"main": int(main["address"].rsplit(":", 1)[1]),
             "keep": int(keep["address"].rsplit(":", 1)[1])}
    yield ports
    proc.stop(signal.SIGTERM)
    up.stop()


# The spellings (and more): each must be refused by the /admin route (403) or be a 400.
ATTACKS = [b"/%61dmin/", b"//admin/", b"/./admin/", b"/x/../admin/", b"/x/..%2fadmin/",
           b"/%2e/admin/", b"/.%2fadmin/", b"/%2Fadmin/", b"/%2e%2e/admin/", b"/x/.%2e/admin/",
           b"/../admin/", b"///admin", b"/x/..%5cadmin/", b"/x/..\\admin/", b"/%c0%ae/admin/",
           b"/%61%64%6D%69%6E", b"/x//../admin/"]


@pytest.mark.parametrize("target", ATTACKS)
def test_no_spelling_of_admin_reaches_the_upstream(servers, target):
    status, _ = get(servers["main"], target)
    assert status in (400, 403), target


@pytest.mark.parametrize("target, status", [
    (b"/x/..%2fadmin/", 400), (b"/%2Fadmin/", 400), (b"/x/..%5cadmin/", 400), (b"/a\\b", 400),
    (b"/%zz", 400), (b"/a%4", 400), (b"/%00", 400), (b"/%c0%ae/", 400),
])
def test_malformed_or_escaped_separators_are_400(servers, target, status):
    assert get(servers["main"], target)[0] == status


@pytest.mark.parametrize("target, forwarded", [
    (b"/echo/./a/../b//c?q=%2e%2e", "/echo/b/c?q=%2e%2e"),  # query as is
    (b"/%65cho/%7e%3b", "/echo/~%3B"),
    (b"/echo/%252e", "/echo/%252e"),
])
def test_the_upstream_gets_the_normalised_path(servers, target, forwarded):
    status, body = get(servers["main"], target)
    assert status == 200 and proxied_path(body) == forwarded


def test_keep_forwards_escaped_slashes_as_data(servers):
    status, body = get(servers["keep"], b"/x/..%2fadmin/")
    assert status == 200 and proxied_path(body) == "/x/..%2Fadmin/"
    assert get(servers["keep"], b"/x/../admin/")[0] == 403
