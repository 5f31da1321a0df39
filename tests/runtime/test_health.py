"""engine/runtime/health.py: the prober, in this process against real loopback servers: what a
probe calls a pass or a failure, the rule of the first verdict and the thresholds after it, and
reloads that keep (or forget) an endpoint's health."""
from __future__ import annotations

import asyncio
import copy
import logging

import pytest

from engine._fast.endpoints import HEALTHY, UNHEALTHY, UNKNOWN, Endpoints
from engine._fast.stats import Stats, endpoint_key
from engine.policy import check_data
from engine.runtime import health as H


def make_config(addresses, check=None, timeout="2s", **cluster):
    """A checked cluster (check={}: unchecked). The timeout is generous: a loaded machine must
    not turn a pass into "no answer"; the tests of silence give a short one."""
    check = check if check is not None else {"http": {"path": "/healthz"}}
    value = {
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
        "routes": [{"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "api"}]}],
        "clusters": [{"name": "api", "endpoints": [{"address": a} for a in addresses],
                      **({"health_check": {**check, "interval": timeout, "timeout": timeout}}
                         if check else {}), **cluster}],
    }
    result = check_data(value, "cfg.yaml")
    assert result.ok, [str(p) for p in result.problems]
    return result.config


async def serve(answer: bytes | None):
    """A server that answers every connection with `answer` (None: says nothing and waits)."""
    async def handle(reader, writer):
        await reader.read(4096)
        if answer is not None:
            writer.write(answer)
            await writer.drain()
            writer.close()
        else:
            await reader.read()        # until the prober gives up
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def refused_address() -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                          # nothing listens there now
    return f"127.0.0.1:{port}"


def probe_once(answer: bytes | None, check=None, address=None):
    async def main():
        server = None
        addr = address
        if addr is None:
            server, addr = await serve(answer)
        cfg = make_config([addr], check, "100ms" if answer is None else "2s")
        cluster = cfg.clusters[0]
        checker = H.HealthChecker(asyncio.get_running_loop(), Stats(max_workers=1),
                                  Endpoints(8192))
        target = H._Target(1, "api", cluster.endpoints[0].address, cluster.health_check, None)
        try:
            return await checker.probe(target)
        finally:
            if server is not None:
                server.close()
    return asyncio.run(main())


@pytest.mark.parametrize("answer, passed, why", [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", True, "status 200"),
    (b"HTTP/1.1 399 Whatever\r\n\r\n", True, "status 399"),
    (b"HTTP/1.0 503 Service Unavailable\r\n\r\n", False, "status 503, expected 200-399"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", True, "status 204"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", False, "not an HTTP/1.x answer"),
    (b"\x00\xff" * 1000, False, "not an HTTP/1.x answer"),
    (b"HTTP/1.1 200", False, "not an HTTP/1.x answer"),          # closed mid status line
    (b"", False, "not an HTTP/1.x answer"),                      # closed without a byte
    (b"HTTP/1.1 200 OK\r\n" + b"x-long: " + b"a" * 20000, False, "not an HTTP/1.x answer"),
    (None, False, "no answer within 100ms"),
])
def test_what_a_probe_calls_a_pass_or_a_failure(answer, passed, why):
    ok, reason = probe_once(answer)
    assert (ok, why in reason) == (passed, True), reason


def test_a_refused_connection_fails_and_a_tcp_check_passes_on_connect():
    assert probe_once(None, address=refused_address()) == (False, "connection refused")
    assert probe_once(b"", check={"tcp": {}}) == (True, "connected")


def test_expect_ranges_decide_and_host_is_sent():
    seen = []

    async def main():
        async def handle(reader, writer):
            seen.append(await reader.read(4096))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        cluster = make_config([addr], {"http": {"path": "/h?deep=1", "host": "api.internal",
                                                "expect": ["200"]}}).clusters[0]
        checker = H.HealthChecker(asyncio.get_running_loop(), Stats(max_workers=1), Endpoints())
        target = H._Target(1, "api", cluster.endpoints[0].address, cluster.health_check, None)
        result = await checker.probe(target)
        server.close()
        return result
    assert asyncio.run(main()) == (False, "status 204, expected 200")
    assert seen[0].startswith(b"GET /h?deep=1 HTTP/1.1\r\n") and b"host: api.internal" in seen[0]


def verdicts(results, healthy=2, unhealthy=3):
    """The health after each probe result, from a fresh (unknown) endpoint."""
    cfg = make_config(["127.0.0.1:1"], {"tcp": {}, "healthy_threshold": healthy,
                                        "unhealthy_threshold": unhealthy})
    cluster = cfg.clusters[0]
    shared = Endpoints(16)
    checker = H.HealthChecker(None, Stats(max_workers=1), shared)
    target = H._Target(3, "api", cluster.endpoints[0].address, cluster.health_check, None)
    out = []
    for passed in results:
        checker._verdict(target, passed, "why")
        out.append({UNKNOWN: "?", HEALTHY: "H", UNHEALTHY: "U"}[shared.health_py(3)])
    return "".join(out)


def test_the_first_verdict_decides_at_once_then_thresholds_apply():
    assert verdicts([True]) == "H"
    assert verdicts([False]) == "U"
    # healthy: 3 consecutive failures to go; a pass in between starts the count again
    assert verdicts([True, False, False, True, False, False, False]) == "HHHHHHU"
    # unhealthy: 2 consecutive passes to come back
    assert verdicts([False, True, False, True, True]) == "UUUUH"


def test_a_transition_is_logged_once_not_per_probe(caplog):
    caplog.set_level(logging.INFO, "sluice.health")
    verdicts([True, False, False, False, False, False, False, True, True, True])
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "is unhealthy" in m]) == 1
    assert len([m for m in lines if "is healthy" in m]) == 2      # first verdict, and again
    assert any("is unhealthy: why (3 consecutive failures)" in m for m in lines)


