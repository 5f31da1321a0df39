"""engine/_fast/limiter.pyx: token buckets in shared memory.

Time is simulated through the `now` argument except in the multi-process tests, which use the real
CLOCK_MONOTONIC and check admission counts, never speed."""
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from engine._fast import limiter as L


# ---- XXH64 oracle (a direct transcription of the reference algorithm) ----------------------------
_P1, _P2, _P3, _P4, _P5 = (
    11400714785074694791,
    14029467366897019727,
    1609587929392839161,
    9650029242287828579,
    2870177450012600261,
)
_M = (1 << 64) - 1


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc, v):
    return (_rotl((acc + v * _P2) & _M, 31) * _P1) & _M


def _xxh64(data: bytes, seed: int) -> int:
    n, p = len(data), 0
    u64 = lambda i: int.from_bytes(data[i : i + 8], "little")  # noqa: E731
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed, (seed - _P1) & _M]
        while p + 32 <= n:
            for i in range(4):
                v[i] = _round(v[i], u64(p))
                p += 8
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for x in v:
            h = ((h ^ _round(0, x)) * _P1 + _P4) & _M
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while p + 8 <= n:
        h = (_rotl(h ^ _round(0, u64(p)), 27) * _P1 + _P4) & _M
        p += 8
    if p + 4 <= n:
        h = (_rotl(h ^ (int.from_bytes(data[p : p + 4], "little") * _P1 & _M), 23) * _P2 + _P3) & _M
        p += 4
    while p < n:
        h = (_rotl(h ^ (data[p] * _P5 & _M), 11) * _P1) & _M
        p += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h


def test_key_hash_is_xxh64_seeded_with_the_limit_id():
    # published XXH64 vectors
    assert L.key_hash(0, b"") == 0xEF46DB3751D8E999
    assert L.key_hash(0, b"a") == 0xD24EC4F1A98C6E5B
    assert L.key_hash(0, b"abc") == 0x44BC2CF5AD770999
    assert L.key_hash(20141025, b"xxhash") == 0xB559B98D844E0635
    # every tail path and the 32-byte stripe loop, against the oracle
    for n in list(range(0, 70)) + [100, 255, 1000]:
        data = bytes((i * 131 + 7) & 0xFF for i in range(n))
        for seed in (0, 1, 0xDEADBEEFCAFEF00D, _M):
            assert L.key_hash(seed, data) == (_xxh64(data, seed) or 1)
    assert L.key_hash(-1, b"x") == L.key_hash(_M, b"x")


# ---- token bucket semantics ---------------------------------------------------------------------


def make(rate=2.0, burst=3, nslots=64, limit_id=1):
    return L.Limiter(L.SharedBuckets(nslots), limit_id, rate, burst)


def test_burst_is_admitted_at_once_then_refused():
    lim = make(rate=10.0, burst=5)
    got = [lim.take_py(b"k", 100.0)[0] for _ in range(8)]
    assert got == [True] * 5 + [False] * 3


def test_remaining_reset_and_retry_after_values():
    lim = make(rate=2.0, burst=3)
    assert lim.take_py(b"k", 10.0) == (True, 2, 0.5, 0.0)
    assert lim.take_py(b"k", 10.0) == (True, 1, 1.0, 0.0)
    assert lim.take_py(b"k", 10.0) == (True, 0, 1.5, 0.0)
    # empty: one token in (1 - 0) / rate, full in (3 - 0) / rate
    assert lim.take_py(b"k", 10.0) == (False, 0, 1.5, 0.5)
    # a quarter second later half a token is back
    ok, rem, reset, retry = lim.take_py(b"k", 10.25)
    assert (ok, rem) == (False, 0)
    assert reset == pytest.approx(1.25) and retry == pytest.approx(0.25)


def test_tokens_refill_at_rate_up_to_burst():
    lim = make(rate=4.0, burst=10)
    for _ in range(10):
        assert lim.take_py(b"k", 0.0)[0]
    assert not lim.take_py(b"k", 0.0)[0]
    # 1 s later: 4 tokens back
    got = [lim.take_py(b"k", 1.0)[0] for _ in range(6)]
    assert got == [True] * 4 + [False] * 2
    # a long idle period refills to burst, not beyond
    got = [lim.take_py(b"k", 1000.0)[0] for _ in range(12)]
    assert got == [True] * 10 + [False] * 2


def test_steady_rate_admits_rate_per_second():
    lim = make(rate=50.0, burst=1)
    admitted = sum(lim.take_py(b"k", i * 0.001)[0] for i in range(10_000))  # 1 kHz for 10 s
    assert admitted == pytest.approx(1 + 50 * 9.999, abs=1)


