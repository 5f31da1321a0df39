"""Overload shedding: a worker whose event loop runs late stops taking new requests.

Why. A worker is one event loop. When it falls behind (a CPU-bound filter, a flood of requests
heavier than one core can serve, a long garbage collection), every request it accepts waits
behind the backlog, and so does every request already in flight: latency grows for all of them
until clients time out, and the worker does the work anyway. Answering the new ones at once with
503 (`x-sluice-overloaded: true`: Exchange.route_request, error kind E_OVERLOADED) costs almost
nothing, lets the backlog drain, and tells a client or a load balancer in front to go elsewhere.
Envoy's overload manager does this with its resource monitors; the signal here is the one a
single-threaded server has: how late its loop runs.

Who runs it. One `LoopMonitor` per `WorkerServer` (engine/runtime/worker.py), started and stopped
with it: one per forked worker, and one per embedded `engine.Proxy`, which measures the caller's
loop (the only loop it serves from). It needs nothing but the loop and the `Worker`.

The measurement. A callback is scheduled every INTERVAL; when it runs, its lag is how much later
than due it ran (time.monotonic, not the loop's clock: uvloop caches that once per turn, so a
callback late within a turn would read it stale). Nothing runs while a callback blocks, so a stall
is seen when it ends: the loop runs the due timer before it polls the sockets again (libuv runs
due timers between two polls), so requests that queued up during the stall are read with the flag
already set and are shed. Only requests whose bytes the poll before the stall had already
reported slip through.
- Reaction and resolution: a stall of length S that covers the due time of a sample is measured
  as between S - INTERVAL and S, so a stall longer than max_loop_delay + INTERVAL is always seen;
  a loop that is slow rather than stalled (every turn long) is seen at the next sample.
- Cost: INTERVAL = 50 ms is 20 callbacks a second per worker, about 6 microseconds each with
  the gauge write (about 0.01% of a core), whatever the load. A shorter interval would resolve short stalls better for
  more wake-ups of an idle worker; 50 ms is below any threshold worth configuring but the lowest
  (10ms, engine/policy/model.py `Overload`), where stalls shorter than 60 ms may be missed.
- The lag is measured and published even with shedding off, so an operator can see it before
  choosing a threshold: `Stats.set_loop_lag` (the worker's gauge; /stats/prometheus shows the
  most lagging worker's as `sluice_worker_loop_lag_seconds`). What is published is the largest
  sample of the last PEAK_WINDOW to 2 * PEAK_WINDOW seconds (the max of two rotating windows),
  not the last sample: the gauge is rewritten 20 times a second and scraped every 15 s or so, so
  the last sample would almost never show a stall, which is what the gauge is read for.

The state. `Worker.overloaded` (a public bint of Services, engine/_fast/exchange.pxd) is set when a
sample's lag passes the current `Tables.max_loop_delay` (read from `worker.tables` at every
sample, so a reload that swaps the tables changes the threshold at the next one; 0 = off), and
cleared when a sample's lag is below half of it (hysteresis: a loop hovering around the threshold
stays in one state instead of flapping sample by sample), or when shedding is switched off.

Logging: one line per transition, never per sample: WARNING when the worker starts shedding, INFO
when it recovers (with how long it shed). A worker that goes in and out of overload again and
again (a filter that stalls on every tenth request) logs at most one episode per LOG_INTERVAL;
the next line says how many it did not log (as the TLS handshake failures in worker.py).

What it must never do: raise out of its callback (the loop would drop it and shedding would stop
for good), or hold the flag after `stop()`.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("sluice.overload")

INTERVAL = 0.050        # seconds between two samples (see the module docstring)
RECOVER_RATIO = 0.5     # a sample below this times the threshold ends shedding
LOG_INTERVAL = 10.0     # at most one overload episode logged per this many seconds
PEAK_WINDOW = 5.0       # the published lag is the largest of the last 5 to 10 seconds


class LoopMonitor:
    """Samples the lag of `loop` and drives `worker.overloaded` (see the module docstring).
    `stats`/`stats_slot`: where the lag is published (the shared-memory Stats), or None."""

    def __init__(self, loop, worker, stats=None, stats_slot: int = 0,
                 interval: float = INTERVAL, clock=time.monotonic) -> None:
        self.loop = loop
        self.worker = worker
        self.stats = stats
        self.stats_slot = stats_slot
        self.interval = interval
        self.clock = clock
        self.lag = 0.0                  # the last sample, seconds
        self.max_lag = 0.0              # the largest sample so far (tests, debugging)
        self.since = 0.0                # when the current overload started (clock)
        self.transitions = 0            # overloaded + recovered, since start
        self.episodes = 0               # times it became overloaded, since start
        self._logged_at = float("-inf") # when the last logged episode began (clock)
        self._logging = False           # whether the current episode was logged
        self._unlogged = 0              # episodes not logged since the last one that was
        self.peak = 0.0                 # what is published: see PEAK_WINDOW
        self._window = [0.0, 0.0]       # the largest sample of the previous and current window
        self._window_ends = float("-inf")
        self._due = 0.0
        self._handle = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self._handle is None:
            self._schedule()

    def stop(self) -> None:
        """Stop sampling and stop shedding."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.worker.overloaded = False

    def _schedule(self) -> None:
        self._due = self.clock() + self.interval
        self._handle = self.loop.call_later(self.interval, self._sample)

    def _sample(self) -> None:
        try:
            self.observe(max(0.0, self.clock() - self._due))
        except Exception:       # never lose the monitor to a bug in a log line or a gauge
            log.exception("overload monitor: sample failed")
        self._schedule()

    def observe(self, lag: float) -> None:
        """One sample: publish `lag` and move the overloaded state."""
        self.lag = lag
        if lag > self.max_lag:
            self.max_lag = lag
        self._publish(lag)
        threshold = self.worker.tables.max_loop_delay
        worker = self.worker
        if not worker.overloaded:
            if threshold > 0 and lag > threshold:
                worker.overloaded = True
                self.transitions += 1
                self.episodes += 1
                self.since = now = self.clock()
                self._logging = now - self._logged_at >= LOG_INTERVAL
                if not self._logging:
                    self._unlogged += 1
                    return
                more = (f" ({self._unlogged} more since the last line)"
                        if self._unlogged else "")
                self._logged_at, self._unlogged = now, 0
                log.warning("worker %d overloaded: its event loop ran %.0f ms late (more than "
                            "overload.max_loop_delay, %.0f ms); new requests get 503 until it "
                            "catches up%s", os.getpid(), lag * 1000, threshold * 1000, more)
        elif threshold <= 0 or lag < threshold * RECOVER_RATIO:
            worker.overloaded = False
            self.transitions += 1
            if self._logging:
                log.info("worker %d recovered: event loop lag %.0f ms, no longer shedding "
                         "(shed for %.2f s)%s", os.getpid(), lag * 1000,
                         self.clock() - self.since,
                         "" if threshold > 0 else "; overload.max_loop_delay is now off")

    def _publish(self, lag: float) -> None:
        """The worker's lag gauge: the largest sample of the last PEAK_WINDOW or two."""
        now = self.clock()
        window = self._window
        if now >= self._window_ends:
            # a new window; the previous one is kept only if it ended just now
            window[0] = window[1] if now - self._window_ends < PEAK_WINDOW else 0.0
            window[1] = 0.0
            self._window_ends = now + PEAK_WINDOW
        if lag > window[1]:
            window[1] = lag
        self.peak = max(window)
        if self.stats is not None:
            self.stats.set_loop_lag(self.stats_slot, self.peak)
