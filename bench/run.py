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
from bench.peers import (
    POST_REPLY,
    ROOT,
    SIZES,
    SMALL_BODY,
    Direct,
    Peer,
    Sluice,
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
    expect: bytes = SMALL_BODY
    idle: bool = False
    quick: bool = True             # in --quick's default list (CI)


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
]
BY_NAME = {s.name: s for s in SCENARIOS}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- checks ------------------------------------------------------------------------------------


def check_answers(peer: Peer, sc: Scenario) -> str | None:
    """None when the peer answers this scenario's request right (twice on one connection)."""
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
    return None


def upstream_delta(before: dict, after: dict) -> tuple[int, int]:
    return (after["accepts"] - before["accepts"] - 1, after["requests"] - before["requests"] - 1)


def warm_up(peer: Peer, sc: Scenario, upstream: UpstreamNginx, seconds: float,
            post_file: Path) -> dict:
    """A burst of the scenario's load, counting the upstream connections it opens."""
    before = upstream.stats()
    res = load.wrk(peer.url(sc.path), seconds, sc.conns, post_body=post_file if sc.post else None,
                   close=sc.close)
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
    # a pool needs at most one connection per concurrent request: more is churn
    if not isinstance(peer, Direct) and accepts > 2 * sc.conns:
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
                           post_body=post_file if sc.post else None,
                           **({"close": True} if sc.close else {}))
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
    return {
        "rounds": len(ok),
        "rps": median([r["rps"] for r in ok]),
        "p50_ms": median([r["p50_ms"] for r in ok]),
        "p99_ms": median([r["p99_ms"] for r in ok]),
        "req_per_cpu_s": median(per_cpu),
        "upstream_conns_per_1k": (round(1000 * sum(r["upstream_conns_opened"] for r in ok) / reqs,
                                        2) if reqs else None),
        "non2xx": sum(r["non2xx"] for r in ok),
        "errors": sum(r["errors"] for r in ok),
        "failed_runs": len(runs) - len(ok),
    }


def add_ratios(peers: dict) -> None:
    """vs_nginx / vs_direct (req/s) and cpu_vs_nginx (req per CPU-second), per tool."""
    for p in peers.values():
        for tool, s in p.get("summary", {}).items():
            ref = peers.get("nginx", {}).get("summary", {}).get(tool, {})
            top = peers.get("direct", {}).get("summary", {}).get(tool, {})
            s["vs_nginx"] = _ratio(s["rps"], ref.get("rps"))
            s["vs_direct"] = _ratio(s["rps"], top.get("rps"))
            s["cpu_vs_nginx"] = _ratio(s["req_per_cpu_s"], ref.get("req_per_cpu_s"))
            s["p99_vs_nginx"] = _ratio(s["p99_ms"], ref.get("p99_ms"))


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
        self.results: dict = {"scenarios": {}}
        self.upstream: UpstreamNginx | None = None
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
                if not sc.idle:
                    groups.setdefault(sc.variant, []).append(sc)
            for variant, group in groups.items():
                self.run_group(variant, group)
            if any(sc.idle for sc in scenarios):
                self.run_idle()
        finally:
            self.upstream.stop()
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
                if not p.get("check", {}).get("measured", "conns" in p)]

    def start_peers(self, variant: Variant) -> list[Peer]:
        started = []
        for peer in all_peers(self.ncpu):
            if self.args.peers and peer.name not in self.args.peers:
                continue
            if not peer.ok_variant(variant):
                continue
            try:
                peer.start(variant, self.upstream, self.d)
                started.append(peer)
            except Exception as exc:   # a peer that does not start is a finding, not a crash
                log(f"  {peer.name}: did not start: {exc}\n{peer.log_tail()}")
                self.note_failure(peer.name, f"did not start: {exc}")
                peer.stop()
        return started

    def note_failure(self, peer: str, why: str) -> None:
        self.results.setdefault("peer_failures", []).append({"peer": peer, "why": why})

    def run_group(self, variant: Variant, group: list[Scenario]) -> None:
        peers = self.start_peers(variant)
        try:
            for sc in group:
                try:
                    self.run_scenario(sc, peers)
                except Exception:
                    log(f"scenario {sc.name} broke:\n{traceback.format_exc()}")
                    self.broken = True
        finally:
            for p in peers:
                p.stop()

    def run_scenario(self, sc: Scenario, peers: list[Peer]) -> None:
        args = self.args
        tools = sc.quick_tools if args.quick else sc.tools
        tools = tuple(t for t in tools if not args.tools or t in args.tools)
        log(f"== {sc.name}: {sc.title}")
        out = self.results["scenarios"][sc.name] = {
            "title": sc.title, "path": sc.path, "conns": sc.conns, "tools": list(tools),
            "peers": {}}
        ready = []
        for peer in peers:
            rec = out["peers"][peer.name] = {}
            problem = check_answers(peer, sc)
            if problem:
                rec["check"] = {"problems": [problem], "measured": False}
                log(f"  {peer.name}: FAILED check, not measured: {problem}")
                continue
            rec["check"] = warm_up(peer, sc, self.upstream, args.warmup, self.post_file)
            rec["check"]["measured"] = True
            if rec["check"]["problems"]:
                log(f"  {peer.name}: check: {'; '.join(rec['check']['problems'])} "
                    "(measured, flagged)")
            rec["runs"] = []
            ready.append(peer)
        for rnd in range(args.rounds):
            order = ready[rnd % len(ready):] + ready[:rnd % len(ready)] if ready else []
            for peer in order:
                for tool in tools:
                    r = measure(peer, sc, tool, self.upstream, args.duration, self.post_file)
                    r["round"] = rnd
                    out["peers"][peer.name]["runs"].append(r)
                    log(f"  round {rnd + 1} {peer.name:11} {tool:6} {r['rps']:10.0f} req/s"
                        + (f"  FAILED: {r['failed'][-200:]}" if r.get("failed") else ""))
        for peer in ready:
            rec = out["peers"][peer.name]
            rec["summary"] = {t: summarise([r for r in rec["runs"] if r["tool"] == t])
                              for t in tools}
        add_ratios(out["peers"])

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
        },
        "args": {"quick": args.quick, "rounds": args.rounds, "duration_s": args.duration,
                 "warmup_s": args.warmup, "idle_conns": args.idle_conns},
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
    """Issue 4's targets, evaluated on this run (informational: speed never fails the run)."""
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
    return out


