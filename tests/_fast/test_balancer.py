"""engine/_fast/balancer.pyx: endpoint selection for every policy, health, and the hash ring."""

import collections
import random

import pytest

from engine._fast import balancer as lb
from engine._fast.balancer import (
    LB_LEAST_REQUEST,
    LB_RANDOM,
    LB_RING_HASH,
    LB_ROUND_ROBIN,
    Balancer,
    hash_key,
    policy_from_name,
)

ALL_POLICIES = [LB_ROUND_ROBIN, LB_LEAST_REQUEST, LB_RING_HASH, LB_RANDOM]


def keys(n, start=0):
    return [b"10.0.0.%d:9000" % i for i in range(start, start + n)]


def shares(bal, picks, key=None):
    counts = collections.Counter(bal.pick_py(key) for _ in range(picks))
    return {i: counts[i] / picks for i in counts}


# ------------------------------------------------------------------ module surface


def test_policy_constants_are_the_contract_values():
    assert (LB_ROUND_ROBIN, LB_LEAST_REQUEST, LB_RING_HASH, LB_RANDOM) == (0, 1, 2, 3)


def test_policy_from_name_maps_config_names():
    assert policy_from_name("weighted_round_robin") == LB_ROUND_ROBIN
    assert policy_from_name("least_request") == LB_LEAST_REQUEST
    assert policy_from_name("ring_hash") == LB_RING_HASH
    assert policy_from_name("random") == LB_RANDOM


def test_policy_from_name_unknown_is_value_error():
    with pytest.raises(ValueError):
        policy_from_name("maglev")


def test_unknown_policy_id_is_value_error():
    with pytest.raises(ValueError):
        Balancer(7, [1], keys(1))


def test_keys_and_weights_of_different_lengths_is_value_error():
    with pytest.raises(ValueError):
        Balancer(LB_RING_HASH, [1, 1], keys(3))


def test_keys_default_to_decimal_indices():
    assert Balancer(LB_ROUND_ROBIN, [1, 1, 1]).keys == (b"0", b"1", b"2")


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"", 0xEF46DB3751D8E999),
        (b"a", 0xD24EC4F1A98C6E5B),
        (b"abc", 0x44BC2CF5AD770999),
        (b"The quick brown fox jumps over the lazy dog", 0x0B242D361FDA71BC),
    ],
)
def test_hash_key_is_xxh64_reference_vectors(data, expected):
    assert hash_key(data) == expected


def test_hash_key_seed_changes_the_hash():
    assert hash_key(b"", 1) == 0xD5AFBA1336A3BE4B


def test_hash_key_covers_every_tail_length():
    # 0..70 bytes walk every branch: stripes of 32, 8-byte lanes, a 4-byte word, single bytes
    seen = {hash_key(bytes(range(k))) for k in range(71)}
    assert len(seen) == 71


# ------------------------------------------------------------------ degenerate sizes


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_no_endpoints_picks_minus_one(policy):
    bal = Balancer(policy, [], [])
    assert bal.n == 0
    assert bal.pick_py() == -1
    assert bal.pick_py(b"user-1") == -1
    bal.begin_py(0)  # out of range: ignored, no crash
    bal.end_py(-1)


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_single_endpoint_always_picked_until_unavailable(policy):
    bal = Balancer(policy, [3], keys(1))
    assert {bal.pick_py(b"k%d" % i) for i in range(50)} == {0}
    assert {bal.pick_py() for _ in range(50)} == {0}
    bal.set_available(0, False)
    assert bal.pick_py() == -1
    assert bal.pick_py(b"k") == -1
    bal.set_available(0, True)
    assert bal.pick_py(b"k") == 0


def test_set_available_out_of_range_is_index_error():
    bal = Balancer(LB_RANDOM, [1], keys(1))
    with pytest.raises(IndexError):
        bal.set_available(1, False)
    with pytest.raises(IndexError):
        bal.active(-1)


def test_weights_below_one_and_huge_are_clamped_not_rejected():
    bal = Balancer(LB_ROUND_ROBIN, [0, -5, 10**30], keys(3))
    assert [bal.weight(i) for i in range(3)] == [1, 1, lb.LB_MAX_WEIGHT]


