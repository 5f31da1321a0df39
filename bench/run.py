"""Side-by-side macro benchmarks: sluice against nginx, HAProxy, a uvloop + httptools baseline and
the upstream itself, on the same upstream, rounds interleaved (issue 4).

    python -m bench                       # every scenario, 3 rounds of 5 s per tool and peer
    python -m bench --quick --strict      # the CI smoke: about 2 minutes in all
    python -m bench --scenarios get,idle --rounds 5 --duration 10

Absolute numbers on a small shared machine are noise, so every figure that matters is a ratio
to a peer measured in the same run: each round runs every peer once (the order rotates from
round to round), so drift in the machine's load hits all peers alike, and the table shows the
median over rounds. Requests per CPU-second of the proxy's own processes (utime + stime of the
process and its children, from /proc) is reported beside req/s because on two cores the proxy,
the upstream and the load generator saturate the machine together, which compresses
differences in plain req/s.

Before a peer is measured in a scenario it is checked: the right status and body (bytes
compared), keep-alive honoured, and no connection churn to the upstream during a warm-up burst
(upstream connections opened, from nginx's stub_status, must stay within the pool a proxy needs
for the load's concurrency). A peer with a wrong answer is reported and not measured; one that
churns is measured and flagged, never silently. Speed never fails the run: the exit status is 1
when the harness itself could not run a scenario, and with --strict also when a peer did not
start or answered wrong (so that CI notices the harness rotting).

HTTP/2 (issue 10): h2c, h2tls and grpc drive each proxy with h2load over HTTP/2 (10 connections
x 10 streams), beside nghttpx, nginx and HAProxy, and h2mem measures memory per idle HTTP/2
connection and per open stream (bench/h2.py). Their answer check is made over HTTP/2 too. A peer
that cannot do a scenario yet (sluice's grpc row until it has HTTP/2 upstreams) is reported
"n/a (not supported)" and never fails the run.

Features a route does not use cost nothing (issue 11): resilience runs the small GET through
sluice twice, plain (sluice-1w) and with every resilience feature configured on the route, its
cluster and the node but none triggering (sluice-1w-res: passing health checks, outlier
detection, high circuit breakers, a retry budget, a retry policy, a fault gated on a header never
sent, a mirror at 0%, overload shedding at 1 s of loop lag), alternating A B A B within each
round, and reports resilient / plain for req/s, p99 and CPU per request, each the median of the
ratios of a run to the plain run next to it (the target: at most 5% worse). No other proxy
runs in it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from bench import load
from bench.h2 import check_h2_answers, measure_h2mem
from bench.peers import (
    FAULT_HEADER,
    FAULT_STATUS,
    GRPC_HEADERS,
    GRPC_REPLY,
    GRPC_REQUEST,
    POST_REPLY,
    ROOT,
    SIZES,
    SMALL_BODY,
    Direct,
    GrpcUpstream,
    HoldUpstream,
    Peer,
    Sluice,
    Unsupported,
    UpstreamNginx,
    Variant,
    all_peers,
    payload,
)
from bench.procs import cpu_seconds, raise_nofile, rss_kib

RESULTS = Path(__file__).resolve().parent / "results"
POST_SIZE = 4096


@dataclass
class Scenario:
    name: str
    title: str
    path: str = "/"
    variant: Variant = field(default_factory=Variant)
    tools: tuple[str, ...] = ("wrk", "h2load")
    quick_tools: tuple[str, ...] = ("wrk",)
    post: bool = False
    close: bool = False
    conns: int = 50
    streams: int = 1               # concurrent streams per connection (HTTP/2 scenarios)
    expect: bytes = SMALL_BODY
    idle: bool = False
    h2mem: bool = False            # memory per idle HTTP/2 connection and per open stream
    quick: bool = True             # in --quick's default list (CI)
    # a scenario comparing sluice with itself: the peer every other one is a ratio to, and how
    # many times each peer is measured per round, alternating (A B A B), because the difference
    # sought (5%) is smaller than the noise of one run on a shared machine
    compare_to: str | None = None
    repeat: int = 1

    @property
    def concurrency(self) -> int:
        return self.conns * self.streams


SCENARIOS = [
    Scenario("get", "small GET, keep-alive", quick_tools=("wrk", "h2load")),
    Scenario("get16k", "16 KiB response", path="/16k", expect=payload(SIZES["/16k"])),
    Scenario("get1m", "1 MiB response", path="/1m", conns=16, expect=payload(SIZES["/1m"])),
    Scenario("post4k", "4 KiB POST", path="/post", post=True, expect=POST_REPLY,
             quick_tools=("wrk", "h2load")),
    Scenario("newconn", "new connection per request", close=True, tools=("wrk",)),
    Scenario("routes10", "10 routes, match at the end", path="/svc9/x", variant=Variant(10)),
    Scenario("routes1000", "1,000 routes, match at the end", path="/svc999/x",
             variant=Variant(1000)),
    Scenario("ratelimit", "rate limiter on, never refusing", variant=Variant(ratelimit=True)),
    Scenario("accesslog", "small GET, access log on (sluice: json, nginx: combined, to a file)",
             variant=Variant(access_log=True)),
    # the proxy terminates TLS (TLS 1.3, ECDSA P-256) to the plaintext upstream; not in --quick
    Scenario("tls", "small GET over HTTPS, keep-alive", variant=Variant(tls=True), quick=False),
    # wrk reuses each connection's TLS session, so this is a TLS 1.3 *resumed* handshake (PSK
    # ticket + ECDHE) per request; h2load -D does not stop when the server closes each connection
    Scenario("tlsnew", "new TLS connection per request (resumed by ticket)",
             variant=Variant(tls=True), close=True, tools=("wrk",), quick=False),
    Scenario("idle", "memory per idle keep-alive connection", idle=True),
    # HTTP/2 to the proxy, HTTP/1.1 to the same upstream; issue 10's shape: -c10 -m10
    Scenario("h2c", "small GET over h2c (prior knowledge)", variant=Variant(h2=True),
             tools=("h2load",), quick_tools=("h2load",), conns=10, streams=10),
    Scenario("h2tls", "small GET over h2 (TLS 1.3, ALPN)", variant=Variant(h2=True, tls=True),
             tools=("h2load",), quick_tools=("h2load",), conns=10, streams=10, quick=False),
    # a gRPC unary call, HTTP/2 on both sides (the upstream is nghttpd: see GrpcUpstream)
    Scenario("grpc", "gRPC unary call over h2c, HTTP/2 upstream", path="/bench.Echo/Unary",
             variant=Variant(h2=True, grpc=True), tools=("h2load",), quick_tools=("h2load",),
             conns=10, streams=10, expect=GRPC_REPLY, quick=False),
    Scenario("h2mem", "memory per idle HTTP/2 connection and per open stream",
             variant=Variant(h2=True), h2mem=True, quick=False),
    # issue 11: sluice plain against sluice with every resilience feature configured and none
    # triggering; in --quick (two sluices, 6 runs of 1 s: ~10 s) because CI must notice when the
    # resilient config stops validating or its fault stops being gated
    Scenario("resilience", "small GET, every resilience feature configured, none triggering",
             variant=Variant(resilience=True), tools=("wrk",), compare_to="sluice-1w",
             repeat=3),
]
BY_NAME = {s.name: s for s in SCENARIOS}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- checks ------------------------------------------------------------------------------------


def check_answers(peer: Peer, sc: Scenario) -> str | None:
    """None when the peer answers this scenario's request right (twice on one connection)."""
    if sc.variant.h2:
        return check_h2_answers(peer, sc)
    body = b"x" * POST_SIZE if sc.post else None
    headers = {"Host": "bench"}
    if sc.close:
        headers["Connection"] = "close"
    if peer.scheme == "https":
        tls = ssl.create_default_context(cafile=peer.ca)
        tls.set_alpn_protocols(["http/1.1"])
        conn = http.client.HTTPSConnection("127.0.0.1", peer.port, timeout=10, context=tls)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=10)
    try:
        if peer.scheme == "https":
            conn.connect()
            if conn.sock.version() != "TLSv1.3":      # what the tls scenarios measure
                return f"negotiated {conn.sock.version()}, not TLSv1.3"
        for _ in range(2 if not sc.close else 1):
            conn.request("POST" if sc.post else "GET", sc.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                return f"status {r.status} for {sc.path}"
            if data != sc.expect:
                return f"wrong body for {sc.path}: {len(data)} bytes, expected {len(sc.expect)}"
            if not sc.close and r.will_close:
                return "closed a keep-alive connection"
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    if getattr(peer, "resilient", False):
        return check_fault_is_live(peer, sc)
    return None


def check_fault_is_live(peer: Peer, sc: Scenario) -> str | None:
    """None when a request carrying FAULT_HEADER gets the configured fault: a resilience config
    the proxy ignored would cost nothing too, and the comparison would prove nothing."""
    conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=10)
    try:
        conn.request("GET", sc.path, headers={"Host": "bench", FAULT_HEADER: "1"})
        r = conn.getresponse()
        r.read()
        if r.status != FAULT_STATUS:
            return (f"the fault is not live: status {r.status} with {FAULT_HEADER}, "
                    f"expected {FAULT_STATUS}")
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__} with {FAULT_HEADER}: {exc}"
    finally:
        conn.close()
    return None


