"""engine/_fast/pool.pyx: leases against fake connections (no sockets: the pool is bookkeeping)."""
from engine._fast.pool import LEASE, Pool, PooledConn


class Transport:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


class Holder:
    """A parked exchange: the pool calls lease_ready() when something frees."""
    def __init__(self):
        self.woken = 0

    def lease_ready(self):
        self.woken += 1


def conn(pool):
    return PooledConn(pool, Transport())


def test_an_idle_connection_is_leased_before_a_new_slot():
    p = Pool("127.0.0.1", 1, max_connections=2)
    how, c = p.lease(Holder())
    assert how == LEASE["open"] and c is None and p.total == 1
    up = conn(p)
    p.give_back(up, 1.0)
    how, c = p.lease(Holder())
    assert how == LEASE["now"] and c is up and p.total == 1


def test_the_warmest_connection_comes_first():
    p = Pool("127.0.0.1", 1, max_connections=3)
    a, b = conn(p), conn(p)
    for _ in range(2):
        p.lease(Holder())
    p.give_back(a, 1.0)
    p.give_back(b, 2.0)
    assert p.lease(Holder())[1] is b


def test_a_full_pool_parks_up_to_max_pending_then_refuses():
    p = Pool("127.0.0.1", 1, max_connections=1, max_waiters=2)
    assert p.lease(Holder())[0] == LEASE["open"]
    h1, h2 = Holder(), Holder()
    assert p.lease(h1)[0] == LEASE["parked"]
    assert p.lease(h2)[0] == LEASE["parked"]
    assert p.lease(Holder())[0] == LEASE["full"]
    assert p.waiting == 2


def test_a_retry_never_waits_and_never_takes_an_idle_connection():
    p = Pool("127.0.0.1", 1, max_connections=1)
    p.lease(Holder())
    up = conn(p)
    p.give_back(up, 1.0)
    assert p.lease(Holder(), fresh=True)[0] == LEASE["full"]      # the one slot is taken
    assert p.idle_count == 1


def test_a_release_or_a_lost_connection_wakes_the_first_parked_holder():
    p = Pool("127.0.0.1", 1, max_connections=1)
    p.lease(Holder())
    first, second = Holder(), Holder()
    p.lease(first)
    p.lease(second)
    up = conn(p)
    p.give_back(up, 1.0)
    assert (first.woken, second.woken) == (1, 0)
    assert p.lease(first)[1] is up
    p.lost(up)
    assert second.woken == 1 and p.total == 0


def test_a_failed_connect_gives_the_slot_back_and_wakes_a_waiter():
    p = Pool("127.0.0.1", 1, max_connections=1)
    p.lease(Holder())
    h = Holder()
    p.lease(h)
    p.open_failed()
    assert p.total == 0 and h.woken == 1


def test_a_connection_at_max_requests_is_closed_not_pooled():
    p = Pool("127.0.0.1", 1, max_connections=1, max_requests=1)
    p.lease(Holder())
    up = conn(p)
    # served is counted by the proxy; a fresh conn has served 0 < 1: pooled
    p.give_back(up, 1.0)
    assert p.idle_count == 1


# --- HTTP/2: connections are shared; the pool leases their streams (tests/_fast/test_h2client.py
# drives real connections; these are the pool's bookkeeping alone) ------------------------------

def test_holders_park_behind_an_opening_connection_instead_of_opening_more():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=8)
    assert pool.lease(Holder())[0] == LEASE["open"]
    holders = [Holder() for _ in range(5)]
    assert {pool.lease(h)[0] for h in holders} == {LEASE["parked"]}
    assert pool.total == 1 and pool.waiting == 5


def test_a_failed_connect_wakes_every_holder_parked_behind_it():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=8)
    pool.lease(Holder())
    holders = [Holder() for _ in range(3)]
    for h in holders:
        pool.lease(h)
    pool.open_failed()
    assert [h.woken for h in holders] == [1, 1, 1]
    assert pool.total == 0 and pool.connecting == 0
    # after a failure nobody waits for the next attempt: each opens its own
    assert pool.lease(Holder())[0] == LEASE["open"]
    assert pool.lease(Holder())[0] == LEASE["open"]


def test_http2_at_max_connections_with_none_opening_parks_then_refuses():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=1, max_waiters=1, h2_max_streams=1)
    assert pool.lease(Holder())[0] == LEASE["open"]
    assert pool.lease(Holder())[0] == LEASE["parked"]        # behind the opening connection
    assert pool.lease(Holder())[0] == LEASE["full"]          # max_pending reached


def test_http2_forgetting_a_connection_that_never_joined_changes_nothing():
    pool = Pool("127.0.0.1", 1, protocol=2)
    pool.lease(Holder())
    pool.lost(PooledConn(pool, Transport()))
    assert pool.total == 1 and pool.connecting == 1
