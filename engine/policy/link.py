"""Turn a validated config into the compiled `Tables` a worker serves from.

This is the one policy module that imports `engine._fast` (STYLE.md): everything else in
`engine.policy` runs without a compiler. Linking never validates meaning (the model already did)
and resolves every name once, so that serving a request never looks one up.

State that must outlive a reload is carried over by identity: a `Pool` is reused when the
previous tables had the same endpoint of the same cluster with the same pool settings, protocol
(with its HTTP/2 settings for an http2 cluster) and TLS identity (a cluster's client SSLContext
comes from `tls_client`, cached by a fingerprint of its settings, ALPN and files, so an unchanged
one is the same object after a reload), and a
`Limiter` keyed by a stable `limit_id` (route name + limit settings) finds its buckets again in
the node's shared table. A TLS listener's server SSLContext is kept when its shape (min_version, mutual
TLS) is unchanged, so the listening server goes on and only its certificates and ALPN offer
change (engine/policy/tls_server.py). A listener's `protocols` become its `http1`/`http2` flags
and its `http2` block the SETTINGS it announces. A cluster's `panic_threshold` goes to its
balancer, and a cluster with a `health_check` gets a balancer that follows the node-wide
endpoint state (engine/_fast/endpoints.pyx); health itself is never carried by link: it lives
in shared memory, keyed by the endpoint's stats slot, so a reload cannot lose it.

Resilience (issue 11) is linked as the primitive tuples `tables.Route` and `tables.Cluster`
take: a route's `retry` (its `on` names as `tables.RETRY_ON` bits, methods as bytes, the
backoff's default max filled in), `fault` (absent halves as 0 / -1, the header name as bytes)
and `mirror` (the shadow cluster's linked `Cluster`: every cluster is linked, whether a route
sends to it or mirrors to it), and every cluster's `circuit_breakers` (always: Envoy's defaults
when the config leaves them out) and `retry_budget` (or None). The in-flight counts they are
checked against live in the node's shared stats, keyed by the cluster's stats slot, so like
health they survive a reload without being carried.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from engine._fast.balancer import Balancer, policy_from_name
from engine._fast.limiter import Limiter
from engine._fast.paths import flags_for
from engine._fast.pool import PROTOCOL, Pool
from engine._fast.stats import endpoint_key
from engine._fast.router import (
    HOST_ANY, HOST_EXACT, HOST_SUFFIX, PATH_ANY, PATH_EXACT, PATH_PREFIX, PATH_REGEX, Router,
)
from engine._fast.tables import (
    HASH_ON, LIMIT_PER, RETRY_ON, XFCC, Cluster, Endpoint, Listener, Route, Tables,
)
from engine.policy import tls_client, tls_server


def stable_id(*parts: object) -> int:
    """A 64-bit identity that is the same in every process and every run."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _h2_settings(cluster) -> tuple | None:
    """An http2 cluster's connection settings, in `Pool`'s order; None for http1, whose pools
    do not depend on its (unused) `http2` block."""
    if cluster.protocol != "http2":
        return None
    h2 = cluster.http2
    return (h2.max_concurrent_streams, h2.initial_stream_window, h2.initial_connection_window,
            h2.ping_interval, h2.ping_timeout)


def _pool_key(cluster, endpoint, tls_id: str | None = None) -> tuple:
    """What a pool's connections are: to which endpoint, under which pool settings, speaking
    which protocol with which HTTP/2 settings, with which TLS identity (`tls_client.fingerprint`:
    the settings, the ALPN offer and the files' bytes, None for plaintext). Equal keys across a
    reload keep the pool and its warm connections; a changed CA, client certificate, SNI,
    protocol or HTTP/2 setting gets new pools (the SETTINGS of an open HTTP/2 connection were
    announced when it opened)."""
    pool = cluster.pool
    return (cluster.name, endpoint.address.host, endpoint.address.port, pool.max_connections,
            pool.max_requests_per_connection, pool.idle_timeout, cluster.connect_timeout,
            pool.max_pending, cluster.protocol, _h2_settings(cluster), tls_id)


def watched(cluster) -> bool:
    """Whether a cluster's balancer follows the node-wide endpoint state: it has an active
    health check or outlier detection. Any other cluster's picks never look at it."""
    return (cluster.health_check is not None
            or getattr(cluster, "outlier_detection", None) is not None)


