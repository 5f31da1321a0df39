"""Where a request's time goes: profile one sluice worker under the small-GET load (PROFILE.md).

    python -m bench.profile                       # perf (cpu-clock samples, C and kernel symbols)
    python -m bench.profile --tool py-spy         # py-spy --native: Python and Cython frames
    python -m bench.profile --tool syscalls --peer nginx   # syscalls per request, and their mix
    python -m bench.profile --tool callgrind               # instructions per request, by function
    python -m bench.profile --tool perf --seconds 20 --top 40 --sluice-root ../other-checkout
    python -m bench.profile --h2 [--peer nghttpx]          # h2c, h2load -c10 -m10 (issue 10)

Starts the bench upstream (nginx) and sluice with 1 worker, drives it with wrk (50 keep-alive
connections, GET /; with --h2, h2load over h2c with 10 connections x 10 streams), attaches the profiler to the worker for --seconds, and prints the top costs
by self time (and perf's split by shared object). The raw profile stays in the printed directory
for `perf report -i ...` or speedscope.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers import Baseline, Haproxy, NginxProxy, Nghttpx, Sluice, UpstreamNginx, Variant
from bench.procs import free_port, raise_nofile, wait_port

PEERS = {"sluice": lambda: Sluice(1), "nginx": NginxProxy, "haproxy": Haproxy,
         "baseline": Baseline, "nghttpx": Nghttpx}


def worker_pid(peer) -> int:
    """The process that serves: sluice's and nginx's worker, or HAProxy/the baseline itself."""
    pids = [p for p in peer.pids() if p != peer.proc.pid] or [peer.proc.pid]
    if len(pids) != 1:
        raise RuntimeError(f"expected one worker, found {pids}")
    return pids[0]


def run_syscalls(pid: int, seconds: float, out: Path, top: int, upstream=None) -> str:
    """Syscalls per request: the count from perf's raw_syscalls tracepoint (cheap), the mix from
    strace -c (slows the process down, but not the mix)."""
    before = upstream.stats()
    stat = subprocess.run(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid),
                           "--", "sleep", str(seconds)], capture_output=True, text=True)
    after = upstream.stats()
    requests = after["requests"] - before["requests"] - 1
    count = int(stat.stderr.split(",")[0]) if stat.stderr[:1].isdigit() else None
    lines = [f"{requests} requests, {count} syscalls: "
             f"{count / requests:.2f} syscalls per request" if count and requests else
             f"perf stat gave: {stat.stderr.strip()[-300:]}"]
    if shutil.which("strace"):
        st = subprocess.run(["timeout", "-s", "INT", str(max(2.0, seconds / 2)), "strace", "-c",
                             "-f", "-p", str(pid)], capture_output=True, text=True)
        rows = [l for l in st.stderr.splitlines() if re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+", l)]
        calls = {l.split()[-1]: int(l.split()[3]) for l in rows if l.split()[-1] != "total"}
        total = sum(calls.values()) or 1
        lines.append("mix (strace -c): " + ", ".join(
            f"{name} {100 * n / total:.0f}%" for name, n in
            sorted(calls.items(), key=lambda kv: -kv[1])[:8]))
    return "\n".join(lines)


def run_perf(pid: int, seconds: float, out: Path, top: int, upstream=None) -> str:
    data = out / "perf.data"
    subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-p", str(pid),
                    "-o", str(data), "--", "sleep", str(seconds)],
                   check=True, capture_output=True)
    by_dso = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                             "--sort", "dso", "-g", "none", "--percent-limit", "1"],
                            capture_output=True, text=True).stdout
    by_sym = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                             "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.15"],
                            capture_output=True, text=True).stdout
    def rows(text: str) -> list[str]:
        return [re.sub(r"(\s+-)+\s*$", "", l).rstrip() for l in text.splitlines()
                if l.strip() and not l.startswith("#")]

    syms = rows(by_sym)
    user = [r for r in syms if "[kernel" not in r]
    kernel = [r for r in syms if "[kernel" in r]
    return "\n".join([
        "self time by shared object (perf, cpu-clock):", *rows(by_dso)[:15], "",
        f"top {top} user-space symbols by self time (% of all the worker's samples):",
        *user[:top], "", "top 10 kernel symbols:", *kernel[:10], "",
        f"raw: perf report -i {data}"])


def run_pyspy(pid: int, seconds: float, out: Path, top: int, upstream=None) -> str:
    raw = out / "py-spy.txt"
    subprocess.run(["py-spy", "record", "--native", "--rate", "200", "--duration",
                    str(int(seconds)), "--format", "raw", "-o", str(raw),
                    "-p", str(pid)], check=True, capture_output=True)
    self_t: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        n = int(n)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"py-spy --native, {total} samples; self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_t.most_common(top)]
    lines += ["", "inclusive time (frames on the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    lines.append(f"\nraw (collapsed stacks): {raw}")
    return "\n".join(lines)


# One worker without its supervisor (valgrind 3.19 lacks pidfd_open, which the supervisor needs):
# the embedding API runs the same worker tables and protocol objects in this process's loop.
WORKER = """
import asyncio, signal, sys
import uvloop
import engine