def upstream_delta(before: dict | None, after: dict | None) -> tuple[int | None, int | None]:
    if before is None or after is None:          # an upstream without counters (grpc)
        return None, None
    return (after["accepts"] - before["accepts"] - 1, after["requests"] - before["requests"] - 1)


def load_kwargs(sc: Scenario, tool: str, body_file: Path) -> dict:
    """What a load tool needs beyond url, duration and connections for this scenario."""
    kw: dict = {}
    if sc.post or sc.variant.grpc:
        kw["post_body"] = body_file
    if sc.close:
        kw["close"] = True
    if tool == "h2load" and sc.variant.h2:
        kw.update(h2=True, streams=sc.streams)
    if sc.variant.grpc:
        kw["headers"] = GRPC_HEADERS
    return kw


def extra_upstream_requests(upstream: int | None, answered: int, in_flight: int) -> str | None:
    """A problem when the upstream saw more requests than the load had answered, beyond the
    `in_flight` ones still on their way when it stopped and a few health-check probes: those
    the proxy made itself, retries or mirrored copies (the resilience scenario configures both,
    and neither may trigger)."""
    if upstream is None or upstream <= answered + in_flight + 10:
        return None
    return f"the upstream saw {upstream} requests for {answered} answered (retried or mirrored)"


def warm_up(peer: Peer, sc: Scenario, upstream: UpstreamNginx, seconds: float,
            post_file: Path) -> dict:
    """A burst of the scenario's load, counting the upstream connections it opens."""
    before = upstream.stats()
    tool = "h2load" if sc.variant.h2 else "wrk"       # wrk speaks HTTP/1.1 only
    res = load.TOOLS[tool](peer.url(sc.path), seconds, sc.conns,
                           **load_kwargs(sc, tool, post_file))
    accepts, requests = upstream_delta(before, upstream.stats())
    out = {"requests": res["requests"], "upstream_conns_opened": accepts,
           "upstream_requests": requests, "non2xx": res["non2xx"], "errors": res["errors"]}
    problems = []
    if res.get("failed"):
        problems.append("load failed: " + res["failed"].splitlines()[-1])
    if res["non2xx"]:
        problems.append(f"{res['non2xx']} non-2xx responses")
    if res["errors"] and not sc.close:
        problems.append(f"{res['errors']} socket errors")
    extra = extra_upstream_requests(requests, res["requests"], sc.concurrency)
    if extra:
        problems.append(extra)
    # a pool needs at most one connection per concurrent request: more is churn
    if not isinstance(peer, Direct) and accepts is not None and accepts > 2 * sc.concurrency:
        problems.append(f"connection churn: {accepts} upstream connections for "
                        f"{res['requests']} requests")
        out["churn"] = True
    out["problems"] = problems
    return out