def _f(x, fmt="{:.0f}", none="-") -> str:
    return none if x is None else fmt.format(x)


def print_report(results: dict, f) -> None:
    m = results["machine"]
    a = results["args"]
    print(f"\nsluice bench {results['commit']} {results['date']} | {m['cpus']} x {m['cpu']}, "
          f"Linux {m['kernel']}, load {m['loadavg_at_start']:.2f} at start | "
          f"{a['rounds']} round(s) x {a['duration_s']:g}s, medians", file=f)
    v = results["versions"]
    sl = results.get("sluice", {})
    print(f"nginx {v['nginx']}, HAProxy {v['haproxy']}, {v['wrk']}, h2load {v['h2load']}, "
          f"Python {v['python']}, uvloop {v['uvloop']}; sluice build {sl.get('build', '?')} "
          f"from {sl.get('root', '?')}", file=f)
    for w in results.get("warnings", []):
        print(f"! {w}", file=f)
    cols = ("peer", "tool", "req/s", "p50 ms", "p99 ms", "req/CPU-s", "x nginx", "x direct",
            "CPU x nginx", "up conn/1k", "check")
    widths = (11, 6, 8, 7, 7, 9, 7, 8, 11, 10, 0)
    line = "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in
                     enumerate(zip(cols, widths)))
    for name, sc in results["scenarios"].items():
        if name == "idle":
            continue
        print(f"\n{name}: {sc['title']} ({sc['conns']} connections, {sc['path']})", file=f)
        print(line.rstrip(), file=f)
        for peer, rec in sc["peers"].items():
            problems = rec.get("check", {}).get("problems", [])
            check = "ok" if not problems else ("CHURN" if rec["check"].get("churn") else "FAIL")
            if not rec.get("summary"):
                print(f"{peer:11}  {'-':6}  {'not measured: ' + '; '.join(problems)}", file=f)
                continue
            for i, (tool, s) in enumerate(rec["summary"].items()):
                cells = (peer if i == 0 else "", tool, _f(s["rps"]), _f(s["p50_ms"], "{:.2f}"),
                         _f(s["p99_ms"], "{:.2f}"), _f(s["req_per_cpu_s"]),
                         _f(s["vs_nginx"], "{:.2f}"), _f(s["vs_direct"], "{:.2f}"),
                         _f(s["cpu_vs_nginx"], "{:.2f}"), _f(s["upstream_conns_per_1k"], "{:.1f}"),
                         check if i == 0 else "")
                if s["non2xx"] or s["errors"] or s["failed_runs"]:
                    cells = cells[:-1] + (cells[-1] + f" non2xx={s['non2xx']} errors={s['errors']}"
                                          f" failed_runs={s['failed_runs']}",)
                print("  ".join(c.rjust(w) if j > 1 else c.ljust(w) for j, (c, w) in
                                enumerate(zip(cells, widths))).rstrip(), file=f)
            if problems:
                print(f"{'':11}  ! {'; '.join(problems)}", file=f)
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
    for fail in results.get("peer_failures", []):
        print(f"\n! {fail['peer']}: {fail['why']}", file=f)
    if results.get("targets"):
        print("\ntargets (issues 4 and 8; informational, never fail the run):", file=f)
        for t in results["targets"]:
            goal = f", goal {t['goal']}" if t["goal"] else ""
            print(f"  {'met ' if t['met'] else 'MISS'}  {t['target']}: {t['value']} "
                  f"(need {t['need']}{goal})", file=f)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke: 1 round of 1 s, h2load only in get and post4k, "
                         "2,000 idle connections, no tls scenarios unless named")
    ap.add_argument("--scenarios", type=lambda s: [x for x in s.split(",") if x],
                    help="comma-separated, from: " + ",".join(BY_NAME))
    ap.add_argument("--peers", type=lambda s: [x for x in s.split(",") if x],
                    help="only these peers: sluice-1w, sluice-Nw (N = CPUs), nginx, haproxy, "
                         "baseline, direct")
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