async def main():
    proxy = engine.Proxy.from_file(sys.argv[1], access_log="off")
    await proxy.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await proxy.stop(drain=1.0)

uvloop.run(main())
"""


class CallgrindWorker(Sluice):
    """sluice's worker (embedded, see WORKER) or the baseline proxy, under callgrind with
    instrumentation off until run_callgrind() turns it on."""

    def __init__(self, d: Path, baseline: bool = False) -> None:
        super().__init__(1)
        self.d, self.baseline = d, baseline
        if baseline:
            self.name = "baseline"

    def start(self, variant, upstream, d):
        self.port = free_port()
        if self.baseline:
            argv = [str(Path(__file__).with_name("baseline_proxy.py")), "--listen",
                    f"127.0.0.1:{self.port}", "--upstream", upstream.address]
        else:
            path = d / "sluice-worker.json"
            path.write_text(json.dumps(self.config(variant, upstream)))
            argv = ["-c", WORKER, str(path)]
        self._popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                     f"--callgrind-out-file={d}/callgrind.out.%p", sys.executable, *argv],
                    d / f"{self.name}-callgrind.out", cwd=self.root)
        wait_port(self.port, self.proc, timeout=300)


def _fn(entry: str) -> str:
    """'/long/path/file.c:function [/long/path/lib.so]' -> 'function (file.c, lib.so)'."""
    m = re.match(r"^(.*?):(\S+)(?: \[(.*)\])?$", entry.strip())
    if not m:
        return entry.strip()
    fn = re.sub(r"^__pyx_[a-z]+_\d+\w*?_\d+(?:_fast_\d+)?", "", m.group(2))
    where = Path(m.group(1)).name
    lib = Path(m.group(3)).name if m.group(3) else ""
    return f"{fn or m.group(2)} ({where}{', ' + lib if lib and lib != where else ''})"


def run_callgrind(peer, upstream, d: Path, requests: int, top: int) -> str:
    """Instructions per request (deterministic: the noise of a shared machine does not reach
    it), by function, from callgrind on the worker, collecting only while h2load sends exactly
    `requests` requests over 4 keep-alive connections."""
    pid = worker_pid(peer)
    url = peer.url("/")
    subprocess.run(["h2load", "--h1", "-c4", "-n", "200", url], capture_output=True, check=True)
    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True)
    subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
    before = upstream.stats()
    subprocess.run(["h2load", "--h1", "-c4", "-n", str(requests), url], capture_output=True,
                   check=True)
    n = upstream.stats()["requests"] - before["requests"] - 1
    subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True)
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    time.sleep(1.0)
    dumps = sorted(d.glob(f"callgrind.out.{pid}*"), key=lambda p: p.stat().st_mtime)
    dumps = [p for p in dumps if p.stat().st_size > 0]
    if not dumps:
        return f"no callgrind dump for worker {pid} in {d}"
    def table(*opts: str) -> tuple[int, list[str]]:
        out = subprocess.run(["callgrind_annotate", "--threshold=99", *opts, str(dumps[-1])],
                             capture_output=True, text=True).stdout
        total = re.search(r"^\s*([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", out, re.MULTILINE)
        rows = []
        for line in out.splitlines():
            m = re.match(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S.*)$", line)
            if m and "PROGRAM TOTALS" not in line:
                ir = int(m.group(1).replace(",", ""))
                rows.append(f"  {ir / max(n, 1):8.0f} Ir/req {m.group(2):>6}%  {_fn(m.group(3))}")
        return (int(total.group(1).replace(",", "")) if total else 0), rows

    total_ir, self_rows = table()
    _, incl_rows = table("--inclusive=yes")
    summary = (f"{n} requests, {total_ir} instructions: "
               f"{total_ir / max(n, 1):.0f} instructions per request (user space)")
    return "\n".join([summary, "",
                      "self cost by function:", *self_rows[:top], "",
                      "inclusive cost (the function and what it calls):", *incl_rows[:top], "",
                      f"raw: callgrind_annotate --inclusive=yes {dumps[-1]}"])


def _short(frame: str) -> str:
    """'func (file.py:12)' -> 'func (file.py)': merge a function's lines."""
    return re.sub(r":\d+\)$", ")", frame.strip())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    ap.add_argument("--tool", choices=("perf", "py-spy", "syscalls", "callgrind"),
                    default="perf")
    ap.add_argument("--requests", type=int, default=5000, help="callgrind: requests measured")
    ap.add_argument("--peer", choices=list(PEERS), default="sluice",
                    help="profile this proxy instead (perf and syscalls work for all)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sluice-root", type=Path)
    ap.add_argument("--h2", action="store_true",
                    help="HTTP/2: h2c by prior knowledge, h2load -c10 -m10 instead of wrk "
                         "(perf, py-spy, syscalls); --peer nghttpx is for this only")
    args = ap.parse_args(argv)
    if args.h2 and args.tool == "callgrind" or args.peer == "nghttpx" and not args.h2:
        ap.error("--h2 works with perf, py-spy and syscalls; nghttpx only with --h2")
    tool = {"syscalls": "perf", "callgrind": "valgrind"}.get(args.tool, args.tool)
    if not shutil.which(tool):
        print(f"{tool} is not installed (see bench/PROFILE.md)", file=sys.stderr)
        return 1
    if args.sluice_root:
        Sluice.root = args.sluice_root.resolve()
    raise_nofile()
    d = Path(tempfile.mkdtemp(prefix="sluice-profile-"))
    upstream = UpstreamNginx(d / "upstream")
    peer = PEERS[args.peer]()
    load = None
    try:
        if args.tool == "callgrind":
            if args.peer not in ("sluice", "baseline"):
                raise SystemExit("--tool callgrind profiles sluice or the baseline")
            peer = CallgrindWorker(d, baseline=args.peer == "baseline")
            peer.start(Variant(), upstream, d)
            print(f"{peer.name} under callgrind, GET / over 4 keep-alive connections\n")
            print(run_callgrind(peer, upstream, d, args.requests, args.top))
            return 0
        peer.start(Variant(h2=args.h2), upstream, d)
        pid = worker_pid(peer)
        url = peer.url("/")

        def load_argv(seconds: int) -> list[str]:
            if args.h2:
                return ["h2load", "-t1", "-c10", "-m10", f"-D{seconds}", url]
            return ["wrk", "-t1", f"-c{args.conns}", f"-d{seconds}s", url]

        subprocess.run(load_argv(2), capture_output=True)
        load = subprocess.Popen(load_argv(int(args.seconds) + 4), stdout=subprocess.PIPE,
                                text=True)
        time.sleep(1.0)
        run = {"perf": run_perf, "py-spy": run_pyspy, "syscalls": run_syscalls}[args.tool]
        report = run(pid, args.seconds, d, args.top, upstream)
        load_out = load.communicate()[0]
        rps = re.search(r"Requests/sec:\s+([\d.]+)|finished in [\d.]+\w*, ([\d.]+) req/s",
                        load_out)
        shape = "h2load -c10 -m10 h2c" if args.h2 else f"wrk -c{args.conns}"
        print(f"{peer.name} worker {pid} under {shape} GET / "
              f"({rps.group(rps.lastindex) if rps else '?'} req/s while profiled)\n")
        print(report)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        peer.stop()
        upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