# ------------------------------------------------------------------ unavailable endpoints


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_unavailable_endpoints_are_never_picked(policy):
    rnd = random.Random(7)
    bal = Balancer(policy, [rnd.randint(1, 5) for _ in range(8)], keys(8), seed=3)
    for _ in range(20):
        mask = [rnd.random() < 0.5 for _ in range(8)]
        for i, up in enumerate(mask):
            bal.set_available(i, up)
        assert bal.n_up == sum(mask)
        for j in range(200):
            i = bal.pick_py(b"key-%d" % j if j % 2 else None)
            if any(mask):
                assert mask[i], (policy, mask, i)
            else:
                assert i == -1


# ------------------------------------------------------------------ smooth weighted round robin


def test_wrr_5_1_1_is_nginx_smooth_sequence():
    bal = Balancer(LB_ROUND_ROBIN, [5, 1, 1], [b"a", b"b", b"c"])
    seq = "".join("abc"[bal.pick_py()] for _ in range(21))
    assert seq == "aabacaa" * 3


@pytest.mark.parametrize("weights", [[3, 1], [1, 1, 1, 1], [7, 3, 2, 1], [1, 100], [4, 4, 2]])
def test_wrr_gives_exact_shares_in_every_full_cycle(weights):
    bal = Balancer(LB_ROUND_ROBIN, weights, keys(len(weights)))
    cycle = sum(weights)
    for _ in range(5):
        counts = collections.Counter(bal.pick_py() for _ in range(cycle))
        assert [counts[i] for i in range(len(weights))] == weights


def test_wrr_spreads_picks_rather_than_bursting():
    # weights 1:1:1:1 never repeat an endpoint back to back; 3:1 never runs 4 of the heavy one
    bal = Balancer(LB_ROUND_ROBIN, [1, 1, 1, 1], keys(4))
    seq = [bal.pick_py() for _ in range(40)]
    assert all(a != b for a, b in zip(seq, seq[1:]))
    bal = Balancer(LB_ROUND_ROBIN, [3, 1], keys(2))
    seq = "".join(str(bal.pick_py()) for _ in range(40))
    assert "0000" not in seq and "11" not in seq


def test_wrr_skips_unavailable_and_stays_smooth_among_the_rest():
    bal = Balancer(LB_ROUND_ROBIN, [5, 1, 1], [b"a", b"b", b"c"])
    bal.set_available(1, False)
    seq = "".join("abc"[bal.pick_py()] for _ in range(18))
    assert seq == "aaacaa" * 3


def test_wrr_keeps_exact_long_run_shares_through_flapping():
    bal = Balancer(LB_ROUND_ROBIN, [2, 1, 1], keys(3))
    counts = collections.Counter()
    for round_ in range(300):
        bal.set_available(2, round_ % 2 == 0)
        for _ in range(4 if round_ % 2 == 0 else 3):
            counts[bal.pick_py()] += 1
    # 150 rounds of (2,1,1) and 150 of (2,1): 150*2+150*2 = 600, 300, 150; frozen state
    # while down may shift a pick or two, never a trend
    assert abs(counts[0] - 600) <= 2
    assert abs(counts[1] - 300) <= 2
    assert abs(counts[2] - 150) <= 2


def test_wrr_as_route_split_90_10_is_exact_per_100():
    split = Balancer(LB_ROUND_ROBIN, [90, 10], [b"api-v1", b"api-v2"])
    for _ in range(3):
        counts = collections.Counter(split.pick_py() for _ in range(100))
        assert counts == {0: 90, 1: 10}


# ------------------------------------------------------------------ random


def test_random_shares_follow_weights_3_1():
    got = shares(Balancer(LB_RANDOM, [3, 1], keys(2), seed=1), 20000)
    assert got[0] == pytest.approx(0.75, abs=0.02)
    assert got[1] == pytest.approx(0.25, abs=0.02)


def test_random_shares_follow_uneven_weights():
    weights = [5, 1, 3, 1]
    got = shares(Balancer(LB_RANDOM, weights, keys(4), seed=2), 20000)
    for i, w in enumerate(weights):
        assert got[i] == pytest.approx(w / 10, abs=0.02)


def test_random_equal_weights_are_uniform_and_skip_unavailable():
    bal = Balancer(LB_RANDOM, [2, 2, 2, 2], keys(4), seed=5)
    bal.set_available(2, False)
    got = shares(bal, 15000)
    assert set(got) == {0, 1, 3}
    for i in (0, 1, 3):
        assert got[i] == pytest.approx(1 / 3, abs=0.02)


