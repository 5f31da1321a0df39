"""Attack: a path_regex with catastrophic backtracking must not stall a worker.

`/(a+)+$` against `/aaa...a!` takes Python's backtracking `re` time exponential in the number of
a's (20 s for 29 bytes); RE2 answers in time linear in the path. Each test sends the attack on one
connection and then a plain request on a second connection to the same single worker: if the
worker were stuck in the regex, neither would complete within the test's timeout. No timing is
asserted, only that the answers come and are right (the regex route on a match, the fallback
otherwise).
"""
from __future__ import annotations

import socket

import pytest

from support import free_port, simple_config

EVIL = "/(a+)+$"


def config() -> dict:
    routes = [
        {"name": "evil", "match": {"path_regex": EVIL},
         "direct_response": {"status": 200, "body": "evil"}},
        {"name": "fallback", "match": {"path_prefix": "/"},
         "direct_response": {"status": 404, "body": "fallback"}},
    ]
    cfg = simple_config(free_port(), routes=routes)
    cfg["listeners"][0]["limits"] = {"max_uri_bytes": 16384}
    return cfg


def exchange(port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("length", [33, 10_000])
def test_backtracking_regex_does_not_stall_the_worker(start_sluice, length):
    s = start_sluice(config())  # one worker: a stalled regex would block every connection
    attack = "/" + "a" * length + "!"
    assert exchange(s.port, attack) == (404, b"fallback")
    assert exchange(s.port, "/" + "a" * length) == (200, b"evil")
    assert exchange(s.port, "/other") == (404, b"fallback")


def test_attack_and_a_second_connection_are_both_served(start_sluice):
    s = start_sluice(config())
    attacker = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    try:
        attacker.sendall(b"GET /" + b"a" * 10_000 + b"! HTTP/1.1\r\nHost: a\r\n\r\n")
        assert exchange(s.port, "/aaaa") == (200, b"evil")
        head = b""
        while b"fallback" not in head:
            chunk = attacker.recv(65536)
            assert chunk, "the attacker's connection closed without an answer"
            head += chunk
        assert head.startswith(b"HTTP/1.1 404")
    finally:
        attacker.close()


@pytest.mark.parametrize("pattern, reason", [
    (r"/(a)\1", "backreferences are not supported"),
    (r"/(?=admin)", "lookahead and lookbehind are not supported"),
    (r"/a++", "possessive quantifiers are not supported"),
])
def test_a_pattern_re2_cannot_run_is_refused_at_validation(tmp_path, pattern, reason):
    import subprocess
    import sys

    import yaml

    from support import ROOT

    cfg = config()
    cfg["routes"][0]["match"]["path_regex"] = pattern
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "engine", "validate", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "routes[0].match.path_regex: not supported by RE2 (linear-time matching): " in text
    assert reason in text
