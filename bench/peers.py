"""The processes a benchmark run starts: the upstream (nginx, 1 worker) and the proxies compared
on it, each configured to do the same work as sluice.

Same work means: HTTP/1.1 keep-alive on both sides with a pool of upstream connections, the
request head rewritten with X-Forwarded-For/-Proto/-Host and X-Request-Id (what sluice adds), no
access log, and for the route and rate-limit variants the equivalent routing table and a limiter
that never refuses. nginx runs with `proxy_max_temp_file_size 0` so a 1 MiB response streams
instead of going through a temporary file (sluice and HAProxy stream), and with
`proxy_buffers 8 64k`: with its default 8 x 4 KiB it moves a 1 MiB response at a quarter of the
speed, which would flatter everyone else.

A `Variant` is what changes a proxy's config: the number of routes (0 = one catch-all; N = the
prefixes /svc0/ .. /svc{N-1}/ tried in order, the request matching the last), whether a
rate limit is on, and whether the proxy terminates TLS. With TLS every proxy serves the same
throwaway ECDSA P-256 certificate (config/make_demo_certs.py, into the run's temp dir) with the
same settings as sluice's defaults: TLS 1.2 and 1.3 (the load generators negotiate 1.3), the
ECDHE suites of Mozilla's intermediate profile for 1.2, ALPN http/1.1, and session resumption
by tickets, each proxy's default (nginx 1.22 needs `ssl_protocols` for 1.3). The upstream
stays plaintext.

HTTP/2 (issue 10): with `h2` the proxy speaks HTTP/2 to the client, by prior knowledge (h2c) on
plaintext and by ALPN (h2, then http/1.1) with TLS, and HTTP/1.1 to the same upstream as above;
nghttpx joins the peers there (it is an HTTP/2 proxy first, and the fastest one measured here).
With `grpc` the upstream is `GrpcUpstream`, an HTTP/2 (h2c) origin answering a gRPC unary call,
and every proxy speaks HTTP/2 to it as well (sluice: a cluster with `protocol: http2`). A peer
that cannot do a variant yet raises `Unsupported` from `start`: the run reports it as "n/a",
which is not a failure (sluice refused `protocols: [http2]` until it served HTTP/2, and
refuses `protocol: http2` clusters until it has HTTP/2 upstreams).

Resilience (issue 11): with `resilience` sluice is compared with itself, so only two peers run:
`sluice-1w` with the plain config and `sluice-1w-res` (`Sluice(1, resilient=True)`) with every
resilience feature configured on the same route, cluster and node, none of them triggering (see
`Sluice.resilience`). The other proxies sit the variant out: what is measured is what features a
route does not use cost, not how sluice compares with them.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.procs import free_port, stop_tree, tree, wait_port
from engine.policy.tls_server import CIPHERS_TLS12    # sluice's TLS 1.2 suites, for every peer

ROOT = Path(__file__).resolve().parent.parent

SMALL_BODY = b"hello, world\n"
POST_REPLY = b"ok\n"
SIZES = {"/16k": 16 * 1024, "/1m": 1024 * 1024}
RATE = 1_000_000_000          # requests per second: on, but never refusing

# the gRPC unary call of the grpc scenario: a method path, and a request and a reply, each a
# Length-Prefixed-Message of gRPC's PROTOCOL-HTTP2.md (1 byte compressed flag, 4 bytes big-endian
# length) holding a protobuf with one string field (tag 1, wire type 2)
GRPC_PATH = "/bench.Echo/Unary"
GRPC_HEADERS = (("content-type", "application/grpc"), ("te", "trailers"))


def grpc_message(text: bytes) -> bytes:
    pb = b"\x0a" + bytes([len(text)]) + text
    return b"\x00" + len(pb).to_bytes(4, "big") + pb


GRPC_REQUEST = grpc_message(b"hello, world")
GRPC_REPLY = grpc_message(b"hello, bench")

def _fd_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


FD_LIMIT = _fd_limit()                        # what a peer may raise its RLIMIT_NOFILE to
NGINX_CONNS = min(30000, FD_LIMIT - 100)
# HAProxy refuses to start unless ulimit-n >= 2 * maxconn + a few: under a hard limit of 20,000
# it takes 9,990 connections at most (the idle scenario then reports the rest as not opened)
HAPROXY_MAXCONN = min(30000, (FD_LIMIT - 20) // 2)


def payload(size: int) -> bytes:
    """Deterministic, incompressible-looking content, so a truncated body is caught."""
    line = bytes(range(33, 127)) + b"\n"
    return (line * (size // len(line) + 1))[:size]


@dataclass(frozen=True)
class Variant:
    routes: int = 0
    ratelimit: bool = False
    access_log: bool = False       # each proxy's default access log format, to a file
    tls: bool = False              # the proxy terminates TLS (see `TlsFiles`)
    h2: bool = False               # HTTP/2 to the client: h2c by prior knowledge, or ALPN h2
    grpc: bool = False             # the upstream is `GrpcUpstream` (HTTP/2) instead of nginx
    resilience: bool = False       # sluice plain against sluice with every resilience feature

    @property
    def key(self) -> str:
        return (f"routes={self.routes},ratelimit={int(self.ratelimit)}"
                f",access_log={int(self.access_log)},tls={int(self.tls)},h2={int(self.h2)}"
                f",grpc={int(self.grpc)},resilience={int(self.resilience)}")


class Unsupported(Exception):
    """The peer cannot do this variant (yet): reported as n/a, never as a failure."""


@dataclass(frozen=True)
class TlsFiles:
    """The certificate every TLS-terminating peer serves, made once per run in its temp dir:
    for localhost and 127.0.0.1, signed by a throwaway CA (`ca`, what the checks verify with).
    `pem` is the chain and key in one file, as HAProxy wants them."""

    cert: Path
    key: Path
    ca: Path
    pem: Path

    @classmethod
    def in_dir(cls, d: Path) -> "TlsFiles":
        tls = d / "tls"
        files = cls(tls / "server.crt", tls / "server.key", tls / "ca.crt", tls / "server.pem")
        if not files.pem.exists():
            subprocess.run([sys.executable, str(ROOT / "config" / "make_demo_certs.py"), str(tls)],
                           check=True, capture_output=True)
            files.pem.write_bytes(files.cert.read_bytes() + files.key.read_bytes())
        return files


def _user_line() -> str:
    # nginx's workers drop to `nobody` when the master is root; they must read our temp dir
    return "user root;" if os.geteuid() == 0 else ""


def _nginx_temp(d: Path, tag: str) -> str:
    return "\n".join(f"  {k}_temp_path {d}/{tag}-{k};"
                     for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


class Process:
    """A started process tree (its Popen is the root)."""

    name = "?"
    proc: subprocess.Popen | None = None
    port = 0

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc is not None else []

    def stop(self) -> None:
        if self.proc is not None:
            stop_tree(self.proc)
            self.proc = None

    def _popen(self, argv: list[str], log: Path, **kw) -> None:
        """Output to `log`; RLIMIT_NOFILE is inherited (the caller ran raise_nofile)."""
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, **kw)
        self.logfile = log

    def log_tail(self, n: int = 5) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class UpstreamNginx(Process):
    """The origin every peer proxies to: nginx, 1 worker, fixed responses, stub_status."""

    name = "upstream"

    def __init__(self, d: Path) -> None:
        self.d = d
        self.port, self.status_port = free_port(), free_port()
        www = d / "www"
        www.mkdir(parents=True, exist_ok=True)
        for path, size in SIZES.items():
            (www / path.lstrip("/")).write_bytes(payload(size))
        conf = d / "upstream.conf"
        conf.write_text(f"""
{_user_line()}
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {FD_LIMIT};
pid {d}/upstream.pid;
events {{ worker_connections {NGINX_CONNS}; }}
http {{
  access_log off;
  error_log {d}/upstream-error.log warn;
{_nginx_temp(d, "up")}
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  default_type text/plain;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    root {www};
    client_max_body_size 10m;
    location / {{ return 200 "{SMALL_BODY.decode().strip()}\\n"; }}
    location = /16k {{ default_type application/octet-stream; }}
    location = /1m {{ default_type application/octet-stream; }}
    location = /post {{ return 200 "{POST_REPLY.decode().strip()}\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{self.status_port};
    location / {{ stub_status; }}
  }}
}}
""")
        self._popen(["nginx", "-p", str(d), "-e", str(d / "upstream-error.log"), "-c", str(conf)],
                    d / "upstream.out")
        wait_port(self.port, self.proc)
        wait_port(self.status_port, self.proc)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        """stub_status counters, minus this query's own connection and request."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/", timeout=5) as r:
            lines = r.read().decode().splitlines()
        accepts, _handled, requests = (int(x) for x in lines[2].split())
        return {"accepts": accepts, "requests": requests,
                "active": int(lines[0].split(":")[1]) - 1, "_queries": 1}