def test_random_same_seed_same_sequence_different_seed_different():
    b1 = Balancer(LB_RANDOM, [1] * 8, keys(8), seed=42)
    b2 = Balancer(LB_RANDOM, [1] * 8, keys(8), seed=42)
    b3 = Balancer(LB_RANDOM, [1] * 8, keys(8), seed=43)
    s1 = [b1.pick_py() for _ in range(64)]
    assert s1 == [b2.pick_py() for _ in range(64)]
    assert s1 != [b3.pick_py() for _ in range(64)]


def test_negative_and_huge_seeds_are_accepted():
    # any int is a seed, taken modulo 2**64: -1 is 2**64 - 1 and 2**70 is 0, and each draws
    # a proper random sequence (every endpoint, not one stuck pick)
    def draws(seed):
        b = Balancer(LB_RANDOM, [1] * 8, keys(8), seed=seed)
        return [b.pick_py() for _ in range(64)]

    assert draws(-1) == draws(2**64 - 1)
    assert draws(2**70) == draws(0)
    assert draws(-1) != draws(2**70)
    for seed in (-1, 2**70):
        assert set(draws(seed)) == set(range(8))


# ------------------------------------------------------------------ least request


def test_begin_end_count_active_requests_and_never_go_negative():
    bal = Balancer(LB_LEAST_REQUEST, [1, 1], keys(2))
    bal.begin_py(1)
    bal.begin_py(1)
    bal.end_py(1)
    assert (bal.active(0), bal.active(1)) == (0, 1)
    bal.end_py(0)
    bal.end_py(1)
    bal.end_py(1)
    assert (bal.active(0), bal.active(1)) == (0, 0)


def test_least_request_two_endpoints_always_picks_the_less_loaded():
    # two distinct candidates: with n == 2 both are always compared
    bal = Balancer(LB_LEAST_REQUEST, [1, 1], keys(2), seed=9)
    bal.begin_py(0)
    assert {bal.pick_py() for _ in range(500)} == {1}


def test_least_request_never_picks_the_most_loaded_of_four():
    bal = Balancer(LB_LEAST_REQUEST, [1, 1, 1, 1], keys(4), seed=9)
    for _ in range(10):
        bal.begin_py(2)
    bal.begin_py(0)
    got = shares(bal, 4000)
    assert 2 not in got
    # 0 (one active) wins only against 2: it is drawn with 2 in 2 of the 12 ordered pairs
    assert got[0] == pytest.approx(1 / 6, abs=0.03)


def test_least_request_weighted_compares_load_per_weight():
    # active / weight: 0 has 5/3, 1 has 0/1 -> 1 wins
    bal = Balancer(LB_LEAST_REQUEST, [3, 1], keys(2), seed=4)
    for _ in range(5):
        bal.begin_py(0)
    assert {bal.pick_py() for _ in range(300)} == {1}
    # 1/3 < 1/1 -> 0 wins although both carry one request
    bal = Balancer(LB_LEAST_REQUEST, [3, 1], keys(2), seed=4)
    bal.begin_py(0)
    bal.begin_py(1)
    assert {bal.pick_py() for _ in range(300)} == {0}


def test_least_request_idle_shares_follow_weights():
    got = shares(Balancer(LB_LEAST_REQUEST, [3, 1, 1, 3], keys(4), seed=6), 20000)
    for i, w in enumerate([3, 1, 1, 3]):
        assert got[i] == pytest.approx(w / 8, abs=0.02)


def test_least_request_balances_in_flight_requests_under_load():
    # a queue simulation: every pick begins a request; the oldest ends once 40 are in flight
    rnd = random.Random(1)
    bal = Balancer(LB_LEAST_REQUEST, [1] * 8, keys(8), seed=8)
    inflight = []
    for _ in range(4000):
        i = bal.pick_py()
        bal.begin_py(i)
        inflight.append(i)
        if len(inflight) > 40:
            bal.end_py(inflight.pop(rnd.randrange(len(inflight))))
    loads = [bal.active(i) for i in range(8)]
    assert sum(loads) == 40
    assert max(loads) - min(loads) <= 3


def test_least_request_weighted_keeps_in_flight_proportional_to_weight():
    rnd = random.Random(2)
    bal = Balancer(LB_LEAST_REQUEST, [3, 1], keys(2), seed=8)
    inflight = []
    for _ in range(4000):
        i = bal.pick_py()
        bal.begin_py(i)
        inflight.append(i)
        if len(inflight) > 40:
            bal.end_py(inflight.pop(rnd.randrange(len(inflight))))
    assert 27 <= bal.active(0) <= 33  # 3/4 of 40