def _link_cluster(cluster, old_pools: dict, pools: dict, stats=None, tls=None,
                  endpoints=None) -> Cluster:
    """`tls` is the cluster's (fingerprint, SSLContext) from `tls_client`, or None;
    `endpoints` the node's `engine._fast.endpoints.Endpoints` (health, ejections), or None."""
    h2 = cluster.http2
    eps_linked = []
    for ep in cluster.endpoints:
        key = _pool_key(cluster, ep, tls[0] if tls is not None else None)
        pool = old_pools.get(key)
        if pool is None:
            pool = Pool(ep.address.host, ep.address.port,
                        max_connections=cluster.pool.max_connections,
                        max_requests=cluster.pool.max_requests_per_connection,
                        idle_timeout=cluster.pool.idle_timeout,
                        connect_timeout=cluster.connect_timeout,
                        max_waiters=cluster.pool.max_pending,
                        ssl_context=tls[1] if tls is not None else None,
                        server_hostname=tls_client.server_hostname(cluster.tls, ep.address.host)
                        if tls is not None else None,
                        protocol=PROTOCOL[cluster.protocol],
                        h2_max_streams=h2.max_concurrent_streams,
                        h2_stream_window=h2.initial_stream_window,
                        h2_conn_window=h2.initial_connection_window,
                        h2_ping_interval=float(h2.ping_interval),
                        h2_ping_timeout=float(h2.ping_timeout))
        pools[key] = pool
        eps_linked.append(Endpoint(pool, stats.endpoint_slot(endpoint_key(cluster.name, ep.address))
                                   if stats is not None else -1))
    balancer = Balancer(policy_from_name(cluster.balancer),
                        [ep.weight for ep in cluster.endpoints],
                        [str(ep.address).encode() for ep in cluster.endpoints],
                        # per process: workers must not draw random picks in lockstep
                        (stable_id("cluster", cluster.name) ^ os.getpid()) & 0x7FFFFFFF,
                        cluster.panic_threshold)
    if endpoints is not None and stats is not None and watched(cluster):
        # the state is indexed by the stats slots (engine/_fast/endpoints.pyx)
        balancer.watch(endpoints, [ep.stats_slot for ep in eps_linked])
    on = cluster.hash_on          # a RequestKey: kind and name as the model normalised them
    od = cluster.outlier_detection
    cb, rb = cluster.circuit_breakers, cluster.retry_budget
    return Cluster(cluster.name, balancer, eps_linked,
                   HASH_ON[on.kind] if on is not None else HASH_ON[""],
                   on.name.encode() if on is not None else b"",
                   stats.cluster_slot(cluster.name) if stats is not None else -1,
                   outlier=(od.consecutive_5xx, od.consecutive_gateway_errors,
                            od.base_ejection_time, od.max_ejection_time,
                            od.max_ejection_percent)
                   if od is not None and endpoints is not None and stats is not None else None,
                   breakers=(cb.max_requests, cb.max_retries),
                   budget=(float(rb.percent), rb.min_concurrency) if rb is not None else None)


def retry_arguments(retry) -> tuple:
    """A route's `retry` as `tables.Route(retry=)` takes it: (attempts, RETRY_* bits, statuses,
    methods as bytes, per_try_timeout, backoff base, backoff max) in seconds."""
    bits = 0
    for name in retry.on:
        bits |= RETRY_ON[name]
    return (retry.attempts, bits, tuple(retry.retriable_statuses),
            tuple([m.encode() for m in retry.methods]),   # uppercase: the model's
            float(retry.per_try_timeout), float(retry.backoff.base),
            float(retry.backoff.ceiling))


def fault_arguments(fault) -> tuple:
    """A route's `fault` as `tables.Route(fault=)` takes it: (delay, delay percent, abort
    status, abort gRPC status, abort percent, header): a missing delay is 0 s at 0%, a missing
    abort status 0, a missing gRPC status -1, the header lowercase bytes or None."""
    delay, abort = fault.delay, fault.abort
    return (float(delay.fixed) if delay is not None else 0.0,
            float(delay.percent) if delay is not None else 0.0,
            (abort.status or 0) if abort is not None else 0,
            abort.grpc_status if abort is not None and abort.grpc_status is not None else -1,
            float(abort.percent) if abort is not None else 0.0,
            fault.only_with_header.encode() if fault.only_with_header is not None else None)


def _direct_headers(resp) -> list[bytes]:
    """A direct response's headers as the flat [name, value, ...] list codecs take (each codec
    adds its own framing: content-length for HTTP/1.1)."""
    out: list[bytes] = []
    for name, value in resp.headers.items():
        out.append(name.lower().encode())
        out.append(str(value).encode())
    return out