# -- measuring ---------------------------------------------------------------------------------


def measure(peer: Peer, sc: Scenario, tool: str, upstream: UpstreamNginx, duration: float,
            post_file: Path) -> dict:
    pids, up_pids = peer.pids(), upstream.pids()
    before = upstream.stats()
    cpu0, up0 = cpu_seconds(pids), cpu_seconds(up_pids)
    res = load.TOOLS[tool](peer.url(sc.path), duration, sc.conns,
                           **load_kwargs(sc, tool, post_file))
    cpu1, up1 = cpu_seconds(pids), cpu_seconds(up_pids)
    accepts, requests = upstream_delta(before, upstream.stats())
    res.update(tool=tool, cpu_s=round(cpu1 - cpu0, 3) if peer.cpu_counted else None,
               upstream_cpu_s=round(up1 - up0, 3), upstream_conns_opened=accepts,
               upstream_requests=requests)
    return res


def measure_idle(peer: Peer, count: int) -> dict:
    pids = peer.pids()
    time.sleep(0.3)
    before = rss_kib(pids)
    client = subprocess.Popen([sys.executable, "-m", "bench.idle", str(peer.port), str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = client.stdout.readline().split()
        opened = int(line[1]) if len(line) == 2 else 0
        time.sleep(0.5)
        after = rss_kib(peer.pids())
    finally:
        client.stdin.close()
        client.wait(30)
    out = {"conns": opened, "rss_before_kib": before, "rss_after_kib": after,
           "bytes_per_conn": round((after - before) * 1024 / opened) if opened else None}
    if opened < count:
        out["problems"] = [f"only {opened} of {count} connections opened"]
    return out


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if not r.get("failed")]
    per_cpu = [r["requests"] / r["cpu_s"] for r in ok if r.get("cpu_s")]
    reqs = sum(r["requests"] for r in ok)
    opened = [r["upstream_conns_opened"] for r in ok if r["upstream_conns_opened"] is not None]
    return {
        "rounds": len(ok),
        "rps": median([r["rps"] for r in ok]),
        "p50_ms": median([r["p50_ms"] for r in ok]),
        "p99_ms": median([r["p99_ms"] for r in ok]),
        "req_per_cpu_s": median(per_cpu),
        "upstream_conns_per_1k": (round(1000 * sum(opened) / reqs, 2)
                                  if reqs and len(opened) == len(ok) else None),
        "non2xx": sum(r["non2xx"] for r in ok),
        "errors": sum(r["errors"] for r in ok),
        "failed_runs": len(runs) - len(ok),
    }


PEERS_OF_SLUICE = ("nghttpx", "nginx", "haproxy")     # the other proxies (p99 of the best)


def add_ratios(peers: dict, compare_to: str | None = None) -> None:
    """vs_nginx / vs_direct / vs_nghttpx / vs_haproxy (req/s), cpu_vs_nginx and cpu_vs_nghttpx
    (req per CPU-second), p99_vs_nginx and p99_vs_best (the lowest p99 among the other proxies), per
    tool. With `compare_to` (a peer's name): vs_ref (req/s), p99_vs_ref and cpu_per_req_vs_ref
    (CPU-seconds per request, so above 1 is worse, like p99) against that peer (`ref_ratios`)."""
    def summary(name, tool):
        return peers.get(name, {}).get("summary", {}).get(tool, {})

    for p in peers.values():
        for tool, s in p.get("summary", {}).items():
            if compare_to:
                s.update(ref_ratios(p, peers.get(compare_to, {}), tool))
            ref = summary("nginx", tool)
            s["vs_nginx"] = _ratio(s["rps"], ref.get("rps"))
            s["vs_direct"] = _ratio(s["rps"], summary("direct", tool).get("rps"))
            s["vs_nghttpx"] = _ratio(s["rps"], summary("nghttpx", tool).get("rps"))
            s["vs_haproxy"] = _ratio(s["rps"], summary("haproxy", tool).get("rps"))
            s["cpu_vs_nginx"] = _ratio(s["req_per_cpu_s"], ref.get("req_per_cpu_s"))
            s["cpu_vs_nghttpx"] = _ratio(s["req_per_cpu_s"],
                                         summary("nghttpx", tool).get("req_per_cpu_s"))
            s["p99_vs_nginx"] = _ratio(s["p99_ms"], ref.get("p99_ms"))
            best = min((summary(n, tool)["p99_ms"] for n in PEERS_OF_SLUICE
                        if summary(n, tool).get("p99_ms")), default=None)
            s["p99_vs_best"] = _ratio(s["p99_ms"], best)


def ref_ratios(peer: dict, ref: dict, tool: str) -> dict:
    """vs_ref, p99_vs_ref and cpu_per_req_vs_ref of `peer` against `ref`: the median of the
    ratios of each run to the reference's run of the same index, which ran next to it (the
    order alternates, A B A B), so that a slow drift in the machine's load cancels out; the
    ratio of the medians when there are no such pairs (no runs recorded, a failed run)."""
    def per_req_cpu(r):
        return r["cpu_s"] / r["requests"] if r.get("cpu_s") and r.get("requests") else None

    def pick(rec):
        return [r for r in rec.get("runs", []) if r.get("tool") == tool]

    mine, theirs = pick(peer), pick(ref)
    if mine and len(mine) == len(theirs) and not any(r.get("failed") for r in mine + theirs):
        def paired(get):
            ratios = [get(a) / get(b) for a, b in zip(mine, theirs) if get(a) and get(b)]
            return round(statistics.median(ratios), 3) if ratios else None

        return {"vs_ref": paired(lambda r: r["rps"]), "p99_vs_ref": paired(lambda r: r["p99_ms"]),
                "cpu_per_req_vs_ref": paired(per_req_cpu), "ref_paired_runs": len(mine)}
    s, r = peer.get("summary", {}).get(tool, {}), ref.get("summary", {}).get(tool, {})
    return {"vs_ref": _ratio(s.get("rps"), r.get("rps")),
            "p99_vs_ref": _ratio(s.get("p99_ms"), r.get("p99_ms")),
            "cpu_per_req_vs_ref": _ratio(r.get("req_per_cpu_s"), s.get("req_per_cpu_s")),
            "ref_paired_runs": 0}


def round_order(peers: list, rnd: int, repeat: int = 1) -> list:
    """The order of round `rnd`: rotated by one peer each round, so that no peer always runs
    first (or right after the same other peer), then repeated: A B A B, B A B A."""
    if not peers:
        return []
    k = rnd % len(peers)
    return (peers[k:] + peers[:k]) * repeat


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


# -- the run -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.ncpu = os.cpu_count() or 1
        self.d = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
        self.post_file = self.d / "post.bin"
        self.post_file.write_bytes(b"x" * POST_SIZE)
        self.grpc_file = self.d / "grpc.bin"
        self.grpc_file.write_bytes(GRPC_REQUEST)
        self.results: dict = {"scenarios": {}}
        self.upstream: UpstreamNginx | None = None
        self.grpc_upstream: GrpcUpstream | None = None      # started by the first grpc group
        self.unsupported: dict[str, str] = {}               # peer -> why, for the current group
        self.broken = False

    def run(self) -> int:
        args = self.args
        names = args.scenarios or [s.name for s in SCENARIOS if s.quick or not args.quick]
        scenarios = [BY_NAME[n] for n in names]
        self.results.update(meta(args, self.ncpu))
        log(f"bench: {len(scenarios)} scenario(s), {args.rounds} round(s) of {args.duration:g}s "
            f"per tool and peer; {self.ncpu} CPU(s); temp dir {self.d}")
        self.upstream = UpstreamNginx(self.d / "upstream")
        try:
            groups: dict[Variant, list[Scenario]] = {}
            for sc in scenarios:
                if not sc.idle and not sc.h2mem:
                    groups.setdefault(sc.variant, []).append(sc)
            for variant, group in groups.items():
                self.run_group(variant, group)
            if any(sc.idle for sc in scenarios):
                self.run_idle()
            if any(sc.h2mem for sc in scenarios):
                self.run_h2mem()
        finally:
            self.upstream.stop()
            if self.grpc_upstream is not None:
                self.grpc_upstream.stop()
            if not self.args.keep:
                shutil.rmtree(self.d, ignore_errors=True)
        if build_id(Sluice.root) != self.results["sluice"]["build"]:
            self.results.setdefault("warnings", []).append(
                "the sluice build (engine/_fast/*.so) changed during the run: peers started "
                "before and after the rebuild ran different code; run again, or pin a copy "
                "with --sluice-root")
        self.results["targets"] = targets(self.results)
        path = self.save()
        print_report(self.results, sys.stdout)
        print(f"\nJSON: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        if self.args.strict and (self.results.get("peer_failures") or self.unmeasured()):
            log("bench: --strict: a peer did not start or failed its answer check")
            return 1
        return 1 if self.broken else 0

    def unmeasured(self) -> list[str]:
        return [f"{sc}/{peer}" for sc, rec in self.results["scenarios"].items()
                for peer, p in rec["peers"].items()
                if "unsupported" not in p and not p.get("check", {}).get("measured", "conns" in p)]

    def start_peers(self, variant: Variant, upstream=None) -> list[Peer]:
        started = []
        self.unsupported = {}
        for peer in all_peers(self.ncpu):
            if self.args.peers and peer.name not in self.args.peers:
                continue
            if not peer.ok_variant(variant):
                continue
            try:
                peer.start(variant, upstream or self.upstream, self.d)
                started.append(peer)
            except Unsupported as exc:  # not there yet: n/a in the table, not a failure
                log(f"  {peer.name}: n/a (not supported): {exc}")
                self.unsupported[peer.name] = str(exc)
                peer.stop()
            except Exception as exc:   # a peer that does not start is a finding, not a crash
                log(f"  {peer.name}: did not start: {exc}\n{peer.log_tail()}")
                self.note_failure(peer.name, f"did not start: {exc}")
                peer.stop()
        return started

    def note_failure(self, peer: str, why: str) -> None:
        self.results.setdefault("peer_failures", []).append({"peer": peer, "why": why})

    def upstream_for(self, variant: Variant):
        if not variant.grpc:
            return self.upstream
        if self.grpc_upstream is None:
            self.grpc_upstream = GrpcUpstream(self.d / "grpc-upstream")
        return self.grpc_upstream

    def run_group(self, variant: Variant, group: list[Scenario]) -> None:
        try:
            upstream = self.upstream_for(variant)
        except Exception as exc:      # no nghttpd: the grpc scenario cannot run at all
            log(f"the upstream for {', '.join(sc.name for sc in group)} did not start: {exc}")
            self.note_failure("grpc-upstream", f"did not start: {exc}")
            self.broken = True
            return
        peers = self.start_peers(variant, upstream)
        try:
            for sc in group:
                try:
                    self.run_scenario(sc, peers, upstream)
                except Exception:
                    log(f"scenario {sc.name} broke:\n{traceback.format_exc()}")
                    self.broken = True
        finally:
            for p in peers:
                p.stop()

    def run_scenario(self, sc: Scenario, peers: list[Peer], upstream=None) -> None:
        args = self.args
        upstream = upstream or self.upstream
        body_file = self.grpc_file if sc.variant.grpc else self.post_file
        tools = sc.quick_tools if args.quick else sc.tools
        tools = tuple(t for t in tools if not args.tools or t in args.tools)
        log(f"== {sc.name}: {sc.title}")
        out = self.results["scenarios"][sc.name] = {
            "title": sc.title, "path": sc.path, "conns": sc.conns, "tools": list(tools),
            "peers": {}}
        if sc.compare_to:
            out.update(compare_to=sc.compare_to, repeat=sc.repeat)
        if sc.variant.h2:
            out.update(h2=True, streams=sc.streams)
        for name, why in self.unsupported.items():
            out["peers"][name] = {"unsupported": why}
        ready = []
        for peer in peers:
            rec = out["peers"][peer.name] = {}
            problem = check_answers(peer, sc)
            if problem:
                rec["check"] = {"problems": [problem], "measured": False}
                log(f"  {peer.name}: FAILED check, not measured: {problem}")
                continue
            rec["check"] = warm_up(peer, sc, upstream, args.warmup, body_file)
            rec["check"]["measured"] = True
            if rec["check"]["problems"]:
                log(f"  {peer.name}: check: {'; '.join(rec['check']['problems'])} "
                    "(measured, flagged)")
            rec["runs"] = []
            ready.append(peer)
        for rnd in range(args.rounds):
            for peer in round_order(ready, rnd, sc.repeat):
                for tool in tools:
                    r = measure(peer, sc, tool, upstream, args.duration, body_file)
                    r["round"] = rnd
                    out["peers"][peer.name]["runs"].append(r)
                    log(f"  round {rnd + 1} {peer.name:11} {tool:6} {r['rps']:10.0f} req/s"
                        + (f"  FAILED: {r['failed'][-200:]}" if r.get("failed") else ""))
        for peer in ready:
            rec = out["peers"][peer.name]
            rec["summary"] = {t: summarise([r for r in rec["runs"] if r["tool"] == t])
                              for t in tools}
        add_ratios(out["peers"], sc.compare_to)

    def run_idle(self) -> None:
        count = self.args.idle_conns
        log(f"== idle: memory per idle keep-alive connection ({count} connections)")
        out = self.results["scenarios"]["idle"] = {
            "title": BY_NAME["idle"].title, "conns": count, "peers": {}}
        peers = self.start_peers(Variant())
        try:
            for peer in peers:
                problem = check_answers(peer, BY_NAME["get"])
                if problem:
                    out["peers"][peer.name] = {"check": {"problems": [problem]}}
                    continue
                res = out["peers"][peer.name] = measure_idle(peer, count)
                log(f"  {peer.name:11} {res['conns']} conns, "
                    f"{res['bytes_per_conn']} bytes per connection")
        except Exception:
            log(f"scenario idle broke:\n{traceback.format_exc()}")
            self.broken = True
        finally:
            for p in peers:
                p.stop()

    def run_h2mem(self) -> None:
        conns, streams = self.args.h2_conns, self.args.h2_streams
        sc = BY_NAME["h2mem"]
        log(f"== h2mem: {sc.title} ({conns} connections, then {streams} streams)")
        out = self.results["scenarios"]["h2mem"] = {
            "title": sc.title, "conns": conns, "streams": streams, "h2": True, "peers": {}}
        hold = HoldUpstream(self.d / "hold-upstream")
        peers = []
        try:
            peers = self.start_peers(sc.variant, hold)
            for name, why in self.unsupported.items():
                out["peers"][name] = {"unsupported": why}
            for peer in peers:
                problem = check_answers(peer, sc)
                if problem:
                    out["peers"][peer.name] = {"check": {"problems": [problem]}}
                    log(f"  {peer.name}: FAILED check, not measured: {problem}")
                    continue
                res = out["peers"][peer.name] = measure_h2mem(peer, conns, streams, hold)
                log(f"  {peer.name:11} {res['conns']} conns, {res['bytes_per_conn']} bytes per "
                    f"connection; {res['streams']} streams, {res['bytes_per_stream']} bytes per "
                    "stream" + (f"  ! {'; '.join(res['problems'])}" if res.get("problems")
                                else ""))
        except Exception:
            log(f"scenario h2mem broke:\n{traceback.format_exc()}")
            self.broken = True
        finally:
            for p in peers:
                p.stop()
            hold.stop()

    def save(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
        name = f"{stamp}_{self.results['commit']}{'_quick' if self.args.quick else ''}.json"
        path = RESULTS / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, sort_keys=False) + "\n")
        tmp.rename(path)
        return path


def meta(args, ncpu: int) -> dict:
    def cmd(*argv) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    root = str(Sluice.root)
    commit = cmd("git", "-C", root, "rev-parse", "--short", "HEAD")
    if not re.fullmatch(r"[0-9a-f]{4,40}", commit):     # a copy (--sluice-root): name it by ours
        commit = (cmd("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD") or "nogit") + "-copy"
    elif cmd("git", "-C", root, "status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), "")
    except OSError:
        pass
    import uvloop
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {"cpus": ncpu, "cpu": cpu, "kernel": platform.release(),
                    "loadavg_at_start": os.getloadavg()[0]},
        "versions": {
            "python": platform.python_version(), "uvloop": uvloop.__version__,
            "nginx": cmd("nginx", "-v").split("/")[-1],
            "haproxy": (cmd("haproxy", "-v").split() or ["", "", ""])[2],
            "wrk": " ".join(cmd("wrk", "-v").split()[:2]),
            "h2load": cmd("h2load", "--version").split("/")[-1],
            "nghttpx": cmd("nghttpx", "--version").split("/")[-1],
        },
        "args": {"quick": args.quick, "rounds": args.rounds, "duration_s": args.duration,
                 "warmup_s": args.warmup, "idle_conns": args.idle_conns,
                 "h2_conns": args.h2_conns, "h2_streams": args.h2_streams},
        "sluice": {"root": root, "build": build_id(Sluice.root)},
    }


def build_id(root: Path) -> str:
    """A hash of the compiled modules sluice runs from: an in-place rebuild during a run (the
    team rebuilds in place) would mix two builds in one table, and is reported."""
    h = hashlib.sha256()
    for so in sorted((root / "engine" / "_fast").glob("*.so")):
        h.update(so.name.encode())
        h.update(so.read_bytes())
    return h.hexdigest()[:12]


# -- report ------------------------------------------------------------------------------------


def targets(results: dict) -> list[dict]:
    """The targets of issues 4, 8, 10 and 11, evaluated on this run (informational: speed never
    fails the run)."""
    sc = results["scenarios"]
    out = []

    def s(scn, peer, tool="wrk"):
        return sc.get(scn, {}).get("peers", {}).get(peer, {}).get("summary", {}).get(tool)

    def add(what, value, op, limit, goal=None):
        if value is None:
            return
        ok = value >= limit if op == ">=" else value <= limit
        out.append({"target": what, "value": round(value, 3), "need": f"{op} {limit}",
                    "goal": goal, "met": ok})

    for tool in ("wrk", "h2load"):
        a, n, h, b = (s("get", p, tool) for p in ("sluice-1w", "nginx", "haproxy", "baseline"))
        if a and n:
            add(f"get/{tool}: sluice-1w / nginx req/s", _ratio(a["rps"], n["rps"]), ">=", 0.85,
                1.1)
            add(f"get/{tool}: sluice-1w / nginx req per CPU-s",
                _ratio(a["req_per_cpu_s"], n["req_per_cpu_s"]), ">=", 0.85, 1.1)
            add(f"get/{tool}: p99 sluice-1w / nginx", _ratio(a["p99_ms"], n["p99_ms"]), "<=", 1.5)
        if a and h:
            add(f"get/{tool}: sluice-1w / haproxy req/s", _ratio(a["rps"], h["rps"]), ">=", 0.85,
                1.1)
            add(f"get/{tool}: sluice-1w / haproxy req per CPU-s",
                _ratio(a["req_per_cpu_s"], h["req_per_cpu_s"]), ">=", 0.85, 1.1)
        if a and b:
            add(f"get/{tool}: sluice-1w / baseline req/s", _ratio(a["rps"], b["rps"]), ">=", 1.4)
            add(f"get/{tool}: sluice-1w / baseline req per CPU-s",
                _ratio(a["req_per_cpu_s"], b["req_per_cpu_s"]), ">=", 1.4)
        many = [p for p in sc.get("get", {}).get("peers", {}) if p.startswith("sluice-")
                and p != "sluice-1w"]
        for p in many:
            m = s("get", p, tool)
            if a and m:
                add(f"get/{tool}: {p} / sluice-1w req/s (scaling)", _ratio(m["rps"], a["rps"]),
                    ">=", 1.7)
    for tool in ("wrk", "h2load"):
        a, n = (s("accesslog", p, tool) for p in ("sluice-1w", "nginx"))
        if a and n:    # issue 8: the access log is on by default, so it must stay cheap
            add(f"accesslog/{tool}: sluice-1w / nginx req/s, both logging",
                _ratio(a["rps"], n["rps"]), ">=", 1.0, 1.1)
    idle = sc.get("idle", {}).get("peers", {})
    mine, theirs = (idle.get(p, {}).get("bytes_per_conn") for p in ("sluice-1w", "nginx"))
    if mine is not None and theirs is not None:
        add("idle: sluice-1w - nginx bytes per connection", mine - theirs, "<=", 4096)
    # issue 10: h2c at least as fast as nghttpx (goal 1.2x); p99 within 1.5x of the best peer
    a = s("h2c", "sluice-1w", "h2load")
    if a:
        add("h2c/h2load: sluice-1w / nghttpx req/s", a.get("vs_nghttpx"), ">=", 1.0, 1.2)
    for name in ("h2c", "h2tls", "grpc"):
        a = s(name, "sluice-1w", "h2load")
        if a:
            add(f"{name}/h2load: p99 sluice-1w / best peer", a.get("p99_vs_best"), "<=", 1.5)
    # issue 11: features a route does not use cost nothing, under 5% by every measure
    for tool in ("wrk", "h2load"):
        a = s("resilience", "sluice-1w-res", tool)
        if a:
            add(f"resilience/{tool}: resilient / plain req/s", a.get("vs_ref"), ">=", 0.95)
            add(f"resilience/{tool}: resilient / plain CPU per request",
                a.get("cpu_per_req_vs_ref"), "<=", 1.05)
            add(f"resilience/{tool}: resilient / plain p99", a.get("p99_vs_ref"), "<=", 1.05)
    return out


def _f(x, fmt="{:.0f}", none="-") -> str:
    return none if x is None else fmt.format(x)


H1_COLUMNS = (("req/s", 8, "rps", "{:.0f}"), ("p50 ms", 7, "p50_ms", "{:.2f}"),
              ("p99 ms", 7, "p99_ms", "{:.2f}"), ("req/CPU-s", 9, "req_per_cpu_s", "{:.0f}"),
              ("x nginx", 7, "vs_nginx", "{:.2f}"), ("x direct", 8, "vs_direct", "{:.2f}"),
              ("CPU x nginx", 11, "cpu_vs_nginx", "{:.2f}"),
              ("up conn/1k", 10, "upstream_conns_per_1k", "{:.1f}"))
H2_COLUMNS = (("req/s", 8, "rps", "{:.0f}"), ("p50 ms", 7, "p50_ms", "{:.2f}"),
              ("p99 ms", 7, "p99_ms", "{:.2f}"), ("req/CPU-s", 9, "req_per_cpu_s", "{:.0f}"),
              ("x nghttpx", 9, "vs_nghttpx", "{:.2f}"), ("x nginx", 7, "vs_nginx", "{:.2f}"),
              ("x haproxy", 9, "vs_haproxy", "{:.2f}"),
              ("CPU x nghttpx", 13, "cpu_vs_nghttpx", "{:.2f}"),
              ("p99 x best", 10, "p99_vs_best", "{:.2f}"),
              ("up conn/1k", 10, "upstream_conns_per_1k", "{:.1f}"))
# a scenario comparing sluice with itself (compare_to): ratios to that peer, not to nginx
REF_COLUMNS = (("req/s", 8, "rps", "{:.0f}"), ("p50 ms", 7, "p50_ms", "{:.2f}"),
               ("p99 ms", 7, "p99_ms", "{:.2f}"), ("req/CPU-s", 9, "req_per_cpu_s", "{:.0f}"),
               ("x ref", 6, "vs_ref", "{:.3f}"), ("p99 x ref", 9, "p99_vs_ref", "{:.3f}"),
               ("CPU/req x ref", 13, "cpu_per_req_vs_ref", "{:.3f}"),
               ("up conn/1k", 10, "upstream_conns_per_1k", "{:.1f}"))


def _row(cells, widths) -> str:
    return "  ".join(c.rjust(w) if j > 1 else c.ljust(w)
                     for j, (c, w) in enumerate(zip(cells, widths))).rstrip()


def print_report(results: dict, f) -> None:
    m = results["machine"]
    a = results["args"]
    print(f"\nsluice bench {results['commit']} {results['date']} | {m['cpus']} x {m['cpu']}, "
          f"Linux {m['kernel']}, load {m['loadavg_at_start']:.2f} at start | "
          f"{a['rounds']} round(s) x {a['duration_s']:g}s, medians", file=f)
    v = results["versions"]
    sl = results.get("sluice", {})
    print(f"nginx {v['nginx']}, HAProxy {v['haproxy']}, {v['wrk']}, h2load {v['h2load']}, "
          + (f"nghttpx {v['nghttpx']}, " if v.get("nghttpx") else "")
          + f"Python {v['python']}, uvloop {v['uvloop']}; sluice build {sl.get('build', '?')} "
          f"from {sl.get('root', '?')}", file=f)
    for w in results.get("warnings", []):
        print(f"! {w}", file=f)
    for name, sc in results["scenarios"].items():
        if name in ("idle", "h2mem"):
            continue
        columns = (REF_COLUMNS if sc.get("compare_to") else H2_COLUMNS if sc.get("h2")
                   else H1_COLUMNS)
        first = max([11] + [len(p) for p in sc["peers"]])
        widths = (first, 6) + tuple(c[1] for c in columns) + (0,)
        shape = (f"{sc['conns']} connections x {sc['streams']} streams" if sc.get("h2")
                 else f"{sc['conns']} connections")
        shape += f", {sc['path']}"
        if sc.get("compare_to"):
            shape += (f"; each peer {sc['repeat']} times a round, alternating; x ref: the median "
                      f"ratio of a run to the {sc['compare_to']} run next to it")
        print(f"\n{name}: {sc['title']} ({shape})", file=f)
        print(_row(("peer", "tool") + tuple(c[0] for c in columns) + ("check",), widths), file=f)
        for peer, rec in sc["peers"].items():
            if "unsupported" in rec:
                print(f"{peer:{first}}  {'-':6}  n/a (not supported): {rec['unsupported']}",
                      file=f)
                continue
            problems = rec.get("check", {}).get("problems", [])
            check = "ok" if not problems else ("CHURN" if rec["check"].get("churn") else "FAIL")
            if not rec.get("summary"):
                print(f"{peer:{first}}  {'-':6}  {'not measured: ' + '; '.join(problems)}",
                      file=f)
                continue
            for i, (tool, s) in enumerate(rec["summary"].items()):
                cells = ((peer if i == 0 else "", tool)
                         + tuple(_f(s.get(key), fmt) for _, _, key, fmt in columns)
                         + (check if i == 0 else "",))
                if s["non2xx"] or s["errors"] or s["failed_runs"]:
                    cells = cells[:-1] + (cells[-1] + f" non2xx={s['non2xx']} errors={s['errors']}"
                                          f" failed_runs={s['failed_runs']}",)
                print(_row(cells, widths), file=f)
            if problems:
                print(f"{'':{first}}  ! {'; '.join(problems)}", file=f)
    idle = results["scenarios"].get("idle")
    if idle:
        print(f"\nidle: {idle['title']} ({idle['conns']} connections; RSS delta / count)", file=f)
        print(f"{'peer':11}  {'conns':>6}  {'RSS before':>10}  {'RSS after':>10}  "
              f"{'bytes/conn':>10}  {'x nginx':>7}", file=f)
        ref = idle["peers"].get("nginx", {}).get("bytes_per_conn")
        for peer, r in idle["peers"].items():
            if "conns" not in r:
                print(f"{peer:11}  not measured: {'; '.join(r['check']['problems'])}", file=f)
                continue
            ratio = _f(_ratio(r["bytes_per_conn"], ref), "{:.2f}")
            print(f"{peer:11}  {r['conns']:6}  {r['rss_before_kib']:8} K  {r['rss_after_kib']:8} K"
                  f"  {_f(r['bytes_per_conn']):>10}  {ratio:>7}"
                  + (f"  ! {'; '.join(r['problems'])}" if r.get("problems") else ""), file=f)
    mem = results["scenarios"].get("h2mem")
    if mem:
        print(f"\nh2mem: {mem['title']} ({mem['conns']} idle h2c connections, then "
              f"{mem['streams']} streams held open on them; RSS deltas / count; a stream's "
              "figure includes its upstream connection)", file=f)
        print(f"{'peer':11}  {'conns':>6}  {'streams':>7}  {'RSS before':>10}  {'idle':>10}  "
              f"{'streams':>10}  {'B/conn':>7}  {'x nghttpx':>9}  {'B/stream':>8}  "
              f"{'x nghttpx':>9}", file=f)
        ref = mem["peers"].get("nghttpx", {})
        for peer, r in mem["peers"].items():
            if "unsupported" in r:
                print(f"{peer:11}  n/a (not supported): {r['unsupported']}", file=f)
                continue
            if "conns" not in r:
                print(f"{peer:11}  not measured: {'; '.join(r['check']['problems'])}", file=f)
                continue
            print(f"{peer:11}  {r['conns']:6}  {r['streams']:7}  {r['rss_before_kib']:8} K  "
                  f"{r['rss_idle_kib']:8} K  {r['rss_streams_kib']:8} K  "
                  f"{_f(r['bytes_per_conn']):>7}  "
                  f"{_f(_ratio(r['bytes_per_conn'], ref.get('bytes_per_conn')), '{:.2f}'):>9}  "
                  f"{_f(r['bytes_per_stream']):>8}  "
                  f"{_f(_ratio(r['bytes_per_stream'], ref.get('bytes_per_stream')), '{:.2f}'):>9}"
                  + (f"  ! {'; '.join(r['problems'])}" if r.get("problems") else ""), file=f)
    for fail in results.get("peer_failures", []):
        print(f"\n! {fail['peer']}: {fail['why']}", file=f)
    if results.get("targets"):
        print("\ntargets (issues 4, 8, 10 and 11; informational, never fail the run):", file=f)
        for t in results["targets"]:
            goal = f", goal {t['goal']}" if t["goal"] else ""
            print(f"  {'met ' if t['met'] else 'MISS'}  {t['target']}: {t['value']} "
                  f"(need {t['need']}{goal})", file=f)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke: 1 round of 1 s, h2load only in get, post4k and h2c, "
                         "2,000 idle connections, no tls, grpc or h2mem scenarios unless named")
    ap.add_argument("--scenarios", type=lambda s: [x for x in s.split(",") if x],
                    help="comma-separated, from: " + ",".join(BY_NAME))
    ap.add_argument("--peers", type=lambda s: [x for x in s.split(",") if x],
                    help="only these peers: sluice-1w, sluice-Nw (N = CPUs), sluice-1w-res (the "
                         "resilience scenario only), nghttpx (HTTP/2 scenarios only), nginx, "
                         "haproxy, baseline, direct")
    ap.add_argument("--tools", type=lambda s: [x for x in s.split(",") if x],
                    help="only these load generators (wrk, h2load)")
    ap.add_argument("--duration", type=float, help="seconds per measured run (default 5, quick 1)")
    ap.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of the warm-up burst")
    ap.add_argument("--sluice-root", type=Path, metavar="DIR",
                    help="run sluice from this checkout (built in place) instead of this one: "
                         "for before/after comparisons")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a peer does not start or answers wrong (CI: the harness "
                         "must not rot); speed figures never fail the run")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (configs and logs of every peer)")
    ap.add_argument("--idle-conns", type=int, help="idle scenario (default 10000, quick 2000)")
    ap.add_argument("--h2-conns", type=int, default=5000,
                    help="h2mem scenario: idle HTTP/2 connections (default 5000)")
    ap.add_argument("--h2-streams", type=int, default=1000,
                    help="h2mem scenario: streams then held open on them, 100 per connection "
                         "(default 1000)")
    args = ap.parse_args(argv)
    for name in args.scenarios or ():
        if name not in BY_NAME:
            ap.error(f"unknown scenario {name!r}; choose from {', '.join(BY_NAME)}")
    if args.duration is None:
        args.duration = 1.0 if args.quick else 5.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.idle_conns is None:
        args.idle_conns = 2000 if args.quick else 10000
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.sluice_root:
        Sluice.root = args.sluice_root.resolve()
    raise_nofile()
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
