"""engine/_fast/h2client.pyx with pool.pyx: HTTP/2 upstream connections leased by the stream.

The connection is driven without sockets: its transport is a recorder and the peer is the `h2`
package in the server role (the oracle), fed what the connection writes and answering it. The
request/response translation goes through the real binary in
tests/integration/test_h2_upstream.py."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings

from engine._fast.exchange import Exchange, Services
from engine._fast.h2client import H2Upstream, UpstreamStream
from time import monotonic as monotonic_now   # CLOCK_MONOTONIC, as limiter.monotonic_now
from engine._fast.pool import LEASE, Pool


class Transport:
    def __init__(self):
        self.out = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data):
        self.out += data

    def take(self):
        data, self.out = bytes(self.out), bytearray()
        return data

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True

    def get_extra_info(self, name, default=None):
        return default


class Timer:
    def cancel(self):
        pass


class Loop:
    def call_later(self, delay, fn):
        return Timer()

    def call_soon(self, fn):
        fn()        # (the connection's batched write_out, at once: the tests read frames next)


class Holder:
    def __init__(self):
        self.woken = 0

    def lease_ready(self):
        self.woken += 1


class Peer:
    """The upstream: h2's server role."""

    def __init__(self, max_streams=100):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
        self.h2.initiate_connection()
        self.events = []

    def feed(self, data):
        self.events += self.h2.receive_data(data)


def services():
    svc = Services()
    svc.loop = Loop()
    return svc


def connect(pool, max_streams=100):
    """A connection opened for a lease (LEASE_OPEN) that got the peer's SETTINGS; its first
    stream went back to the pool (the exchange that asked no longer waited)."""
    svc = services()
    how, _ = pool.lease(Holder())
    assert how == LEASE["open"]
    conn = H2Upstream(pool, svc, Exchange(svc))
    t = Transport()
    conn.connection_made(t)
    peer = Peer(max_streams)
    peer.feed(t.take())                     # our preface and SETTINGS
    conn.data_received(peer.h2.data_to_send())   # theirs: the connection joins the pool
    peer.feed(t.take())
    return conn, t, peer


def test_the_connection_joins_the_pool_when_the_peers_settings_arrive():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=4)
    conn, t, peer = connect(pool, max_streams=2)
    assert pool.h2_connections == [conn] and pool.connecting == 0 and pool.total == 1
    assert any(isinstance(e, h2.events.RemoteSettingsChanged) for e in peer.events)
    how, s = pool.lease(Holder())
    assert how == LEASE["now"] and isinstance(s, UpstreamStream)
    assert conn.stream_count == 1


def test_streams_are_bounded_by_the_peers_max_concurrent_streams_then_a_new_connection():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=2)
    conn, t, peer = connect(pool, max_streams=2)
    assert [pool.lease(Holder())[0] for _ in range(2)] == [LEASE["now"]] * 2
    assert pool.lease(Holder())[0] == LEASE["open"]          # a second connection
    assert pool.total == 2 and pool.connecting == 1


def test_our_own_cap_bounds_streams_when_the_peer_allows_more():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=1, h2_max_streams=3)
    conn, t, peer = connect(pool, max_streams=100)
    assert [pool.lease(Holder())[0] for _ in range(4)] == [LEASE["now"]] * 3 + [LEASE["parked"]]


def test_a_stream_given_back_wakes_a_parked_holder():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=1)
    conn, t, peer = connect(pool, max_streams=1)
    how, s = pool.lease(Holder())
    waiter = Holder()
    assert pool.lease(waiter)[0] == LEASE["parked"]
    pool.give_back(s, monotonic_now())        # leased, never used
    assert waiter.woken == 1 and conn.stream_count == 0


def test_goaway_stops_new_streams_and_the_connection_closes_after_its_last():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=2)
    conn, t, peer = connect(pool)
    how, s = pool.lease(Holder())
    peer.h2.close_connection(last_stream_id=0)
    conn.data_received(peer.h2.data_to_send())
    assert conn.is_draining and not t.closed            # a stream still holds it
    assert pool.lease(Holder())[0] == LEASE["open"]     # never on the draining connection
    pool.give_back(s, monotonic_now())
    assert t.closed
    conn.connection_lost(None)
    assert pool.h2_connections == [] and pool.total == 1   # (the one opening)


def test_a_connection_out_of_stream_ids_drains_and_a_new_one_opens():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=2)
    conn, t, peer = connect(pool)
    conn._set_next_stream_id((1 << 31) + 1)             # past 2^31-1 (RFC 9113 5.1.1)
    assert pool.lease(Holder())[0] == LEASE["open"]
    assert conn.is_draining and t.closed                 # no stream left on it: closed


def test_an_idle_connection_is_pinged_and_closed_when_the_ping_is_not_answered():
    pool = Pool("127.0.0.1", 1, protocol=2, h2_ping_interval=10.0, h2_ping_timeout=2.0,
                idle_timeout=3600.0)
    conn, t, peer = connect(pool)
    now = monotonic_now()
    pool.sweep(now + 5)
    assert t.take() == b""                               # not idle long enough
    pool.sweep(now + 11)
    peer.feed(t.take())
    assert any(isinstance(e, h2.events.PingReceived) for e in peer.events)
    pool.sweep(now + 12)
    assert not t.aborted                                 # within ping_timeout
    pool.sweep(now + 14)
    assert t.aborted
    conn.connection_lost(None)
    assert pool.total == 0 and pool.h2_connections == []


def test_an_answered_ping_keeps_the_connection():
    pool = Pool("127.0.0.1", 1, protocol=2, h2_ping_interval=10.0, h2_ping_timeout=2.0,
                idle_timeout=3600.0)
    conn, t, peer = connect(pool)
    now = monotonic_now()
    pool.sweep(now + 11)
    peer.feed(t.take())
    conn.data_received(peer.h2.data_to_send())           # the ACK
    pool.sweep(now + 14)
    assert not t.aborted and not t.closed


def test_a_connection_without_streams_closes_after_idle_timeout():
    pool = Pool("127.0.0.1", 1, protocol=2, idle_timeout=30.0, h2_ping_interval=0.0)
    conn, t, peer = connect(pool)
    now = monotonic_now()
    assert pool.sweep(now + 10) == 0
    assert pool.sweep(now + 31) == 1 and t.closed
    peer.feed(t.take())
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in peer.events)


def test_a_busy_connection_is_not_closed_by_idle_timeout():
    pool = Pool("127.0.0.1", 1, protocol=2, idle_timeout=30.0, h2_ping_interval=0.0)
    conn, t, peer = connect(pool)
    pool.lease(Holder())
    assert pool.sweep(monotonic_now() + 31) == 0 and not t.closed


def test_close_idle_closes_idle_connections_and_drains_busy_ones():
    pool = Pool("127.0.0.1", 1, protocol=2, max_connections=2)
    busy, t1, _ = connect(pool, max_streams=1)
    how, s = pool.lease(Holder())
    assert how == LEASE["now"]
    idle, t2, _ = connect(pool)
    pool.close_idle()
    assert t2.closed and not t1.closed
    pool.give_back(s, monotonic_now())
    assert t1.closed


def test_a_connection_error_from_the_peer_forgets_the_connection():
    pool = Pool("127.0.0.1", 1, protocol=2)
    conn, t, peer = connect(pool)
    conn.data_received(b"\x00\x00\x01\x04\x00\x00\x00\x00\x00\x00")   # SETTINGS of 1 byte
    assert pool.h2_connections == [] and pool.total == 0 and t.closed