def build_filters(config, provided: dict | None, allowed=None) -> dict:
    """One instance per filter per snapshot: provided by the embedder (an instance, or a class
    built with the spec's config), else imported from `python: module:Class`, but only from a
    module on `allowed` (an `engine.filters.loader.FilterModules`; None allows none), and only
    a class that is an `engine.Filter` subclass is ever called (see engine/filters/loader.py)."""
    from engine.filters.base import Filter
    from engine.filters.loader import FilterModules, FilterModuleError, is_filter_class

    allowed = allowed if allowed is not None else FilterModules(())
    built = {}
    for i, spec in enumerate(config.filters):
        source = (provided or {}).get(spec.name)
        if source is None:
            if spec.python is None:
                raise ValueError(f"filter '{spec.name}' has no 'python' class and none was provided")
            source = allowed.load_class(i, spec.python)
        if isinstance(source, type):
            if not is_filter_class(source):
                raise FilterModuleError(f"filters[{i}]", f"filter '{spec.name}': "
                                        f"{source.__qualname__} is not an engine.Filter subclass")
            instance = source(**spec.config)
        else:
            instance = source
        if not isinstance(instance, Filter):
            raise TypeError(f"filter '{spec.name}' is not an engine.Filter")
        built[spec.name] = instance
    return built


def _link_route(route, index: int, clusters: dict, buckets, filters: dict, stats=None) -> Route:
    kw: dict = {}
    if route.filters:
        from engine.filters.base import overrides

        chain = [filters[name] for name in route.filters]
        kw["req_filters"] = tuple(f for f in chain if overrides(f, "request"))
        kw["resp_filters"] = tuple(f for f in chain if overrides(f, "response"))
    if route.direct_response is not None:
        kw.update(direct=True, direct_status=route.direct_response.status,
                  direct_headers=_direct_headers(route.direct_response),
                  direct_body=route.direct_response.body.encode())
    else:
        targets = [clusters[t.cluster] for t in route.to]
        kw["clusters"] = targets
        if len(targets) > 1:
            kw["split"] = Balancer(policy_from_name("weighted_round_robin"),
                                   [t.weight for t in route.to],
                                   [t.cluster.encode() for t in route.to], 0)
    rw = route.rewrite
    if rw is not None:
        # the model's guarantees: a rewrite of the prefix comes with match.path_prefix, and
        # header names are lowercase
        if rw.path_prefix is not None:
            kw["prefix_from"] = route.match.path_prefix.encode()
            kw["prefix_to"] = rw.path_prefix.encode()
        add: list[bytes] = []
        for k, v in rw.set_headers.items():
            add += [k.encode(), v.encode()]
        kw["add_headers"] = add
        kw["drop_names"] = tuple(sorted({k.encode() for k in rw.set_headers}
                                        | {k.encode() for k in rw.remove_headers}))
    rl = route.rate_limit
    if rl is not None:
        # the identity spells `per` as the user does: a limit keeps its buckets across reloads
        kw["limiter"] = Limiter(buckets, stable_id("limit", route.name, rl.rate, rl.burst,
                                                   str(rl.per)),
                                float(rl.rate), int(rl.burst))
        kw["limit_per"] = LIMIT_PER[rl.per.kind]
        kw["limit_header"] = rl.per.name.encode()      # lowercase already (the model's)
    if route.timeout:
        kw["timeout"] = float(route.timeout)
    # the model's guarantee: none of the three on a direct response
    if route.retry is not None:
        kw["retry"] = retry_arguments(route.retry)
    if route.fault is not None:
        kw["fault"] = fault_arguments(route.fault)
    if route.mirror is not None:
        kw["mirror"] = (clusters[route.mirror.cluster], float(route.mirror.percent))
    if stats is not None:
        kw["stats_slot"] = stats.route_slot(route.name)
    return Route(route.name, index, **kw)


def router_entry(match) -> tuple:
    """A route's match block as the primitive tuple `Router` takes (the 7th element is
    match.client_identity as bytes, or None). Per route of every reload, so the common shapes
    (no host, no methods, no headers) take no loop."""
    host = match.host             # lowercase already (the model's)
    if not host:
        hk, hv = HOST_ANY, b""
    elif host.startswith("*."):
        hk, hv = HOST_SUFFIX, host[1:].encode()
    else:
        hk, hv = HOST_EXACT, host.encode()
    if match.path is not None:
        pk, pv = PATH_EXACT, match.path.encode()
    elif match.path_prefix is not None:
        pk, pv = PATH_PREFIX, match.path_prefix.encode()
    elif match.path_regex is not None:
        pk, pv = PATH_REGEX, match.path_regex.encode()  # compiled by the router, with RE2
    else:
        pk, pv = PATH_ANY, b""
    # methods uppercase, header names lowercase: the model's
    methods = tuple([m.encode() for m in match.methods]) if match.methods else None
    headers = tuple([(k.encode(), v.encode()) for k, v in match.headers.items()]) \
        if match.headers else ()
    identity = match.client_identity.encode() if match.client_identity is not None else None
    return (hk, hv, pk, pv, methods, headers, identity)


