"""The harness's own checks catch what they exist to catch (issue 4: a peer that fails its
warm-up check is reported, not silently measured). Needs nginx and wrk, like `python -m bench`."""

from __future__ import annotations

import shutil

import pytest

from bench.peers import Baseline, NginxProxy, Variant
from bench.run import BY_NAME, check_answers, warm_up

pytestmark = pytest.mark.skipif(not (shutil.which("nginx") and shutil.which("wrk")),
                                reason="needs nginx and wrk")


@pytest.mark.parametrize("bug", [False, True])
def test_keepalive_misuse_is_reported_as_churn(upstream, tmp_path, bug):
    peer = Baseline(("--keepalive-bug",) if bug else ())
    peer.start(Variant(), upstream, tmp_path)
    try:
        sc = BY_NAME["get"]
        assert check_answers(peer, sc) is None          # right answers: churn alone must show
        check = warm_up(peer, sc, upstream, 1.0, tmp_path / "unused")
        assert bool(check.get("churn")) == bug, check
        if bug:
            assert any("churn" in p for p in check["problems"])
    finally:
        peer.stop()


def test_wrong_body_is_caught(upstream, tmp_path):
    peer = Baseline()
    peer.start(Variant(), upstream, tmp_path)
    try:
        sc = BY_NAME["get16k"]
        assert check_answers(peer, sc) is None
        wrong = type(sc)(**{**sc.__dict__, "expect": sc.expect[:-1] + b"?"})
        assert "wrong body" in check_answers(peer, wrong)
    finally:
        peer.stop()


def test_tls_peer_is_checked_over_tls(upstream, tmp_path):
    peer = Baseline()                                   # plaintext: a TLS check must fail
    peer.start(Variant(), upstream, tmp_path)
    try:
        peer.scheme = "https"
        assert check_answers(peer, BY_NAME["tls"]) is not None
    finally:
        peer.stop()
    peer = NginxProxy()
    peer.start(Variant(tls=True), upstream, tmp_path)
    try:
        assert peer.url("/").startswith("https://")
        assert check_answers(peer, BY_NAME["tls"]) is None
        assert check_answers(peer, BY_NAME["tlsnew"]) is None
    finally:
        peer.stop()