def test_an_older_now_refills_nothing_and_does_not_move_time_back():
    lim = make(rate=1.0, burst=2)
    lim.take_py(b"k", 50.0)
    lim.take_py(b"k", 50.0)
    # another worker's loop turn read its clock 0.3 s earlier
    ok, rem, reset, retry = lim.take_py(b"k", 49.7)
    assert (ok, rem) == (False, 0)
    assert retry == pytest.approx(1.3) and reset == pytest.approx(2.3)
    assert lim.take_py(b"k", 51.0)[0]


def test_different_keys_are_independent():
    lim = make(rate=1.0, burst=2)
    assert [lim.take_py(b"10.0.0.1", 0.0)[0] for _ in range(3)] == [True, True, False]
    assert [lim.take_py(b"10.0.0.2", 0.0)[0] for _ in range(3)] == [True, True, False]
    assert lim.take_py(b"", 0.0)[0]  # a per-route limit uses the empty key


def test_limiters_with_the_same_limit_id_share_buckets_and_different_ids_do_not():
    buckets = L.SharedBuckets(1024)
    a = L.Limiter(buckets, 0x1234, 1.0, 2)
    b = L.Limiter(buckets, 0x1234, 1.0, 2)  # e.g. rebuilt by a reload that kept the limit
    c = L.Limiter(buckets, 0x1235, 1.0, 2)
    assert a.take_py(b"k", 0.0)[0] and b.take_py(b"k", 0.0)[0]
    assert not a.take_py(b"k", 0.0)[0] and not b.take_py(b"k", 0.0)[0]
    assert c.take_py(b"k", 0.0)[:2] == (True, 1)
    assert a._slot_of(b"k") == b._slot_of(b"k") != c._slot_of(b"k")
    # a negative id (a signed hash) is the same identity modulo 2**64
    assert L.Limiter(buckets, -1, 1.0, 1).limit_id == L.Limiter(buckets, _M, 1.0, 1).limit_id


def test_limiter_keeps_the_table_alive():
    buckets = L.SharedBuckets(16)
    lim = L.Limiter(buckets, 7, 1.0, 1)
    del buckets
    assert lim.take_py(b"k", 0.0)[0] and not lim.take_py(b"k", 0.0)[0]
    assert lim.buckets.used() == 1


def test_constructors_refuse_values_that_would_poison_the_table():
    buckets = L.SharedBuckets(16)
    for rate in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            L.Limiter(buckets, 1, rate, 1)
    with pytest.raises(ValueError):
        L.Limiter(buckets, 1, 1.0, 0)
    with pytest.raises(ValueError):
        L.SharedBuckets(0)
    assert L.SharedBuckets(100).nslots == 128
    assert L.SharedBuckets(2).probe_length == 2
    assert L.SharedBuckets(1 << 12).probe_length == 8


# ---- eviction (a table of one probe window) ------------------------------------------------------


def test_new_keys_fill_empty_slots_first():
    buckets = L.SharedBuckets(8)
    lim = L.Limiter(buckets, 1, 1.0, 4)
    for i in range(8):
        lim.take_py(b"k%d" % i, 0.0)
    assert buckets.used() == 8 and buckets.inserts == 8 and buckets.live_evictions == 0
    assert sorted(lim._slot_of(b"k%d" % i) for i in range(8)) == list(range(8))


def test_a_full_bucket_is_taken_over_without_losing_information():
    buckets = L.SharedBuckets(8)
    lim = L.Limiter(buckets, 1, 1.0, 4)
    for i in range(8):
        lim.take_py(b"k%d" % i, 0.0)  # full_at = 1.0
    for _ in range(3):
        lim.take_py(b"k3", 0.0)  # k3 empty: full_at = 4.0
    # at t=2 every bucket but k3 is full again: one of them makes room, k3 keeps its level
    lim.take_py(b"new", 2.0)
    assert buckets.live_evictions == 0
    assert lim._slot_of(b"new") >= 0 and lim._slot_of(b"k3") >= 0
    assert lim.take_py(b"k3", 2.0)[:2] == (True, 1)  # 2 tokens refilled, one taken


