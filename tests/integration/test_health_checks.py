"""Active health checks against real upstreams the test steers (engine/runtime/health.py,
engine/_fast/endpoints.pyx, the balancer's panic threshold): with two workers, an endpoint that
fails its check gets no request from either worker once the verdict is in, and gets requests
again once it passes; garbage and silence are failures, never a crash; the panic threshold
routes to all; the probes come from the supervisor, once per node.

Every wait is on something observable (/clusters, counts at the upstreams), never a sleep."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time

import pytest
import yaml

from backends import Backend
from support import eventually, free_port, simple_config, upstream_connections


@pytest.fixture
def backends():
    made: list[Backend] = []

    def make(n: int) -> list[Backend]:
        made.extend(Backend() for _ in range(n))
        return made[-n:]

    yield make
    for b in made:
        if b.sock is not None:
            b.stop()


def checked_config(addresses, panic=None, check=None, **cluster) -> dict:
    check = check or {"http": {"path": "/healthz"}}
    # a timeout a loaded machine does not reach when the upstream answers
    hc = {**check, "interval": "500ms", "timeout": "500ms", "healthy_threshold": 2,
          "unhealthy_threshold": 2}
    opts = {"health_check": hc, **cluster}
    if panic is not None:
        opts["panic_threshold"] = panic
    return simple_config(free_port(), {"up": list(addresses)}, **opts)


def clusters(s) -> dict:
    r = s.admin("/clusters")
    assert r.status == 200, r.body
    return json.loads(r.body)["clusters"]


def health_of(s, cluster="up") -> dict[str, str]:
    return {ep["address"]: ep["health"] for ep in clusters(s)[cluster]["endpoints"]}


def get(s, path="/work") -> tuple[int, bytes]:
    """One request on a new connection (the kernel spreads new connections over the workers)."""
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_an_endpoint_failing_its_check_gets_no_request_from_any_worker_until_it_passes(
        backends, start_sluice):
    a, b, c = backends(3)
    s = start_sluice(checked_config([a.address, b.address, c.address]), workers=2)
    eventually(lambda: set(health_of(s).values()) == {"healthy"})
    b.health = 503
    eventually(lambda: health_of(s)[b.address] == "unhealthy")
    before = b.served
    results = [get(s) for _ in range(60)]
    assert [status for status, _ in results] == [200] * 60
    assert b.served == before                     # counted at the upstream: not one request
    assert {body for _, body in results} <= {str(a.port).encode(), str(c.port).encode()}
    state = clusters(s)["up"]
    ep = next(e for e in state["endpoints"] if e["address"] == b.address)
    assert ep["health_transitions"] == {"healthy": 1, "unhealthy": 1}
    assert state["panic"] is False

    b.health = 200
    eventually(lambda: health_of(s)[b.address] == "healthy")
    eventually(lambda: get(s) and b.served > before, timeout=15)

    text = s.admin("/stats/prometheus").body.decode()
    assert (f'sluice_endpoint_health{{cluster="up",endpoint="{b.address}",state="healthy"}} 1.0'
            in text)
    assert (f'sluice_health_transitions_total{{cluster="up",endpoint="{b.address}",'
            f'to="unhealthy"}} 1.0' in text)
    assert f'sluice_health_checks_total{{cluster="up",endpoint="{b.address}",result="failed"}}' \
        in text
    log = s.stderr_path.read_text()
    # once per transition, with the reason, never once per probe
    assert log.count(f"endpoint {b.address} is unhealthy") == 1, log
    assert "status 503, expected 200-399" in log


def test_a_killed_endpoint_leaves_the_rotation_and_returns_after_a_restart(
        backends, start_sluice):
    a, b, c = backends(3)
    s = start_sluice(checked_config([a.address, b.address, c.address]), workers=2)
    eventually(lambda: set(health_of(s).values()) == {"healthy"})

    failures = []
    stop = threading.Event()

    def load() -> None:       # steady traffic through the kill and the restart
        while not stop.is_set():
            try:
                status, _ = get(s)
            except OSError as exc:
                status = repr(exc)
            if status != 200:
                failures.append(status)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        b.stop()
        eventually(lambda: health_of(s)[b.address] == "unhealthy")
        results = [get(s)[0] for _ in range(40)]
        assert results == [200] * 40
        b.start()
        served = b.served
        eventually(lambda: health_of(s)[b.address] == "healthy")
        eventually(lambda: b.served > served, timeout=15)
    finally:
        stop.set()
        loader.join()
    # the failures (connect failures: retries and outlier detection are what make those zero)
    # came between the kill and the verdict; after it, the 40 above were all served


@pytest.mark.parametrize("answer", ["garbage", "hang"])
def test_a_target_answering_garbage_or_nothing_is_unhealthy_never_a_crash(
        answer, backends, start_sluice):
    good, bad = backends(2)
    bad.health = answer
    s = start_sluice(checked_config([good.address, bad.address]), workers=2)
    eventually(lambda: health_of(s) == {good.address: "healthy", bad.address: "unhealthy"})
    before = bad.served
    assert [get(s)[0] for _ in range(20)] == [200] * 20
    assert bad.served == before
    log = s.stderr_path.read_text()
    reason = "not an HTTP/1.x answer" if answer == "garbage" else "no answer within 500ms"
    assert reason in log, log
    assert s.proc.poll() is None and "Traceback" not in log


def test_below_the_panic_threshold_every_endpoint_gets_traffic(backends, start_sluice, tmp_path):
    a, b, c = backends(3)
    b.health = c.health = 503                       # one of three healthy: 33% < 50%
    s = start_sluice(checked_config([a.address, b.address, c.address]), workers=2)
    eventually(lambda: health_of(s) == {a.address: "healthy", b.address: "unhealthy",
                                        c.address: "unhealthy"})
    assert clusters(s)["up"]["panic"] is True
    eventually(lambda: get(s) and b.served > 0 and c.served > 0)
    assert 'sluice_cluster_panic{cluster="up"} 1.0' in s.admin("/stats/prometheus").body.decode()

    # a reload that switches panic off: the endpoints keep their health (no new transition,
    # no wait for probes), and only the healthy one is used
    config = checked_config([a.address, b.address, c.address], panic=0)
    config["listeners"], config["admin"] = s.config["listeners"], s.config["admin"]
    s.path.write_text(yaml.safe_dump(config))
    s.proc.send_signal(signal.SIGHUP)
    eventually(lambda: clusters(s)["up"]["panic_threshold"] == 0)
    eps = {e["address"]: e for e in clusters(s)["up"]["endpoints"]}
    assert eps[b.address]["health"] == "unhealthy"
    assert eps[b.address]["health_transitions"] == {"healthy": 0, "unhealthy": 1}
    eventually(lambda: s.admin("/ready").status == 200)
    served = b.served + c.served
    assert [get(s)[0] for _ in range(30)] == [200] * 30
    assert b.served + c.served == served


def test_with_panic_off_a_cluster_with_none_healthy_answers_503(backends, start_sluice):
    (a,) = backends(1)
    a.health = 500
    s = start_sluice(checked_config([a.address], panic=0))
    eventually(lambda: health_of(s) == {a.address: "unhealthy"})
    status, _ = get(s)
    assert status == 503 and a.served == 0


def test_probes_come_from_the_supervisor_once_per_node_not_from_each_worker(
        backends, start_sluice):
    (a,) = backends(1)
    a.health = "hang"          # each probe holds its connection open until its timeout
    hc = {"http": {"path": "/healthz"}, "interval": "500ms", "timeout": "500ms"}
    config = simple_config(free_port(), {"up": [a.address]}, health_check=hc)
    s = start_sluice(config, workers=2)
    workers = s.worker_pids()
    assert len(workers) == 2
    # a probe in flight: the supervisor holds its connection, and no worker holds one
    eventually(lambda: upstream_connections(s.proc.pid, a.port) == 1)
    assert [upstream_connections(pid, a.port) for pid in workers] == [0, 0]
    assert a.agents == {"sluice-health-check"}
    # a worker forked while a probe is open (a restart) must not inherit the probe's socket:
    # it would hold the connection open after the prober closed it
    os.kill(workers[0], signal.SIGKILL)
    restarted = eventually(lambda: [p for p in s.worker_pids() if p not in workers])
    eventually(lambda: s.admin("/ready").status == 200)
    eventually(lambda: upstream_connections(s.proc.pid, a.port) == 1)
    assert upstream_connections(restarted[0], a.port) == 0

    # and counted at the upstream: probes at least 0.9 interval apart (jitter), where two
    # probers would send twice as many. A lower bound on the time they take: a slow machine
    # only stretches it.
    a.health = 200
    eventually(lambda: health_of(s) == {a.address: "healthy"})
    first = a.probes
    eventually(lambda: a.probes >= first + 1)
    start_count, start = a.probes, time.monotonic()
    eventually(lambda: a.probes >= start_count + 7, timeout=30)
    assert time.monotonic() - start >= 6 * 0.9 * 0.5
