"""engine/runtime/overload.py: the loop-lag monitor on a real uvloop loop and a real Worker. A
callback that blocks the loop (time.sleep) makes the worker overloaded; it recovers once the loop
is quiet; a lag between half the threshold and the threshold changes nothing (no flapping); the
threshold is the one of the tables being served, so a reload moves it."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import uvloop

from engine._fast.limiter import SharedBuckets
from engine._fast.proxy import Worker
from engine.policy import load_config_text
from engine.policy.link import link
from engine.runtime.overload import INTERVAL, LOG_INTERVAL, PEAK_WINDOW, LoopMonitor

CONFIG = """
listeners: [{name: main, address: "127.0.0.1:8080", routes: [r]}]
routes: [{name: r, match: {path_prefix: /}, direct_response: {status: 200}}]
%s
"""

STALL = 0.4            # seconds a callback blocks the loop
WAIT = 10.0            # generous bound for what must happen "soon" (never a speed assertion)


def tables(max_loop_delay: str | None):
    block = f"overload: {{max_loop_delay: {max_loop_delay}}}" if max_loop_delay else ""
    return link(load_config_text(CONFIG % block), SharedBuckets(64))


@pytest.fixture
def loop():
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


def monitored(loop, max_loop_delay: str | None):
    worker = Worker(loop, tables(max_loop_delay))
    return worker, LoopMonitor(loop, worker)


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.005)


def stall(loop) -> None:
    loop.call_soon(time.sleep, STALL)


def test_a_blocked_loop_makes_the_worker_overloaded_and_it_recovers_after(loop, caplog):
    worker, monitor = monitored(loop, "100ms")
    seen = []

    async def scenario():
        monitor.start()
        await asyncio.sleep(0.2)                       # a few quiet samples first
        assert not worker.overloaded
        stall(loop)
        await until(lambda: monitor.transitions >= 1, "the stall to be seen")
        seen.append(worker.overloaded)
        await until(lambda: not worker.overloaded, "the recovery")
        await asyncio.sleep(0.3)                       # quiet again: it stays recovered
        monitor.stop()

    with caplog.at_level(logging.INFO, logger="sluice.overload"):
        loop.run_until_complete(scenario())
    assert seen == [True]
    assert monitor.transitions == 2
    # a stall covering a sample is measured as at least its length less one interval
    assert monitor.max_lag >= STALL - monitor.interval
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines                      # one line per transition, none per sample
    assert "overloaded" in lines[0] and "ms late" in lines[0] and caplog.records[0].levelname \
        == "WARNING"
    assert "recovered" in lines[1]


def test_a_lag_between_half_the_threshold_and_the_threshold_keeps_the_state(loop):
    """Hysteresis, sample by sample (threshold 100ms): in at above 100 ms, out below 50 ms;
    samples in between change nothing either way."""
    worker, monitor = monitored(loop, "100ms")
    expected = [(0.060, False), (0.099, False), (0.150, True), (0.090, True), (0.060, True),
                (0.120, True), (0.051, True), (0.040, False), (0.080, False), (0.200, True),
                (0.001, False)]
    got = []
    for lag, _ in expected:
        monitor.observe(lag)
        got.append((lag, bool(worker.overloaded)))
    assert got == expected
    assert monitor.transitions == 4


def test_a_loop_that_keeps_lagging_stays_overloaded_without_flapping(loop, caplog):
    """Stalls of 3/4 of the threshold, back to back, after an overload: every sample is above
    half the threshold, so the worker sheds throughout and logs one line, not one per sample."""
    worker, monitor = monitored(loop, "200ms")
    states = []

    def watch():
        states.append(bool(worker.overloaded))

    async def scenario():
        monitor.start()
        loop.call_soon(time.sleep, 0.5)
        await until(lambda: worker.overloaded, "the overload")
        for _ in range(6):
            loop.call_soon(time.sleep, 0.18)           # 130-180 ms late: > 100, < 200
            await asyncio.sleep(0.06)                  # a sample runs after each stall
            watch()
        monitor.stop()

    with caplog.at_level(logging.INFO, logger="sluice.overload"):
        loop.run_until_complete(scenario())
    assert states == [True] * 6
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_a_worker_flipping_in_and_out_logs_one_episode_per_interval_and_counts_the_rest(
        loop, caplog):
    now = [1000.0]
    worker = Worker(loop, tables("100ms"))
    monitor = LoopMonitor(loop, worker, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="sluice.overload"):
        for _ in range(5):                             # five episodes within a second
            monitor.observe(0.3)
            now[0] += 0.1
            monitor.observe(0.0)
            now[0] += 0.1
        assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
        now[0] += LOG_INTERVAL
        monitor.observe(0.3)                           # the next one after the interval
        monitor.observe(0.0)
    assert monitor.episodes == 6 and monitor.transitions == 12
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING", "INFO"]
    assert "(4 more since the last line)" in caplog.records[2].getMessage()


def test_without_a_threshold_nothing_is_shed_but_the_lag_is_measured(loop):
    worker, monitor = monitored(loop, None)

    async def scenario():
        monitor.start()
        stall(loop)
        await until(lambda: monitor.max_lag > 0.1, "the stall to be measured")
        await asyncio.sleep(0.1)
        monitor.stop()

    loop.run_until_complete(scenario())
    assert not worker.overloaded and monitor.transitions == 0


def test_the_threshold_follows_the_tables_a_reload_swaps_in(loop, caplog):
    worker, monitor = monitored(loop, None)
    states = []

    async def scenario():
        monitor.start()
        worker.swap(tables("100ms"))                   # a reload switches shedding on
        stall(loop)
        await until(lambda: worker.overloaded, "the overload under the new tables")
        states.append(True)
        worker.swap(tables("0s"))                      # ... and off: shedding stops at once
        loop.call_soon(time.sleep, 0.2)                # even while the loop still lags
        await until(lambda: monitor.transitions == 2, "the recovery")
        states.append(bool(worker.overloaded))
        monitor.stop()

    with caplog.at_level(logging.INFO, logger="sluice.overload"):
        loop.run_until_complete(scenario())
    assert states == [True, False]
    assert "max_loop_delay is now off" in caplog.records[-1].getMessage()


def test_an_embedded_proxy_measures_the_callers_loop_from_start_to_stop(loop):
    """engine.Proxy runs one WorkerServer in the caller's loop, and with it a monitor: the
    caller blocking its own loop overloads the proxy; stop() ends sampling and shedding."""
    import engine
    from support import free_port

    proxy = engine.Proxy(load_config_text(
        (CONFIG % "overload: {max_loop_delay: 100ms}").replace("8080", str(free_port()))))
    seen = []

    async def scenario():
        await proxy.start()
        server = proxy._server
        seen.append(server.monitor.running)
        time.sleep(STALL)                              # the caller's own code blocks the loop
        await until(lambda: server.monitor.transitions >= 1, "the stall to be seen")
        seen.append(bool(server.worker.overloaded))
        await proxy.stop(drain=1.0)
        seen.append(server.monitor.running or bool(server.worker.overloaded))

    loop.run_until_complete(scenario())
    assert seen == [True, True, False]


def test_stop_ends_shedding(loop):
    worker, monitor = monitored(loop, "100ms")
    monitor.start()
    monitor.observe(1.0)
    assert worker.overloaded
    monitor.stop()
    assert not worker.overloaded and not monitor.running


def test_the_published_lag_is_the_peak_of_the_last_window_or_two(loop):
    """The worker's gauge in Stats (read by /stats/prometheus, engine/runtime/metrics.py) holds
    the largest recent sample, so a scrape every 15 s still sees a stall that one 50 ms sample
    measured; it goes back down once two windows have passed without one."""
    from engine._fast.stats import Stats

    stats = Stats(max_workers=2)
    stats.attach_worker(1)
    now = [500.0]
    monitor = LoopMonitor(loop, Worker(loop, tables("100ms")), stats, 1, clock=lambda: now[0])

    def gauge() -> float:
        return next(w["loop_lag"] for w in stats.workers() if w["slot"] == 1)

    def sample(lag: float, after: float = INTERVAL) -> float:
        now[0] += after
        monitor.observe(lag)
        return gauge()

    assert sample(0.002) == pytest.approx(0.002)
    assert sample(0.250) == pytest.approx(0.25)
    assert sample(0.001) == pytest.approx(0.25)          # held: the stall is still visible
    assert sample(0.001, PEAK_WINDOW) == pytest.approx(0.25)   # the next window keeps it
    assert sample(0.003, PEAK_WINDOW) == pytest.approx(0.003)  # two windows on: gone
    assert stats.aggregate()["loop_lag_max"] == pytest.approx(0.003)
