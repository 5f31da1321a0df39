"""Prometheus text rendering of the node's shared-memory stats (GET /stats/prometheus).

A custom `prometheus_client` Collector reads `Stats.aggregate()` (already summed over the workers,
see engine/_fast/stats.pyx) at scrape time: nothing is copied into prometheus_client's own metric
objects, and the workers never do more than their plain stores. Metric names:

    sluice_requests_total{route, status_class}          counter   finished exchanges per route
    sluice_cluster_requests_total{cluster, status_class} counter  ... per cluster they went to
    sluice_request_duration_seconds{route}              histogram request start to response end
    sluice_bytes_received_total{route}                  counter   request body bytes from clients
    sluice_bytes_sent_total{route}                      counter   response bytes to clients
    sluice_rate_limited_total{route}                    counter   refused with 429 by its limit
    sluice_filter_errors_total{route}                   counter   Python filter phases that raised
    sluice_endpoint_active_requests{cluster, endpoint}  gauge     requests in flight per endpoint
    sluice_endpoint_requests_total{cluster, endpoint}   counter
    sluice_endpoint_connect_failures_total{cluster, endpoint}, sluice_endpoint_resets_total{...}
    sluice_cluster_connect_failures_total{cluster}, sluice_cluster_resets_total{cluster}
    sluice_endpoint_health{cluster, endpoint, state}    gauge     1 for the endpoint's current state
                                                                  (healthy | unhealthy | unknown),
                                                                  0 for the others
    sluice_endpoint_ejected{cluster, endpoint}          gauge     1 while outlier detection ejects it
    sluice_health_transitions_total{cluster, endpoint, to}  counter  to = healthy | unhealthy
    sluice_endpoint_ejections_total{cluster, endpoint}  counter   outlier detection ejections
    sluice_health_checks_total{cluster, endpoint, result}  counter  probes: passed | failed
    sluice_cluster_panic{cluster}                       gauge     1 while below panic_threshold
    sluice_cluster_active_requests{cluster}             gauge     in flight (circuit_breakers)
    sluice_cluster_active_retries{cluster}              gauge     retries in flight
    sluice_retries_total{cluster, reason}               counter   retries made, by what failed:
        connect_failure | reset | per_try_timeout | refused_stream | gateway_error | 5xx |
        retriable_status
    sluice_retry_successes_total{cluster}               counter   retried requests answered < 500
    sluice_per_try_timeouts_total{cluster}              counter   per_try_timeout fired
    sluice_circuit_breaker_overflows_total{cluster, breaker}  counter  shed or not retried at a
        limit: requests (max_requests, 503) | pending (pool, 503) | retries (max_retries or
        the retry budget: the failure is returned instead)
    sluice_mirror_requests_total{cluster, result}       counter   mirror copies: sent | failed
    sluice_faults_injected_total{route, kind}           counter   fault injection: delay | abort
    sluice_overload_shed_total                          counter   503 while the loop lagged
    sluice_worker_loop_lag_seconds                      gauge     the most lagging worker's recent peak lag
    sluice_active_connections                           gauge     open client connections
    sluice_listener_active_connections{listener}        gauge     ... per listener
    sluice_active_requests                              gauge     exchanges in flight
    sluice_workers                                      gauge     live worker processes
    sluice_build_info{version}                          gauge     1
    sluice_reloads_total{result}                        counter   applied | rejected
    sluice_tls_handshake_failures_total                 counter   client TLS handshakes that failed
    sluice_tls_reloads_total{result}                    counter   certificate reloads: applied | rejected
    sluice_tls_cert_expiry_timestamp_seconds{listener, cert}  gauge  notAfter of a loaded certificate
    sluice_upstream_extra_data_total                    counter   responses followed by stray bytes
    sluice_accept_failures_total                        counter   accept() failed (no descriptors)
    sluice_connections_refused_total                    counter   over limits.max_connections
    sluice_downstream_timeouts_total{kind}              counter   header | body | send | idle
    sluice_ratelimit_live_evictions_total               counter   (with the limiter's table)
    sluice_ratelimit_lock_steals_total                  counter   (with the limiter's table)
    sluice_http2_*{side, ...}                           HTTP/2 codecs, side = downstream | upstream:
        streams_total, frames_received_total, resets_total{direction, code},
        goaways_total{direction, code}, rapid_resets_total, refused_streams_total,
        connection_errors_total, stream_errors_total, floods_total{kind},
        flow_control_stalls_total, settings_timeouts_total, stream_ids_exhausted_total (counters);
        active_connections, active_streams (gauges)

Health series exist for the endpoints of clusters with a health check (or outlier detection)
in the config served; their counters live in the node's endpoint state
(engine/_fast/endpoints.pyx, written by the prober and the workers).

status_class is 1xx..5xx, and "other" (a status outside 100..599) only once it happened. The
reserved rows "_unrouted" (answered before a route matched) and "_other" (the name table was
full) appear once they have counted something; configured routes and clusters appear from the
moment a worker linked them, with zeros. HTTP/2 series exist for both sides from the start,
with zeros, except resets and GOAWAYs: a (direction, code) row appears once it counted one, as
14 codes x 2 directions x 2 sides of zeros would mostly be noise. Counters never go back: a route removed by a reload keeps
its last values, and a restarted worker goes on counting in its slot.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from engine._fast.stats import (
    BOUNDS, H2_CODES, H2_SIDES, OTHER, RETRY_REASONS, STATUS_CLASSES, UNROUTED,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sluice")
    except PackageNotFoundError:
        return "unknown"


_VERSION = _package_version()
RESERVED = (OTHER, UNROUTED)
_LE = [floatToGoString(b) for b in BOUNDS]


def _classes(requests: dict[str, int]) -> Iterator[tuple[str, int]]:
    for cls in STATUS_CLASSES:
        n = requests.get(cls, 0)
        if cls != "other" or n:
            yield cls, n


def _quiet(name: str, total: int) -> bool:
    """A reserved row that never counted anything is left out."""
    return name in RESERVED and total == 0


class StatsCollector(Collector):
    """Reads the shared-memory `Stats` (and, optionally, the limiter's `SharedBuckets`) at each
    scrape."""

    def __init__(self, stats, buckets=None, reloads: dict | None = None,
                 tls: tuple[dict, dict] | None = None, health=None):
        self.stats = stats
        self.health = health    # callable: engine.runtime.health.report() of the config served
        self.buckets = buckets
        self.reloads = reloads
        self.tls = tls      # (tls reloads {result: n}, expiry {(listener, file): notAfter}), live

    def collect(self) -> Iterator[Metric]:
        agg = self.stats.aggregate()

        requests = CounterMetricFamily("sluice_requests", "Finished exchanges by route and "
                                       "response status class.", labels=["route", "status_class"])
        duration = HistogramMetricFamily("sluice_request_duration_seconds",
                                         "From the request head to the end of the response.",
                                         labels=["route"])
        received = CounterMetricFamily("sluice_bytes_received", "Request body bytes received "
                                       "from clients.", labels=["route"])
        sent = CounterMetricFamily("sluice_bytes_sent", "Response bytes sent to clients.",
                                   labels=["route"])
        limited = CounterMetricFamily("sluice_rate_limited", "Requests refused with 429 by the "
                                      "route's rate limit.", labels=["route"])
        ferrors = CounterMetricFamily("sluice_filter_errors", "Python filter phases that raised "
                                      "(request: the client got a 500; response: logged, the "
                                      "response went on).", labels=["route"])
        for name, r in agg["routes"].items():
            if _quiet(name, r["count"]):
                continue
            for cls, n in _classes(r["requests"]):
                requests.add_metric([name, cls], n)
            cumulative, buckets = 0, []
            for le, n in zip(_LE, r["buckets"]):
                cumulative += n
                buckets.append((le, cumulative))
            duration.add_metric([name], buckets, sum_value=r["sum"])
            received.add_metric([name], r["bytes_in"])
            sent.add_metric([name], r["bytes_out"])
            limited.add_metric([name], r["rate_limited"])
            ferrors.add_metric([name], r["filter_errors"])
        yield from (requests, duration, received, sent, limited, ferrors)

        clusters = CounterMetricFamily("sluice_cluster_requests", "Finished exchanges by the "
                                       "cluster they were sent to and response status class.",
                                       labels=["cluster", "status_class"])
        for name, c in agg["clusters"].items():
            if _quiet(name, sum(c["requests"].values())):
                continue
            for cls, n in _classes(c["requests"]):
                clusters.add_metric([name, cls], n)
        yield clusters

        ep_active = GaugeMetricFamily("sluice_endpoint_active_requests",
                                      "Requests in flight to an endpoint.",
                                      labels=["cluster", "endpoint"])
        ep_total = CounterMetricFamily("sluice_endpoint_requests", "Requests sent to an endpoint.",
                                       labels=["cluster", "endpoint"])
        ep_fail = CounterMetricFamily("sluice_endpoint_connect_failures", "Upstream connections "
                                      "that could not be opened.", labels=["cluster", "endpoint"])
        ep_reset = CounterMetricFamily("sluice_endpoint_resets", "Upstream connections that broke "
                                       "before their response was complete.",
                                       labels=["cluster", "endpoint"])
        by_cluster: dict[str, list[int]] = {}
        for name, e in agg["endpoints"].items():
            if _quiet(name, e["requests"] + e["connect_failures"] + e["resets"]):
                continue
            cluster, _, address = name.partition("/")
            ep_active.add_metric([cluster, address], e["active"])
            ep_total.add_metric([cluster, address], e["requests"])
            ep_fail.add_metric([cluster, address], e["connect_failures"])
            ep_reset.add_metric([cluster, address], e["resets"])
            sums = by_cluster.setdefault(cluster, [0, 0])
            sums[0] += e["connect_failures"]
            sums[1] += e["resets"]
        cl_fail = CounterMetricFamily("sluice_cluster_connect_failures", "Upstream connections of "
                                      "the cluster that could not be opened.", labels=["cluster"])
        cl_reset = CounterMetricFamily("sluice_cluster_resets", "Upstream connections of the "
                                       "cluster that broke before their response was complete.",
                                       labels=["cluster"])
        for cluster, (fails, resets) in by_cluster.items():
            cl_fail.add_metric([cluster], fails)
            cl_reset.add_metric([cluster], resets)
        yield from (ep_active, ep_total, ep_fail, ep_reset, cl_fail, cl_reset)
        yield from _resilience_metrics(agg)

        by_listener = GaugeMetricFamily("sluice_listener_active_connections", "Open client "
                                        "connections per listener.", labels=["listener"])
        for name, lst in agg["listeners"].items():
            if name not in RESERVED or lst["active_connections"]:
                by_listener.add_metric([name], lst["active_connections"])
        yield by_listener

        gauges = agg["gauges"]
        yield GaugeMetricFamily("sluice_active_connections", "Open client connections.",
                                value=gauges["active_connections"])
        yield GaugeMetricFamily("sluice_active_requests", "Exchanges in flight.",
                                value=gauges["active_requests"])
        yield GaugeMetricFamily("sluice_workers", "Live worker processes.", value=agg["workers"])
        info = GaugeMetricFamily("sluice_build_info", "The running sluice (always 1).",
                                 labels=["version"])
        info.add_metric([_VERSION], 1)
        yield info
        if self.reloads is not None:
            reloads = CounterMetricFamily("sluice_reloads", "Configs offered for a reload (file, "
                                          "SIGHUP, PUT /snapshot), by result.", labels=["result"])
            for result in ("applied", "rejected"):
                reloads.add_metric([result], self.reloads.get(result, 0))
            yield reloads
        if self.tls is not None:
            yield from _tls_metrics(*self.tls)
        events = agg["events"]
        yield CounterMetricFamily(
            "sluice_upstream_extra_data", "Upstream responses followed by bytes that belong to no "
            "request (the connection was closed, never pooled).",
            value=events["upstream_extra_data"])
        yield CounterMetricFamily(
            "sluice_accept_failures", "Connections the kernel could not hand over (out of file "
            "descriptors); accepting resumes when descriptors free up.",
            value=events["accept_failed"])
        yield CounterMetricFamily(
            "sluice_connections_refused", "Client connections closed at once because the "
            "listener was at limits.max_connections.", value=events["connection_limit"])
        yield CounterMetricFamily(
            "sluice_tls_handshake_failures", "Client TLS handshakes that failed (no or a "
            "refused client certificate, an old TLS version, not TLS at all); that connection "
            "was closed.", value=events["tls_handshake_failed"])
        yield CounterMetricFamily(
            "sluice_overload_shed", "Requests answered 503 (x-sluice-overloaded) because the "
            "worker's event loop lagged past overload.max_loop_delay.",
            value=events["overload_shed"])
        yield GaugeMetricFamily(
            "sluice_worker_loop_lag_seconds", "The largest event-loop lag a worker measured in "
            "the last 5 to 10 s (the most lagging worker's).", value=agg.get("loop_lag_max", 0.0))
        timeouts = CounterMetricFamily(
            "sluice_downstream_timeouts", "Client connections closed by a listener timeout.",
            labels=["kind"])
        for kind in ("header", "body", "send", "idle"):
            timeouts.add_metric([kind], events["timeout_" + kind])
        yield timeouts

        yield from _http2_metrics(agg["http2"])
        if self.health is not None:
            yield from _health_metrics(self.health())

        if self.buckets is not None:
            yield CounterMetricFamily(
                "sluice_ratelimit_live_evictions", "Rate-limit buckets evicted before they were "
                "full again (each may over-admit up to a burst): the table is too small.",
                value=self.buckets.live_evictions)
            yield CounterMetricFamily(
                "sluice_ratelimit_lock_steals", "Rate-limit bucket locks taken from a dead or "
                "stuck holder.", value=self.buckets.lock_steals)


# HTTP/2 codec counters exported one family each, labelled by side: (metric, counter in
# stats.H2_COUNTER_NAMES, help). resets_sent/received and goaway_sent/received are not here:
# sluice_http2_resets_total and sluice_http2_goaways_total count the same frames by code.
_H2_COUNTERS = (
    ("sluice_http2_streams", "streams_opened", "HTTP/2 streams opened (by either end)."),
    ("sluice_http2_frames_received", "frames_in", "HTTP/2 frames received."),
    ("sluice_http2_rapid_resets", "rapid_resets", "Streams the peer reset while we were still "
     "answering them (each spends the rapid-reset budget; see floods)."),
    ("sluice_http2_refused_streams", "refused_streams", "Streams refused with REFUSED_STREAM: "
     "over the concurrent streams we advertised."),
    ("sluice_http2_connection_errors", "connection_errors", "HTTP/2 connections closed with a "
     "GOAWAY for a connection error (protocol violations and floods)."),
    ("sluice_http2_stream_errors", "stream_errors", "Streams we reset for a stream error."),
    ("sluice_http2_flow_control_stalls", "flow_stalls", "Sends held back by a closed flow-control "
     "window (the rest waited for a WINDOW_UPDATE)."),
    ("sluice_http2_settings_timeouts", "settings_timeouts", "Connections closed because the peer "
     "did not acknowledge our SETTINGS in time."),
    ("sluice_http2_stream_ids_exhausted", "ids_exhausted", "Connections that ran out of stream "
     "ids (client role: a new connection took over)."),
)
H2_FLOOD_KINDS = ("settings", "ping", "empty_data", "window_update", "rapid_reset",
                  "continuation")


def _http2_metrics(h2: dict) -> Iterator[Metric]:
    """The sluice_http2_* families from aggregate()["http2"]."""
    for name, counter, help_text in _H2_COUNTERS:
        family = CounterMetricFamily(name, help_text, labels=["side"])
        for side in H2_SIDES:
            family.add_metric([side], h2[side]["counters"][counter])
        yield family
    floods = CounterMetricFamily("sluice_http2_floods", "HTTP/2 connections closed with "
                                 "ENHANCE_YOUR_CALM for a flood, by kind.",
                                 labels=["side", "kind"])
    for side in H2_SIDES:
        for kind in H2_FLOOD_KINDS:
            floods.add_metric([side, kind], h2[side]["counters"]["flood_" + kind])
    yield floods
    for name, key, what in (("sluice_http2_resets", "resets", "RST_STREAM frames"),
                            ("sluice_http2_goaways", "goaways", "GOAWAY frames")):
        family = CounterMetricFamily(name, f"{what} sent or received, by RFC 9113 error code "
                                     "(a row appears once it counted one).",
                                     labels=["side", "direction", "code"])
        for side in H2_SIDES:
            for direction in ("sent", "received"):
                by_code = h2[side][key][direction]
                for code in H2_CODES:
                    if by_code[code]:
                        family.add_metric([side, direction, code], by_code[code])
        yield family
    for name, key, help_text in (
            ("sluice_http2_active_connections", "active_connections", "Open HTTP/2 connections."),
            ("sluice_http2_active_streams", "active_streams", "Open streams on HTTP/2 "
             "connections.")):
        gauge = GaugeMetricFamily(name, help_text, labels=["side"])
        for side in H2_SIDES:
            gauge.add_metric([side], h2[side][key])
        yield gauge


HEALTH_STATES = ("healthy", "unhealthy", "unknown")


def _resilience_metrics(agg: dict) -> Iterator[Metric]:
    """Retries, circuit breakers, mirroring (per cluster) and fault injection (per route)."""
    active = GaugeMetricFamily("sluice_cluster_active_requests", "Requests in flight to the "
                               "cluster, all workers (circuit_breakers.max_requests).",
                               labels=["cluster"])
    retrying = GaugeMetricFamily("sluice_cluster_active_retries", "Retried requests in flight "
                                 "to the cluster (max_retries, retry_budget).", labels=["cluster"])
    retries = CounterMetricFamily("sluice_retries", "Retries made, by what the try failed with.",
                                  labels=["cluster", "reason"])
    success = CounterMetricFamily("sluice_retry_successes", "Retried requests that got a "
                                  "response below 500 at last.", labels=["cluster"])
    per_try = CounterMetricFamily("sluice_per_try_timeouts", "Tries cut by the route's "
                                  "per_try_timeout (retried or not).", labels=["cluster"])
    overflow = CounterMetricFamily("sluice_circuit_breaker_overflows", "Requests shed (503, "
                                   "x-sluice-overloaded) or retries not made at a limit.",
                                   labels=["cluster", "breaker"])
    mirror = CounterMetricFamily("sluice_mirror_requests", "Mirror copies sent to the cluster "
                                 "as a shadow, and those that failed or were dropped.",
                                 labels=["cluster", "result"])
    for name, c in agg["clusters"].items():
        ev = c.get("events")
        if ev is None or (name in RESERVED and not any(ev.values())):
            continue
        active.add_metric([name], c["active_requests"])
        retrying.add_metric([name], c["active_retries"])
        for reason in RETRY_REASONS:
            retries.add_metric([name, reason], ev["retry_" + reason])
        success.add_metric([name], ev["retry_success"])
        per_try.add_metric([name], ev["per_try_timeout"])
        overflow.add_metric([name, "requests"], ev["overflow_requests"])
        overflow.add_metric([name, "pending"], ev["overflow_pending"])
        overflow.add_metric([name, "retries"], ev["retry_overflow"])
        mirror.add_metric([name, "sent"], ev["mirror_sent"])
        mirror.add_metric([name, "failed"], ev["mirror_failed"])
    yield from (active, retrying, retries, success, per_try, overflow, mirror)
    faults = CounterMetricFamily("sluice_faults_injected", "Requests delayed or aborted by the "
                                 "route's fault injection.", labels=["route", "kind"])
    for name, r in agg["routes"].items():
        f = r.get("faults")
        if f and (f["delay"] or f["abort"]):
            faults.add_metric([name, "delay"], f["delay"])
            faults.add_metric([name, "abort"], f["abort"])
    yield faults


def _health_metrics(clusters: dict) -> Iterator[Metric]:
    """The endpoint health families from engine.runtime.health.report()."""
    health = GaugeMetricFamily("sluice_endpoint_health", "Active health of an endpoint: 1 for "
                               "its current state, 0 for the others (unknown: no verdict yet, "
                               "routable).", labels=["cluster", "endpoint", "state"])
    ejected = GaugeMetricFamily("sluice_endpoint_ejected", "1 while outlier detection ejects the "
                                "endpoint.", labels=["cluster", "endpoint"])
    transitions = CounterMetricFamily("sluice_health_transitions", "Health changes of an "
                                      "endpoint found by its active health check, by the state "
                                      "it went to.", labels=["cluster", "endpoint", "to"])
    ejections = CounterMetricFamily("sluice_endpoint_ejections", "Times outlier detection "
                                    "ejected the endpoint.", labels=["cluster", "endpoint"])
    checks = CounterMetricFamily("sluice_health_checks", "Active health check probes of an "
                                 "endpoint (since the supervisor started), by result.",
                                 labels=["cluster", "endpoint", "result"])
    panic = GaugeMetricFamily("sluice_cluster_panic", "1 while fewer than panic_threshold "
                              "percent of the cluster's endpoints are available: all of them "
                              "get traffic.", labels=["cluster"])
    for cluster, c in clusters.items():
        if not c["watched"]:
            continue
        panic.add_metric([cluster], 1 if c["panic"] else 0)
        for address, st in c["endpoints"].items():
            for state in HEALTH_STATES:
                health.add_metric([cluster, address, state], 1 if st["health"] == state else 0)
            ejected.add_metric([cluster, address], 1 if st["ejected"] else 0)
            transitions.add_metric([cluster, address, "healthy"], st["to_healthy"])
            transitions.add_metric([cluster, address, "unhealthy"], st["to_unhealthy"])
            ejections.add_metric([cluster, address], st["ejections"])
            if c["health_check"] is not None:
                for result in ("passed", "failed"):
                    checks.add_metric([cluster, address, result], st["checks"][result])
    yield from (health, ejected, transitions, ejections, checks, panic)


def _tls_metrics(reloads: dict, expiry: dict) -> Iterator[Metric]:
    counter = CounterMetricFamily("sluice_tls_reloads", "Certificate reloads (a TLS file "
                                  "changed, or SIGHUP), by result; a rejected one left the old "
                                  "certificates serving.", labels=["result"])
    for result in ("applied", "rejected"):
        counter.add_metric([result], reloads.get(result, 0))
    yield counter
    gauge = GaugeMetricFamily("sluice_tls_cert_expiry_timestamp_seconds", "When a certificate "
                              "a TLS listener serves (or its client CA bundle: the earliest) "
                              "expires, in seconds since the epoch.", labels=["listener", "cert"])
    for (listener, path), not_after in sorted(expiry.items()):
        gauge.add_metric([listener, path], not_after)
    yield gauge


def registry_for(stats, buckets=None, reloads: dict | None = None,
                 tls: tuple[dict, dict] | None = None, health=None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, buckets, reloads, tls, health))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition (content type CONTENT_TYPE)."""
    return generate_latest(registry)