def test_a_reload_keeps_the_health_of_endpoints_that_stay_and_forgets_the_others():
    async def main():
        stats, shared = Stats(max_workers=1), Endpoints(8192)
        checker = H.HealthChecker(asyncio.get_running_loop(), stats, shared)
        a, b = "127.0.0.1:9001", "127.0.0.1:9002"
        slot = {x: stats.endpoint_slot(endpoint_key("api", x)) for x in (a, b)}
        checker.apply(make_config([a, b]))
        for t in checker.targets.values():
            t.task.cancel()              # no real probing: the verdicts are set by hand
        shared.set_health(slot[a], UNHEALTHY)
        shared.set_health(slot[b], HEALTHY)
        kept = checker.targets[slot[a]]
        checker.apply(make_config([a], {"tcp": {}}))      # b leaves, a's check changes
        assert checker.targets[slot[a]] is kept and kept.check.kind == "tcp"
        assert shared.health_py(slot[a]) == UNHEALTHY
        assert slot[b] not in checker.targets and shared.health_py(slot[b]) == UNKNOWN
        checker.apply(make_config([a], check={}))           # the cluster drops its check
        assert checker.targets == {} and shared.health_py(slot[a]) == UNKNOWN
        checker.close()
    asyncio.run(main())


def test_report_says_panic_when_fewer_than_the_threshold_are_available():
    stats, shared = Stats(max_workers=1), Endpoints(8192)
    addrs = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
    cfg = make_config(addrs)
    slots = [stats.endpoint_slot(endpoint_key("api", a)) for a in addrs]
    assert H.report(cfg, stats, shared)["api"]["panic"] is False
    shared.set_health(slots[0], UNHEALTHY)
    shared.set_health(slots[1], UNHEALTHY)
    rep = H.report(cfg, stats, shared)["api"]
    assert rep["panic"] is True and rep["health_check"] == "http"
    assert rep["endpoints"][addrs[0]]["health"] == "unhealthy"
    unchecked = H.report(make_config(addrs, check={}), stats, shared)["api"]
    assert unchecked["panic"] is False and unchecked["watched"] is False


def test_a_cluster_with_tls_is_probed_over_tls_and_verified(tmp_path):
    from support import Upstream
    from tls_certs import CA

    ca, rogue = CA(tmp_path / "ca"), CA(tmp_path / "rogue", "rogue-ca")
    cert, key = ca.issue("server", dns=["localhost"], ip=["127.0.0.1"])
    up = Upstream(cert, key)

    async def main(ca_path):
        stats, shared = Stats(max_workers=1), Endpoints(8192)
        checker = H.HealthChecker(asyncio.get_running_loop(), stats, shared)
        checker.apply(make_config([up.address], {"http": {"path": "/status/204"}},
                                  tls={"ca": str(ca_path)}, protocol="http2"))
        (target,) = checker.targets.values()
        target.task.cancel()
        try:
            return await checker.probe(target)
        finally:
            checker.close()

    try:
        assert asyncio.run(main(ca.cert_path)) == (True, "status 204")   # http/1.1 by ALPN
        passed, reason = asyncio.run(main(rogue.cert_path))
        assert not passed and "certificate verify failed" in reason, reason
    finally:
        up.stop()
