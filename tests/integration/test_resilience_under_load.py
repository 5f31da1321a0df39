"""The issue's acceptance scenario (issue 11, "How it is tested"): under steady load with 2
workers, one of three endpoints dies; with health checks, outlier detection and retries on, the
clients see zero failed idempotent requests, and the endpoint is used again after it recovers."""
from __future__ import annotations

import http.client
import threading
import time

import pytest

from support import eventually, free_port, simple_config


class Load:
    """`n` clients sending GETs on keep-alive connections until stop(); every answer that is
    not a 200, and every broken exchange, is a failure."""

    def __init__(self, port: int, n: int = 4) -> None:
        self.port = port
        self.running = True
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def client(self) -> None:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while self.running:
            try:
                c.request("GET", "/work")
                r = c.getresponse()
                r.read()
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"status {r.status}")
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.close()

    def stop(self) -> None:
        self.running = False
        for t in self.threads:
            t.join()


@pytest.mark.parametrize("how", ["killed", "answering 503", "hanging"])
def test_one_of_three_endpoints_fails_under_load_and_no_client_sees_it(backends, start_sluice,
                                                                        how):
    config = simple_config(
        free_port(), {"up": [b.address for b in backends]},
        routes=[{"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}],
                 "retry": {"attempts": 2, "on": ["connect-failure", "reset", "gateway-error"],
                           "per_try_timeout": "500ms"}}],
        health_check={"http": {"path": "/healthz"}, "interval": "300ms", "timeout": "200ms",
                      "unhealthy_threshold": 2, "healthy_threshold": 1},
        outlier_detection={"consecutive_gateway_errors": 3, "base_ejection_time": "1s",
                           "max_ejection_percent": 34},
        retry_budget={"percent": 50, "min_concurrency": 4})
    s = start_sluice(config, workers=2)
    victim = backends[0]
    load = Load(s.port)
    try:
        eventually(lambda: load.ok > 200)
        if how == "killed":
            victim.stop()
        elif how == "answering 503":
            victim.status = victim.health = 503
        else:
            victim.fault, victim.health = "hang", "hang"
        served = victim.served
        time.sleep(2.0)
        assert victim.served - served <= 20          # out of rotation (a 503 is counted)
        if how == "killed":
            victim.start()
        else:
            victim.status, victim.health, victim.fault = 200, 200, None
        back = victim.served
        eventually(lambda: victim.served > back + 20, timeout=15)   # used again
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.failures == [], load.failures[:10]
    assert load.ok > 500
