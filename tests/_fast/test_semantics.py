"""engine/_fast/semantics.pyx: the request rules explain shares with the proxy."""
from engine._fast.semantics import cookie_value, rewrite_target, route_host


def test_route_host_lowercases_and_strips_the_port():
    assert route_host(b"API.Example.COM:8080") == b"api.example.com"
    assert route_host(b"[::1]:8080") == b"[::1]"
    assert route_host(b"[::1]") == b"[::1]"
    assert route_host(b"a" * 256) is None


def test_rewrite_target_keeps_an_absolute_path():
    assert rewrite_target(b"/api/", b"/", b"/api/x?q=1") == b"/x?q=1"
    assert rewrite_target(b"/api/", b"", b"/api/x") == b"/x"
    assert rewrite_target(b"/api/", b"/v2/", b"/other") == b"/other"
    assert rewrite_target(None, None, b"/p") == b"/p"


def test_cookie_value_reads_one_cookie():
    assert cookie_value(b"a=1; user=bob; c=3", b"user") == b"bob"
    assert cookie_value(b"a=1", b"user") is None
    assert cookie_value(None, b"user") is None
