"""The real binary on a config with every resilience field (issue 11): it starts, serves, shows
the fields in /config_dump, and takes a reload that changes them. What the fields do to
requests (retries, faults, mirrored copies, circuit breaking) is tested with the exchange that
acts on them; this file holds the policy layer's end of it: YAML -> snapshot -> every worker's
linked tables, over real sockets."""
from __future__ import annotations

import copy
import json
import signal

import httpx
import yaml

from support import eventually, free_port, simple_config


def resilient_config(upstream, shadow) -> dict:
    config = simple_config(free_port(), {"up": [upstream.address], "shadow": [shadow.address]},
                           routes=[{
                               "name": "all", "match": {"path_prefix": "/"}, "timeout": "5s",
                               "retry": {"attempts": 2, "per_try_timeout": "1s",
                                         "on": ["connect-failure", "reset", "retriable-status"],
                                         "retriable_statuses": [409]},
                               # only requests carrying the header are faulted: none here
                               "fault": {"abort": {"status": 418}, "delay": {"fixed": "1ms"},
                                         "only_with_header": "x-sluice-fault"},
                               "mirror": {"cluster": "shadow", "percent": 0},
                               "to": [{"cluster": "up"}]}])
    config["clusters"][0].update({"circuit_breakers": {"max_requests": 64, "max_retries": 3},
                                  "retry_budget": {"percent": 25, "min_concurrency": 2}})
    return config


def test_the_binary_serves_a_config_with_every_resilience_field(upstream, upstream2,
                                                               start_sluice):
    config = resilient_config(upstream, upstream2)
    s = start_sluice(config, workers=2)
    for _ in range(6):
        r = httpx.get(s.url + "/echo", timeout=10)
        assert r.status_code == 200 and r.json()["path"] == "/echo"
    dump = json.loads(s.admin("/config_dump").body)
    route = dump["config"]["routes"][0]
    assert route["retry"]["attempts"] == 2 and route["retry"]["retriable_statuses"] == [409]
    assert route["fault"]["only_with_header"] == "x-sluice-fault"
    assert route["mirror"] == {"cluster": "shadow", "percent": 0.0}
    up, shadow = dump["config"]["clusters"]
    assert up["circuit_breakers"] == {"max_requests": 64, "max_retries": 3}
    assert up["retry_budget"] == {"percent": 25.0, "min_concurrency": 2}
    # Envoy's defaults are written out for a cluster that leaves them out
    assert shadow["circuit_breakers"] == {"max_requests": 1024, "max_retries": 3}
    assert shadow["retry_budget"] is None


def test_a_reload_that_changes_them_is_applied_and_a_bad_one_refused(upstream, upstream2,
                                                                    start_sluice):
    config = resilient_config(upstream, upstream2)
    s = start_sluice(config)

    def dumped() -> dict:
        return json.loads(s.admin("/config_dump").body)

    changed = copy.deepcopy(config)
    changed["routes"][0]["retry"]["attempts"] = 1
    changed["clusters"][0]["circuit_breakers"]["max_requests"] = 10
    s.path.write_text(yaml.safe_dump(changed))
    s.proc.send_signal(signal.SIGHUP)
    eventually(lambda: dumped()["config"]["clusters"][0]["circuit_breakers"]["max_requests"]
               == 10)
    assert httpx.get(s.url + "/echo", timeout=10).status_code == 200

    bad = copy.deepcopy(changed)
    bad["routes"][0]["retry"]["attempts"] = -1
    bad["routes"][0]["mirror"]["percent"] = 101
    s.path.write_text(yaml.safe_dump(bad))
    s.proc.send_signal(signal.SIGHUP)

    def refused() -> bool:
        reasons = (dumped()["last_rejection"] or {}).get("reason", ())
        return any("routes[0].retry.attempts: must be at least 0, got -1" in r
                   for r in reasons) and any("routes[0].mirror.percent: must be at most 100"
                                             in r for r in reasons)
    eventually(refused, timeout=20)
    assert dumped()["config"]["routes"][0]["retry"]["attempts"] == 1    # the last good one
    assert httpx.get(s.url + "/echo", timeout=10).status_code == 200
