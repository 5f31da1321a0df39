"""A results file as the README's "Performance" summary (markdown), or as the full table again.

    python -m bench.report                      # the newest full (non --quick) run, markdown
    python -m bench.report bench/results/X.json --table
    python -m bench.report --tool h2load
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.run import RESULTS, print_report


def newest() -> Path | None:
    runs = sorted(p for p in RESULTS.glob("*.json") if not p.stem.endswith("_quick"))
    return runs[-1] if runs else None


def _x(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def markdown(res: dict, tool: str) -> str:
    m, a = res["machine"], res["args"]
    rounds = f"{a['rounds']} round{'s' * (a['rounds'] != 1)}"
    out = [f"sluice with 1 worker against its peers, `{tool}`, {rounds} of "
           f"{a['duration_s']:g} s interleaved, medians; ratios above 1 favour sluice except "
           f"p99 (lower is better). Commit {res['commit']}, {res['date'][:10]}, "
           f"{m['cpus']} × {m['cpu']} (shared), Linux {m['kernel']}; "
           f"nginx {res['versions']['nginx']}, HAProxy {res['versions']['haproxy']}"
           + (f", nghttpx {res['versions']['nghttpx']}" if res['versions'].get("nghttpx") else "")
           + ".", "",
           "| scenario | req/s | × nginx | × HAProxy | × baseline | × direct "
           "| req/CPU-s × nginx | p99 × nginx | 2 workers × 1 |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, sc in res["scenarios"].items():
        if name == "idle" or sc.get("h2") or sc.get("compare_to"):
            continue
        peers = sc["peers"]

        def s(peer, peers=peers):
            return peers.get(peer, {}).get("summary", {}).get(tool)

        me = s("sluice-1w")
        if not me:
            continue
        many = next((s(p) for p in peers if p.startswith("sluice-") and p != "sluice-1w"), None)

        def r(other, key="rps"):
            return me[key] / other[key] if other and other.get(key) and me.get(key) else None

        out.append(f"| {name}: {sc['title']} | {me['rps']:,.0f} | {_x(r(s('nginx')))} | "
                   f"{_x(r(s('haproxy')))} | {_x(r(s('baseline')))} | {_x(r(s('direct')))} | "
                   f"{_x(r(s('nginx'), 'req_per_cpu_s'))} | "
                   f"{_x(me['p99_ms'] / s('nginx')['p99_ms'] if s('nginx') else None)} | "
                   f"{_x(many['rps'] / me['rps'] if many else None)} |")
    idle = res["scenarios"].get("idle", {}).get("peers", {})
    if idle:
        cells = ", ".join(f"{p} {v['bytes_per_conn']:,} B" for p, v in idle.items()
                          if v.get("bytes_per_conn") is not None)
        conns = res["scenarios"]["idle"]["conns"]
        out += ["", (f"Memory per idle keep-alive connection ({conns:,} connections, "
                     f"RSS delta / count): {cells}.")]
    if len(out) == 4:             # no HTTP/1.1 scenario in this run: no empty table
        out = out[:2]
    for name, sc in res["scenarios"].items():
        if sc.get("compare_to"):
            out += ["", markdown_self(name, sc, tool)]
    h2 = markdown_h2(res)
    if h2 and out[-1]:
        out.append("")
    return "\n".join(out + ([h2] if h2 else []))


def markdown_self(name: str, sc: dict, tool: str) -> str:
    """A scenario comparing sluice with itself (resilience, issue 11): each other peer's req/s,
    p99 and CPU per request as ratios to the reference peer's."""
    ref = sc["compare_to"]
    cells = []
    for peer, rec in sc["peers"].items():
        s = rec.get("summary", {}).get(tool)
        if peer == ref:
            continue
        if not s:
            why = "; ".join(rec.get("check", {}).get("problems", [])) or rec.get("unsupported")
            cells.append(f"{peer} not measured ({why})")
            continue
        cells.append(f"{peer} / {ref}: req/s {_x(s.get('vs_ref'))}, p99 {_x(s.get('p99_vs_ref'))}, "
                     f"CPU per request {_x(s.get('cpu_per_req_vs_ref'))}")
    base = sc["peers"].get(ref, {}).get("summary", {}).get(tool)
    rps = f"{base['rps']:,.0f} req/s" if base else "not measured"
    return (f"{name}: {sc['title']} (`{tool}`, each peer {sc.get('repeat', 1)} times a round, "
            f"alternating; {ref} {rps}): " + ("; ".join(cells) or "nothing measured") + ".")


def markdown_h2(res: dict) -> str:
    """The HTTP/2 scenarios (issue 10): h2load -c10 -m10, sluice against nghttpx, nginx and
    HAProxy; "n/a" where sluice cannot do the scenario yet."""
    scenarios = {n: sc for n, sc in res["scenarios"].items() if sc.get("h2") and n != "h2mem"}
    out = []
    if scenarios:
        out += ["HTTP/2, `h2load` 10 connections × 10 streams, 1 worker (thread) each; ratios "
                "are sluice's req/s over the peer's, p99 over the best peer's p99:", "",
                "| scenario | sluice req/s | × nghttpx | × nginx | × HAProxy "
                "| req/CPU-s × nghttpx | p99 × best peer "
                "| nghttpx req/s | nginx req/s | HAProxy req/s |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, sc in scenarios.items():
        peers = sc["peers"]

        def s(peer, peers=peers):
            return peers.get(peer, {}).get("summary", {}).get("h2load")

        def rps(peer):
            return f"{s(peer)['rps']:,.0f}" if s(peer) else "–"

        me = s("sluice-1w")
        if me:
            mine = [f"{me['rps']:,.0f}", _x(me.get("vs_nghttpx")), _x(me.get("vs_nginx")),
                    _x(me.get("vs_haproxy")), _x(me.get("cpu_vs_nghttpx")),
                    _x(me.get("p99_vs_best"))]
        else:
            why = "n/a (not supported yet)" if "unsupported" in peers.get("sluice-1w", {}) \
                else "not measured"
            mine = [why, "–", "–", "–", "–", "–"]
        out.append(f"| {name}: {sc['title']} | " + " | ".join(mine) + " | "
                   + " | ".join(rps(p) for p in ("nghttpx", "nginx", "haproxy")) + " |")
    mem = res["scenarios"].get("h2mem", {})
    if mem.get("peers"):
        cells = []
        for p, v in mem["peers"].items():
            if v.get("bytes_per_conn") is not None:
                cells.append(f"{p} {v['bytes_per_conn']:,} B per connection, "
                             f"{v['bytes_per_stream']:,} B per stream")
            elif "unsupported" in v:
                cells.append(f"{p} n/a")
        out += ["", (f"Memory over HTTP/2 ({mem['conns']:,} idle h2c connections, then "
                     f"{mem['streams']:,} streams held open on them; RSS delta / count, a stream "
                     f"with its upstream connection): {'; '.join(cells)}.")]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report")
    ap.add_argument("file", nargs="?", type=Path)
    ap.add_argument("--tool", default="wrk", choices=("wrk", "h2load"))
    ap.add_argument("--table", action="store_true", help="the full table, as `python -m bench`")
    args = ap.parse_args(argv)
    path = args.file or newest()
    if path is None:
        print("no results yet: run `python -m bench`", file=sys.stderr)
        return 1
    res = json.loads(path.read_text())
    if args.table:
        print_report(res, sys.stdout)
    else:
        print(markdown(res, args.tool))
    return 0


if __name__ == "__main__":
    sys.exit(main())