# ------------------------------------------------------------------ ring hash


def ring_map(bal, n_keys=10000):
    return [bal.pick_py(b"user-%d" % k) for k in range(n_keys)]


def test_ring_hash_same_key_same_endpoint():
    bal = Balancer(LB_RING_HASH, [1, 1, 1, 1], keys(4))
    for k in range(200):
        key = b"session-%d" % k
        assert len({bal.pick_py(key) for _ in range(5)}) == 1


def test_ring_hash_ignores_seed_and_endpoint_order():
    # every worker and every node must send a key to the same endpoint
    ks = keys(6)
    a = Balancer(LB_RING_HASH, [1] * 6, ks, seed=1)
    b = Balancer(LB_RING_HASH, [1] * 6, ks, seed=99)
    perm = [3, 0, 5, 1, 4, 2]
    c = Balancer(LB_RING_HASH, [1] * 6, [ks[p] for p in perm], seed=5)
    ma, mb, mc = ring_map(a, 2000), ring_map(b, 2000), ring_map(c, 2000)
    assert ma == mb
    assert ma == [perm[i] for i in mc]


def test_ring_size_is_160_points_per_weight():
    assert Balancer(LB_RING_HASH, [1, 2, 1], keys(3)).ring_size == 160 * 4
    assert Balancer(LB_ROUND_ROBIN, [1, 2, 1], keys(3)).ring_size == 0


def test_ring_hash_spreads_keys_roughly_evenly():
    bal = Balancer(LB_RING_HASH, [1, 1, 1, 1], keys(4))
    counts = collections.Counter(ring_map(bal))
    assert set(counts) == {0, 1, 2, 3}
    for c in counts.values():
        assert 0.15 < c / 10000 < 0.35


def test_ring_hash_shares_follow_weights():
    bal = Balancer(LB_RING_HASH, [3, 1], keys(2))
    counts = collections.Counter(ring_map(bal))
    assert counts[0] / 10000 == pytest.approx(0.75, abs=0.06)


def test_ring_hash_adding_fifth_endpoint_moves_about_a_fifth_all_to_it():
    before = ring_map(Balancer(LB_RING_HASH, [1] * 4, keys(4)))
    after = ring_map(Balancer(LB_RING_HASH, [1] * 5, keys(5)))
    moved = [k for k in range(10000) if before[k] != after[k]]
    assert 0.10 < len(moved) / 10000 < 0.30
    assert all(after[k] == 4 for k in moved)


def test_ring_hash_adding_a_weighted_endpoint_moves_keys_only_to_it():
    w = [2, 1, 3]
    before = ring_map(Balancer(LB_RING_HASH, w, keys(3)))
    after = ring_map(Balancer(LB_RING_HASH, w + [2], keys(4)))
    moved = [k for k in range(10000) if before[k] != after[k]]
    assert moved and all(after[k] == 3 for k in moved)


def test_ring_hash_unavailable_endpoint_moves_only_its_keys_and_they_come_back():
    bal = Balancer(LB_RING_HASH, [1] * 5, keys(5))
    before = ring_map(bal)
    bal.set_available(2, False)
    during = ring_map(bal)
    for b, d in zip(before, during):
        assert d != 2
        if b != 2:
            assert d == b
    moved_to = collections.Counter(d for b, d in zip(before, during) if b == 2)
    assert len(moved_to) >= 2  # spread over the others, not dumped on one neighbour
    bal.set_available(2, True)
    assert ring_map(bal) == before


def test_ring_hash_without_key_falls_back_to_weighted_random():
    bal = Balancer(LB_RING_HASH, [3, 1], keys(2), seed=3)
    for key in (None, b""):
        got = shares(bal, 8000, key)
        assert got[0] == pytest.approx(0.75, abs=0.03)


def test_ring_hash_large_weights_are_capped_and_still_consistent():
    bal = Balancer(LB_RING_HASH, [100000, 300000], keys(2))
    assert 0 < bal.ring_size <= lb.LB_RING_MAX_POINTS
    counts = collections.Counter(ring_map(bal))
    assert counts[1] / 10000 == pytest.approx(0.75, abs=0.03)
    assert ring_map(bal, 500) == ring_map(bal, 500)