def test_when_the_window_is_full_the_most_refilled_bucket_is_evicted_and_counted():
    buckets = L.SharedBuckets(8)
    lim = L.Limiter(buckets, 1, 1.0, 4)
    for i in range(8):
        n = 1 if i == 5 else 3  # k5 took one token, the others three
        for _ in range(n):
            lim.take_py(b"k%d" % i, 0.0)
    # at t=0.5 nobody is full; k5 (full at 1.0, the others at 3.0) is the cheapest to forget
    assert lim.take_py(b"new", 0.5)[:2] == (True, 3)
    assert buckets.live_evictions == 1
    assert lim._slot_of(b"k5") == -1
    for i in (0, 1, 2, 3, 4, 6, 7):
        # the survivors kept their levels: 1 token left + 0.5 refilled
        assert lim.take_py(b"k%d" % i, 0.5)[:2] == (True, 0)
    # the documented fail-open: the evicted key returns with a full bucket
    assert lim.take_py(b"k5", 0.5)[:2] == (True, 3)
    assert buckets.live_evictions == 2


def test_limits_with_different_rates_compete_for_slots_by_time_to_full():
    buckets = L.SharedBuckets(8)
    slow = L.Limiter(buckets, 1, 0.1, 2)  # one token takes 10 s to come back
    fast = L.Limiter(buckets, 2, 100.0, 2)  # one token takes 10 ms
    slow.take_py(b"s", 0.0)
    for i in range(7):
        fast.take_py(b"f%d" % i, 0.0)
    for i in range(8):
        fast.take_py(b"g%d" % i, 0.001)  # 8 new keys at t=1ms: nobody full yet
    assert slow._slot_of(b"s") >= 0  # the slow bucket, owed 10 s, survived
    assert buckets.live_evictions >= 7


# ---- response headers ----------------------------------------------------------------------------


def test_headers_when_admitted():
    assert L.format_headers_py(True, 19, 0.05, 0.0, 20) == (
        b"ratelimit-limit: 20\r\nratelimit-remaining: 19\r\nratelimit-reset: 1\r\n"
    )
    assert L.format_headers_py(True, 20, 0.0, 0.0, 20).endswith(b"ratelimit-reset: 0\r\n")


def test_headers_when_refused_carry_retry_after_rounded_up_and_at_least_one():
    assert L.format_headers_py(False, 0, 1.0, 0.01, 20) == (
        b"ratelimit-limit: 20\r\nratelimit-remaining: 0\r\nratelimit-reset: 1\r\nretry-after: 1\r\n"
    )
    h = L.format_headers_py(False, 0, 7.2, 2.0000000001, 20)
    assert b"ratelimit-reset: 8\r\n" in h and h.endswith(b"retry-after: 2\r\n")
    assert L.format_headers_py(False, 0, 0.0, 0.0, 1).endswith(b"retry-after: 1\r\n")


def test_headers_from_a_real_take():
    lim = make(rate=0.5, burst=2)
    lim.take_py(b"k", 0.0)
    lim.take_py(b"k", 0.0)
    r = lim.take_py(b"k", 0.0)
    assert L.format_headers_py(*r, lim.burst) == (
        b"ratelimit-limit: 2\r\nratelimit-remaining: 0\r\nratelimit-reset: 4\r\nretry-after: 2\r\n"
    )


def test_monotonic_is_clock_monotonic():
    a = time.monotonic()
    b = L.monotonic()
    c = time.monotonic()
    assert a <= b <= c


# ---- named tables --------------------------------------------------------------------------------


@pytest.fixture
def shm_path(tmp_path):
    base = "/dev/shm" if os.path.isdir("/dev/shm") else str(tmp_path)
    path = os.path.join(base, f"sluice-test-buckets-{os.getpid()}-{time.monotonic_ns()}")
    yield path
    for p in (path,):
        if os.path.exists(p):
            os.unlink(p)


def _mapped(path):
    with open("/proc/self/maps") as f:
        return path in f.read()