def path_flags(paths) -> int:
    """A listener's `paths` settings as paths.PATH_* bits (also used by explain)."""
    return flags_for(paths.normalize, paths.merge_slashes, paths.escaped_slashes == "keep")


def link(config, buckets, previous: Tables | None = None, version: object = None,
         filters: dict | None = None, stats=None, filter_modules=None,
         tls_contexts=None, endpoints=None) -> Tables:
    """Build the Tables for `config`, reusing pools of `previous` that did not change.
    `filters` maps filter names to instances or classes the embedding program provides;
    `filter_modules` (engine.filters.loader.FilterModules) is the allow list of modules the
    others may be imported from (None: none may). `tls_contexts` is the
    `tls_client.ClientContexts` cache (default: the process's), which keeps a cluster's
    SSLContext, and so its pools, across reloads that do not change its TLS. `endpoints` is the
    node's shared endpoint state (engine/_fast/endpoints.pyx): the balancers of clusters with a
    health check (or outlier detection) follow it; it needs `stats`, whose slots index it."""
    built = build_filters(config, filters, filter_modules)
    old_pools = previous.pools if previous is not None else {}
    pools: dict = {}
    contexts = (tls_contexts if tls_contexts is not None else tls_client.CONTEXTS) \
        .resolve(config.clusters)
    clusters = {c.name: _link_cluster(c, old_pools, pools, stats, contexts.get(c.name),
                                      endpoints)
                for c in config.clusters}
    listeners = _link_listeners(config, clusters, buckets, built, stats, previous)
    return Tables(version, listeners, clusters, pools,
                  max_loop_delay=config.overload.max_loop_delay)


def _tls_arguments(lst, previous: Tables | None) -> dict:
    """A TLS listener's keyword arguments to `Listener`: its server SSLContext (the previous
    tables' one when it still fits, so the listening server goes on: engine/policy/tls_server.py)
    with the certificates read from their files now, the XFCC mode and our own URI SAN."""
    if lst.tls is None:
        return {}
    old = previous.listeners.get(lst.name) if previous is not None else None
    ctx = tls_server.context_for(lst, old.ssl_context if old is not None else None)
    return {"tls": True, "xfcc": XFCC[lst.tls.forward_client_cert],
            "tls_uri": ctx.selection.own_uri, "ssl_context": ctx}


def _link_listeners(config, clusters: dict, buckets, filters: dict, stats,
                    previous: Tables | None = None) -> dict:
    """Each listener's Router and Routes. With the cyclic GC paused: the build allocates a few
    objects per route, every one kept by the new tables, so a collection halfway (several, at
    10,000 routes, each walking the whole heap of a worker that holds two configs) would find
    nothing to free and only stall the worker's event loop (3x the build itself, measured)."""
    routes_by_name = {r.name: r for r in config.routes}
    listeners = {}
    with _gc_paused():
        for lst in config.listeners:
            chosen = [routes_by_name[name] for name in lst.routes]
            routes = [_link_route(route, i, clusters, buckets, filters, stats)
                      for i, route in enumerate(chosen)]
            router = Router([router_entry(route.match) for route in chosen])
            lim, tmo, h2 = lst.limits, lst.timeouts, lst.http2
            listeners[lst.name] = Listener(
                lst.name, lst.address.host, lst.address.port, router, routes,
                lim.max_head_bytes, lim.max_headers, lim.max_uri_bytes,
                max_connections=lim.max_connections,
                header_timeout=tmo.header, idle_timeout=tmo.idle,
                body_timeout=tmo.request_body, send_timeout=tmo.send,
                max_duration=tmo.max_connection_duration,
                path_flags=path_flags(lst.paths),
                stats_slot=stats.listener_slot(lst.name) if stats is not None else -1,
                http1="http1" in lst.protocols, http2="http2" in lst.protocols,
                h2_max_streams=h2.max_concurrent_streams,
                h2_stream_window=h2.initial_stream_window,
                h2_conn_window=h2.initial_connection_window,
                **_tls_arguments(lst, previous))
    return listeners


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