def test_ring_hash_cap_keeps_a_point_for_every_endpoint():
    weights = [1] * 50 + [lb.LB_MAX_WEIGHT]
    bal = Balancer(LB_RING_HASH, weights, keys(51))
    assert bal.ring_size <= lb.LB_RING_MAX_POINTS + 51
    bal.set_available(50, False)
    got = set(ring_map(bal, 3000))
    assert got and got <= set(range(50))


# ------------------------------------------------------------------ node-wide health, panic


def watched(n, panic=50, policy=LB_ROUND_ROBIN):
    from engine._fast.endpoints import Endpoints

    shared = Endpoints(64)
    b = Balancer(policy, [1] * n, keys(n), 7, panic)
    b.watch(shared, list(range(1, n + 1)))
    return b, shared


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_an_unhealthy_endpoint_in_the_shared_state_is_skipped_from_the_next_pick(policy):
    from engine._fast.endpoints import HEALTHY, UNHEALTHY

    b, shared = watched(3, policy=policy)
    assert set(b.pick_py(b"k%d" % i) for i in range(300)) == {0, 1, 2}
    shared.set_health(2, UNHEALTHY)                # slot 2 is endpoint 1
    assert 1 not in {b.pick_py(b"k%d" % i) for i in range(300)}
    shared.set_health(2, HEALTHY)
    assert 1 in {b.pick_py(b"k%d" % i) for i in range(300)}


def test_an_ejected_endpoint_is_skipped_and_returns_when_the_sweep_lifts_it():
    b, shared = watched(2)
    shared.eject_py(1, 0.0, 10.0)
    assert {b.pick_py() for _ in range(10)} == {1}
    shared.sweep(10.0)
    assert {b.pick_py() for _ in range(10)} == {0, 1}


def test_below_the_panic_threshold_every_endpoint_is_picked():
    from engine._fast.endpoints import UNHEALTHY

    b, shared = watched(4, panic=50)
    shared.set_health(1, UNHEALTHY)
    shared.set_health(2, UNHEALTHY)                # 2 of 4 available: 50%, not below
    assert {b.pick_py() for _ in range(20)} == {2, 3} and not b.panicking
    shared.set_health(3, UNHEALTHY)                # 1 of 4: 25% < 50%: route to all
    assert {b.pick_py() for _ in range(20)} == {0, 1, 2, 3} and b.panicking
    assert b.available(0)


def test_panic_zero_means_none_available_picks_minus_one():
    from engine._fast.endpoints import UNHEALTHY

    b, shared = watched(2, panic=0)
    shared.set_health(1, UNHEALTHY)
    shared.set_health(2, UNHEALTHY)
    assert b.pick_py() == -1 and not b.panicking


def test_panic_threshold_100_routes_to_all_as_soon_as_one_is_down():
    from engine._fast.endpoints import UNHEALTHY

    b, shared = watched(3, panic=100)
    shared.set_health(1, UNHEALTHY)
    assert {b.pick_py() for _ in range(30)} == {0, 1, 2}


def test_manual_verdicts_combine_with_the_shared_state():
    from engine._fast.endpoints import UNHEALTHY

    b, shared = watched(3, panic=0)
    b.set_available(0, False)
    shared.set_health(2, UNHEALTHY)
    assert {b.pick_py() for _ in range(10)} == {2}


def test_an_unwatched_balancer_ignores_the_shared_state_and_panic_needs_a_percent():
    b = Balancer(LB_ROUND_ROBIN, [1, 1], keys(2), 0)
    assert not b.watched and b.panic == 0
    with pytest.raises(ValueError):
        Balancer(LB_ROUND_ROBIN, [1], keys(1), 0, 101)
    with pytest.raises(ValueError):
        watched(2)[0].watch(watched(2)[1], [1])     # a slot per endpoint


def test_a_new_balancer_starts_from_the_shared_state_not_from_all_up():
    # a reload builds new balancers: they must not route to an endpoint known unhealthy
    from engine._fast.endpoints import Endpoints, UNHEALTHY

    shared = Endpoints(16)
    shared.set_health(5, UNHEALTHY)
    b = Balancer(LB_ROUND_ROBIN, [1, 1], keys(2), 0, 0)
    b.watch(shared, [4, 5])
    assert {b.pick_py() for _ in range(10)} == {0}