def test_a_separately_started_process_attaches_to_a_named_table(shm_path):
    buckets = L.SharedBuckets(256, path=shm_path)
    assert buckets.path == shm_path and os.path.exists(shm_path)
    lim = L.Limiter(buckets, 42, 1.0, 3)
    for _ in range(3):
        assert lim.take_py(b"client", 100.0)[0]
    child = f"""
from engine._fast import limiter as L
b = L.SharedBuckets.attach({shm_path!r})
lim = L.Limiter(b, 42, 1.0, 3)
print(b.nslots, lim.take_py(b"client", 100.0)[0], lim.take_py(b"other", 100.0)[0])
"""
    out = subprocess.run(
        [sys.executable, "-c", child],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert out == ["256", "False", "True"]  # it saw our empty bucket; we see its new one
    assert lim.take_py(b"other", 100.0)[:2] == (True, 1)
    buckets.unlink()
    assert not os.path.exists(shm_path)


def test_attach_in_process_shares_and_dealloc_releases_the_mapping(shm_path):
    a = L.SharedBuckets(64, path=shm_path)
    b = L.SharedBuckets.attach(shm_path)
    la, lb = L.Limiter(a, 1, 1.0, 1), L.Limiter(b, 1, 1.0, 1)
    assert la.take_py(b"k", 0.0)[0] and not lb.take_py(b"k", 0.0)[0]
    assert _mapped(shm_path)
    del a, b, la, lb
    assert not _mapped(shm_path)


def test_creating_over_an_existing_name_starts_a_fresh_table(shm_path):
    old = L.SharedBuckets(64, path=shm_path)
    L.Limiter(old, 1, 1.0, 1).take_py(b"k", 0.0)
    new = L.SharedBuckets(64, path=shm_path)
    assert L.SharedBuckets.attach(shm_path).used() == 0
    assert old.used() == 1 and new.used() == 0  # the old mapping stays valid for its holders


def test_attach_refuses_what_is_not_a_table(shm_path, tmp_path):
    with pytest.raises(FileNotFoundError):
        L.SharedBuckets.attach(str(tmp_path / "missing"))
    with open(shm_path, "wb") as f:
        f.write(b"\0" * 4096)
    with pytest.raises(ValueError):
        L.SharedBuckets.attach(shm_path)


# ---- processes -----------------------------------------------------------------------------------

_fork = multiprocessing.get_context("fork")


def _hammer_real_clock(lim, barrier, seconds, out):
    barrier.wait()
    admitted = calls = 0
    first = now = L.monotonic()
    end = first + seconds
    while now < end:
        admitted += lim.take_py(b"same-key", now)[0]
        calls += 1
        now = L.monotonic()
    out.put((admitted, calls, first, now))


def test_two_forked_workers_on_one_key_admit_burst_plus_rate_times_elapsed():
    buckets = L.SharedBuckets(1024)  # created before the fork, as the supervisor does
    lim = L.Limiter(buckets, 99, 200.0, 10)
    barrier, out = _fork.Barrier(2), _fork.Queue()
    procs = [_fork.Process(target=_hammer_real_clock, args=(lim, barrier, 2.0, out)) for _ in "ab"]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    admitted = sum(r[0] for r in results)
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    assert all(r[1] > 1000 for r in results)  # both really competed for the key
    expected = 10 + 200 * elapsed
    assert abs(admitted - expected) <= 0.1 * expected, (admitted, expected, elapsed)
    assert buckets.used() == 1


def _hammer_frozen_clock(lim, barrier, n, out):
    barrier.wait()
    out.put(sum(lim.take_py(b"k", 5.0)[0] for _ in range(n)))


def test_no_update_is_lost_when_two_processes_take_from_one_bucket():
    # no refill (frozen clock): exactly `burst` takes succeed, however the two interleave
    buckets = L.SharedBuckets(64)
    lim = L.Limiter(buckets, 3, 1e-6, 60_000)
    lim.take_py(b"k", 5.0)  # create it before the race
    barrier, out = _fork.Barrier(2), _fork.Queue()
    procs = [
        _fork.Process(target=_hammer_frozen_clock, args=(lim, barrier, 50_000, out)) for _ in "ab"
    ]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert total == 60_000 - 1


def test_a_lock_left_by_a_dead_worker_is_stolen():
    buckets = L.SharedBuckets(64)
    lim = L.Limiter(buckets, 1, 1.0, 5)
    lim.take_py(b"k", 0.0)
    slot = lim._slot_of(b"k")
    pid = os.fork()
    if pid == 0:  # a worker killed inside the critical section
        buckets._hold_lock(slot)
        os._exit(0)
    os.waitpid(pid, 0)
    assert buckets._lock_owner(slot) == pid  # the child's own pid (refreshed after fork)
    t0 = time.monotonic()
    assert lim.take_py(b"k", 0.0)[:2] == (True, 3)  # the level survived
    assert time.monotonic() - t0 < 2.0
    assert buckets.lock_steals == 1
    assert buckets._lock_owner(slot) == 0  # released after the steal
    assert lim.take_py(b"k", 0.0)[:2] == (True, 2)  # and the lock works normally again
    assert buckets.lock_steals == 1


def test_a_lock_held_by_a_stuck_live_process_is_stolen_after_a_bounded_wait():
    buckets = L.SharedBuckets(64)
    lim = L.Limiter(buckets, 1, 1.0, 5)
    lim.take_py(b"k", 0.0)
    slot = lim._slot_of(b"k")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        buckets._hold_lock(slot)
        os.write(w, b"x")
        time.sleep(60)
        os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x"
        t0 = time.monotonic()
        assert lim.take_py(b"k", 0.0)[:2] == (True, 3)
        assert time.monotonic() - t0 < 5.0
        assert buckets.lock_steals == 1
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