class GrpcUpstream(Process):
    """The origin of the grpc scenario: nghttpd (nghttp2's C server, 1 thread) on h2c, answering
    POST GRPC_PATH with GRPC_REPLY and the trailer `grpc-status: 0`.

    nghttpd serves the reply as a static file (it does so for a POST too) and adds the trailer
    to every response with a body (--trailer). Chosen because it is not the bottleneck: about
    65,000 calls/s on this machine with h2load -c10 -m10, where nginx as an HTTP/2 origin
    (static file, `add_trailer`) manages 21,000 and nghttpd's own --echo-upload, which spools
    each body to a temporary file, 11,000. What it does not do: a content-type (it types files
    by extension, and a gRPC path has none), so the reply lacks `application/grpc`; no proxy
    here looks at it. It has no counters either: the grpc rows show no upstream connections.
    """

    name = "grpc-upstream"

    def __init__(self, d: Path, status: str | None = "0") -> None:
        """`status`: the grpc-status trailer (None: none; the harness's tests break it)."""
        self.d = d
        self.port = free_port()
        www = d / "www"
        (www / GRPC_PATH.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (www / GRPC_PATH.lstrip("/")).write_bytes(GRPC_REPLY)
        trailer = ["--trailer", f"grpc-status: {status}"] if status is not None else []
        self._popen(["nghttpd", "--no-tls", "-n1", *trailer, "-d", str(www), str(self.port)],
                    d / "nghttpd.out")
        wait_port(self.port, self.proc)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> None:
        return None


class HoldUpstream(Process):
    """The origin of the h2mem scenario (bench/hold_upstream.py): answers `GET /`, holds every
    request for /hold open; `held()` says how many it holds."""

    name = "hold-upstream"

    def __init__(self, d: Path) -> None:
        self.port = free_port()
        d.mkdir(parents=True, exist_ok=True)
        self._popen([sys.executable, "-m", "bench.hold_upstream", str(self.port)],
                    d / "hold-upstream.out", cwd=ROOT)
        wait_port(self.port, self.proc)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def held(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/held", timeout=5) as r:
            return int(r.read())

    def stats(self) -> None:
        return None


class Peer(Process):
    """Something load is sent to. `url(path)` is where."""

    # can it do this variant at all? (the resilience variant is sluice's against itself)
    ok_variant = staticmethod(lambda v: not v.resilience)
    cpu_counted = True                            # its CPU is a proxy's CPU (not for direct)
    scheme = "http"                               # "https" once started with a TLS variant
    ca: Path | None = None                        # with TLS: the CA its certificate is from

    def start(self, variant: Variant, upstream: UpstreamNginx, d: Path) -> None:
        raise NotImplementedError

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def versions(self) -> str:
        return ""


# the header that turns on `Sluice.resilience`'s fault injection; the load never sends it
FAULT_HEADER = "x-sluice-fault"
FAULT_STATUS = 503


class Sluice(Peer):
    """`python -m engine run` from `root` (default: this checkout, built in place). With
    `resilient`, the config adds `resilience` to the plain one, and the peer runs in the
    resilience variant only."""

    root = ROOT

    def __init__(self, workers: int, resilient: bool = False) -> None:
        self.workers = workers
        self.resilient = resilient
        self.name = f"sluice-{workers}w" + ("-res" if resilient else "")
        if resilient:
            self.ok_variant = lambda v: v.resilience
        elif workers > 1:         # HTTP/2 is compared one worker to one worker (issue 10)
            self.ok_variant = lambda v: not v.h2 and not v.resilience
        else:                     # every variant, the plain side of the resilience one too
            self.ok_variant = lambda v: True

    @staticmethod
    def resilience(config: dict, upstream: UpstreamNginx) -> None:
        """Every resilience feature of issue 11 on `config`'s route and cluster (and its node),
        configured so that none triggers under the bench's load.

        health_check: an HTTP probe the upstream always passes. outlier_detection: on; nothing
        fails, so nothing is ejected. circuit_breakers: far above the load's 50 requests in
        flight. retry_budget and retry (2 attempts, a per-try timeout, backoff): nothing fails,
        so nothing is retried. fault: a delay and an abort of every request carrying
        FAULT_HEADER, which the load never sends (the answer check sends it once, to see the
        fault is live: FAULT_STATUS). mirror: to a second cluster on the same upstream at 0%,
        so the upstream sees no more requests than the load sends (the warm-up checks that).
        overload: shedding when a worker's loop runs 1 s late, which this load never makes it."""
        route, cluster = config["routes"][0], config["clusters"][0]
        cluster["health_check"] = {"http": {"path": "/"}, "interval": "1s", "timeout": "500ms"}
        cluster["outlier_detection"] = {"consecutive_5xx": 5, "consecutive_gateway_errors": 5,
                                        "base_ejection_time": "30s", "max_ejection_percent": 50}
        cluster["circuit_breakers"] = {"max_requests": 100000, "max_retries": 1000}
        cluster["retry_budget"] = {"percent": 20, "min_concurrency": 3}
        route["retry"] = {"attempts": 2, "per_try_timeout": "5s",
                          "backoff": {"base": "25ms", "max": "250ms"}}
        route["fault"] = {"delay": {"fixed": "100ms", "percent": 100},
                          "abort": {"status": FAULT_STATUS, "percent": 100},
                          "only_with_header": FAULT_HEADER}
        route["mirror"] = {"cluster": "shadow", "percent": 0}
        config["clusters"].append({"name": "shadow",
                                   "endpoints": [{"address": upstream.address}]})
        config["overload"] = {"max_loop_delay": "1s"}

    def config(self, variant: Variant, upstream: UpstreamNginx,
               tls: TlsFiles | None = None) -> dict:
        to = [{"cluster": "up"}]
        if variant.routes:
            routes = [{"name": f"svc{i}", "match": {"path_prefix": f"/svc{i}/"}, "to": to}
                      for i in range(variant.routes)]
        else:
            routes = [{"name": "all", "match": {"path_prefix": "/"}, "to": to}]
        if variant.ratelimit:
            for r in routes:
                r["rate_limit"] = {"rate": float(RATE), "burst": RATE, "per": "client_ip"}
        listener = {"name": "main", "address": f"127.0.0.1:{self.port}",
                    "routes": [r["name"] for r in routes]}
        if variant.h2:            # h2c is told from HTTP/1.1 by the client preface
            listener["protocols"] = ["http2", "http1"]
        if tls is not None:
            listener["tls"] = {"certificates": [{"cert": str(tls.cert), "key": str(tls.key)}]}
        cluster = {"name": "up", "endpoints": [{"address": upstream.address}]}
        if variant.grpc:
            cluster["protocol"] = "http2"
        config = {
            "admin": {"address": f"127.0.0.1:{free_port()}"},
            "access_log": {"path": "off"},
            "listeners": [listener],
            "routes": routes,
            "clusters": [cluster],
        }
        if self.resilient:        # one route and one cluster: the variant has no route table
            self.resilience(config, upstream)
        return config

    def start(self, variant, upstream, d):
        why = self.lacks(variant)
        if why:
            raise Unsupported(why)
        self.port = free_port()
        self.scheme = "https" if variant.tls else "http"
        tls = TlsFiles.in_dir(d) if variant.tls else None
        self.ca = tls.ca if tls else None
        path = d / f"{self.name}.json"        # JSON is YAML: no yaml dependency here
        path.write_text(json.dumps(self.config(variant, upstream, tls), indent=1))
        log = str(d / f"{self.name}-access.log") if variant.access_log else "off"
        self._popen([sys.executable, "-m", "engine", "run", "-c", str(path),
                     "--workers", str(self.workers), "--access-log", log],
                    d / f"{self.name}.out", cwd=self.root)
        try:
            wait_port(self.port, self.proc)
        except RuntimeError:
            # the config refused for a feature this build does not have yet (HTTP/2 before
            # issue 10 lands): n/a, with the config error as the reason
            why = unsupported_reason(self.logfile.read_text(errors="replace"))
            if why:
                raise Unsupported(why) from None
            raise
        # every worker binds its own SO_REUSEPORT socket: wait until all are forked, then a bit
        for _ in range(100):
            if len(self.pids()) >= self.workers + 1:
                break
            time.sleep(0.05)
        time.sleep(0.3 if self.workers > 1 else 0)

    def lacks(self, variant: Variant) -> str | None:
        """Why this build cannot do the variant although its config may accept it: HTTP/2
        upstreams need the compiled engine/_fast/h2client (the worker imports it on the first
        request to an http2 cluster, so the config alone does not tell)."""
        if variant.grpc and not any((self.root / "engine" / "_fast").glob("h2client*.so")):
            return "HTTP/2 upstreams: this build has no engine/_fast/h2client"
        return None

    def versions(self):
        out = subprocess.run(["git", "-C", str(self.root), "describe", "--always", "--dirty"],
                             capture_output=True, text=True)
        return out.stdout.strip()


def unsupported_reason(log: str) -> str | None:
    """The config error saying a feature is "not supported yet", from sluice's output."""
    for line in log.splitlines():
        if "not supported yet" in line:
            # "<config path>: listeners[0].protocols[0]: HTTP/2 is not supported yet: ..."
            where, _, rest = line.strip().partition(".json: ")
            return rest or where
    return None


class NginxProxy(Peer):
    name = "nginx"

    def start(self, variant, upstream, d):
        self.port = free_port()
        limit_zone = limit = ""
        if variant.ratelimit:
            limit_zone = f"limit_req_zone $binary_remote_addr zone=rl:10m rate={RATE}r/s;"
            limit = f"limit_req zone=rl burst={RATE} nodelay;"
        # gRPC goes through the grpc module (HTTP/2 upstream, trailers); its headers are set
        # with grpc_set_header, as proxy_set_header's are for proxy_pass
        pass_ = "grpc_pass grpc://up" if variant.grpc else "proxy_pass http://up"
        if variant.routes:
            locations = "\n".join(f"    location /svc{i}/ {{ {pass_}; }}"
                                  for i in range(variant.routes))
        else:
            locations = f"    location / {{ {pass_}; }}"
        self.scheme = "https" if variant.tls else "http"
        ssl = tls = ""
        if variant.tls:
            files = TlsFiles.in_dir(d)
            self.ca = files.ca
            ssl = " ssl"
            tls = f"""ssl_certificate {files.cert};
    ssl_certificate_key {files.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {CIPHERS_TLS12};"""
        if variant.h2:          # without ssl, `http2` is h2c by prior knowledge only
            ssl += " http2"
        hdr = "grpc_set_header" if variant.grpc else "proxy_set_header"
        conf = d / "nginx-proxy.conf"
        conf.write_text(f"""
{_user_line()}
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {FD_LIMIT};
pid {d}/nginx-proxy.pid;
events {{ worker_connections {NGINX_CONNS}; }}
http {{
  access_log {f"{d}/nginx-access.log combined" if variant.access_log else "off"};
  error_log {d}/nginx-proxy-error.log warn;
{_nginx_temp(d, "px")}
  keepalive_requests 1000000000;
  keepalive_timeout 600s;
  client_max_body_size 10m;
  {limit_zone}
  upstream up {{
    server {upstream.address};
    keepalive 256;
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
  }}
  server {{
    listen 127.0.0.1:{self.port}{ssl} backlog=4096;
    {tls}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    {hdr} Host $http_host;
    {hdr} X-Forwarded-For $proxy_add_x_forwarded_for;
    {hdr} X-Forwarded-Proto $scheme;
    {hdr} X-Forwarded-Host $host;
    {hdr} X-Request-Id $request_id;
    proxy_buffers 8 64k;
    proxy_max_temp_file_size 0;
    {limit}
{locations}
  }}
}}
""")
        self._popen(["nginx", "-p", str(d), "-e", str(d / "nginx-proxy-error.log"),
                     "-c", str(conf)], d / "nginx-proxy.out")
        wait_port(self.port, self.proc)

    def versions(self):
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return out.stderr.strip().split("/")[-1]


class Haproxy(Peer):
    name = "haproxy"
    # it logs to syslog only
    ok_variant = staticmethod(lambda v: not v.access_log and not v.resilience)

    def start(self, variant, upstream, d):
        self.port = free_port()
        if variant.routes:
            routing = "\n".join(f"  use_backend up if {{ path_beg /svc{i}/ }}"
                                for i in range(variant.routes))
        else:
            routing = "  default_backend up"
        limit = ""
        if variant.ratelimit:
            limit = f"""  stick-table type ip size 100k expire 30s store http_req_rate(1s)
  http-request track-sc0 src
  http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {RATE} }}"""
        self.scheme = "https" if variant.tls else "http"
        ssl = ""
        if variant.tls:
            files = TlsFiles.in_dir(d)
            self.ca = files.ca
            alpn = "h2,http/1.1" if variant.h2 else "http/1.1"
            ssl = (f" ssl crt {files.pem} alpn {alpn} ssl-min-ver TLSv1.2"
                   f" ciphers {CIPHERS_TLS12}")
        elif variant.h2:
            ssl = " proto h2"                  # h2c by prior knowledge
        server_proto = " proto h2" if variant.grpc else ""
        conf = d / "haproxy.cfg"
        conf.write_text(f"""
global
  nbthread 1
  ulimit-n {FD_LIMIT}
  maxconn {HAPROXY_MAXCONN}
defaults
  mode http
  maxconn {HAPROXY_MAXCONN}
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-request 600s
  timeout http-keep-alive 600s
  http-reuse always
  option forwardfor
frontend fe
  bind 127.0.0.1:{self.port}{ssl}
  unique-id-format %{{+X}}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid
  http-request set-header X-Request-Id %[unique-id]
  http-request set-header X-Forwarded-Proto {self.scheme}
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
{limit}
{routing}
backend up
  server s1 {upstream.address}{server_proto}
""")
        self._popen(["haproxy", "-db", "-f", str(conf)], d / "haproxy.out")
        wait_port(self.port, self.proc)

    def versions(self):
        out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True)
        return out.stdout.split()[2] if out.stdout else ""


class Nghttpx(Peer):
    """nghttpx (nghttp2's proxy), 1 worker thread, as an HTTP/2 reverse proxy: h2c by prior
    knowledge (its plaintext frontend also takes HTTP/1.1) or h2 by ALPN; HTTP/1.1 to the
    upstream with its pool (unlimited connections per frontend, kept 600 s), or HTTP/2 to the
    grpc upstream.

    Same work as far as it goes: X-Forwarded-For and -Proto, no Via, the upstream's Server header
    left alone; it has no option for X-Request-Id or X-Forwarded-Host (that needs mruby, not in
    Debian's build), so it does slightly less header work than sluice. --conf=/dev/null: the
    package's /etc/nghttpx/nghttpx.conf must not leak in.
    """

    name = "nghttpx"
    ok_variant = staticmethod(lambda v: v.h2 and not (v.routes or v.ratelimit or v.access_log))

    def start(self, variant, upstream, d):
        self.port = free_port()
        self.scheme = "https" if variant.tls else "http"
        front, tls_args = f"127.0.0.1,{self.port}", []
        if variant.tls:
            files = TlsFiles.in_dir(d)
            self.ca = files.ca
            tls_args = ["--tls-min-proto-version=TLSv1.2", f"--ciphers={CIPHERS_TLS12}",
                        "--no-ocsp", str(files.key), str(files.cert)]
        else:
            front += ";no-tls"
        back = upstream.address.replace(":", ",") + (";;proto=h2" if variant.grpc else "")
        self._popen(["nghttpx", "--conf=/dev/null", "-n1", f"-f{front}", f"-b{back}",
                     "--add-x-forwarded-for", "--no-via", "--no-server-rewrite",
                     "--backend-keep-alive-timeout=600s", "--frontend-keep-alive-timeout=600s",
                     "--frontend-http2-read-timeout=600s", "--backend-read-timeout=600s",
                     f"--errorlog-file={d / 'nghttpx-error.log'}", *tls_args],
                    d / "nghttpx.out")
        wait_port(self.port, self.proc)

    def versions(self):
        out = subprocess.run(["nghttpx", "--version"], capture_output=True, text=True)
        return out.stdout.strip().split("/")[-1]


class Baseline(Peer):
    """bench/baseline_proxy.py: uvloop + httptools, no rate limiter."""

    name = "baseline"
    ok_variant = staticmethod(lambda v: not v.ratelimit and not v.access_log and not v.tls
                              and not v.h2 and not v.resilience)

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self.extra = list(extra)

    def start(self, variant, upstream, d):
        self.port = free_port()
        self._popen([sys.executable, str(ROOT / "bench" / "baseline_proxy.py"),
                     "--listen", f"127.0.0.1:{self.port}", "--upstream", upstream.address,
                     "--routes", str(variant.routes), *self.extra], d / "baseline.out")
        wait_port(self.port, self.proc)

    def versions(self):
        import httptools
        import uvloop
        return f"uvloop {uvloop.__version__}, httptools {httptools.__version__}"


class Direct(Peer):
    """No proxy: the load goes to the upstream itself (the ceiling)."""

    name = "direct"
    cpu_counted = False
    # the upstream speaks plaintext HTTP/1.1 only
    ok_variant = staticmethod(lambda v: not v.tls and not v.h2 and not v.resilience)

    def start(self, variant, upstream, d):
        self.port = upstream.port
        self.upstream = upstream

    def pids(self):
        return self.upstream.pids()

    def stop(self):
        pass


def all_peers(ncpu: int) -> list[Peer]:
    peers: list[Peer] = [Sluice(1), Sluice(1, resilient=True)]
    if ncpu > 1:
        peers.append(Sluice(ncpu))
    return peers + [Nghttpx(), NginxProxy(), Haproxy(), Baseline(), Direct()]
