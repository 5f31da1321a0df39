"""engine/_fast/endpoints.pyx: the node-wide endpoint state (health, ejection, generation),
shared across a fork as the workers share it."""

import os

import pytest

from engine._fast.endpoints import (
    HEALTHY, OUTCOME_5XX, OUTCOME_GATEWAY, OUTCOME_OK, UNHEALTHY, UNKNOWN, Endpoints,
)


def test_a_fresh_endpoint_is_unknown_and_available():
    e = Endpoints(16)
    assert e.health_py(3) == UNKNOWN and e.available_py(3)
    assert e.state(3)["health"] == "unknown"


def test_only_a_transition_counts_and_moves_the_generation():
    e = Endpoints(16)
    g = e.generation_py
    assert e.set_health(3, HEALTHY) is True
    assert e.set_health(3, HEALTHY) is False          # a probe that agrees is no transition
    assert e.set_health(3, UNHEALTHY) is True
    assert not e.available_py(3)
    st = e.state(3)
    assert (st["to_healthy"], st["to_unhealthy"]) == (1, 1)
    assert e.generation_py == g + 2


def test_slot_zero_and_slots_out_of_range_are_never_tracked():
    # slot 0 is the stats table's overflow, shared by many names: never taken out
    e = Endpoints(8)
    for slot in (0, -1, 8, 1000):
        assert e.set_health(slot, UNHEALTHY) is False
        assert e.available_py(slot)
        assert e.outcome_py(slot, OUTCOME_GATEWAY, 1, 1) == 0
        assert e.eject_py(slot, 0.0, 30.0) == 0


def test_bad_health_value_is_value_error():
    with pytest.raises(ValueError):
        Endpoints(8).set_health(1, 7)


def test_forget_makes_an_endpoint_unknown_and_keeps_its_counters():
    e = Endpoints(8)
    e.set_health(2, UNHEALTHY)
    e.eject_py(2, 0.0, 30.0)
    g = e.generation_py
    e.forget(2)
    st = e.state(2)
    assert (st["health"], st["ejected"], st["to_unhealthy"], st["ejections"]) == \
        ("unknown", False, 1, 1)
    assert e.generation_py == g + 1
    e.forget(2)                                    # nothing moved: the generation stays
    assert e.generation_py == g + 1


def test_consecutive_gateway_errors_cross_the_threshold_once_and_an_ok_resets():
    e = Endpoints(8)
    assert [e.outcome_py(1, OUTCOME_GATEWAY, 0, 3) for _ in range(3)] == [0, 0, 1]
    assert [e.outcome_py(1, OUTCOME_GATEWAY, 0, 3) for _ in range(3)] == [0, 0, 1]
    e.outcome_py(1, OUTCOME_GATEWAY, 0, 3)
    e.outcome_py(1, OUTCOME_GATEWAY, 0, 3)
    e.outcome_py(1, OUTCOME_OK, 0, 3)
    assert e.outcome_py(1, OUTCOME_GATEWAY, 0, 3) == 0


def test_a_plain_5xx_breaks_a_run_of_gateway_errors_but_counts_as_5xx():
    e = Endpoints(8)
    e.outcome_py(1, OUTCOME_GATEWAY, 3, 2)         # 5xx run 1, gateway run 1
    assert e.outcome_py(1, OUTCOME_5XX, 3, 2) == 0   # 5xx run 2, gateway run reset
    assert e.outcome_py(1, OUTCOME_GATEWAY, 3, 2) == 1   # 5xx run 3: crossed; gateway run 1
    assert e.outcome_py(1, OUTCOME_GATEWAY, 0, 2) == 1   # gateway run 2: crossed


def test_ejection_lasts_base_times_ejections_and_the_sweep_lifts_it():
    e = Endpoints(8)
    g = e.generation_py
    assert e.eject_py(4, 100.0, 30.0) == 1
    assert e.eject_py(4, 100.0, 30.0) == 0         # already ejected: one winner
    assert not e.available_py(4) and e.generation_py == g + 1
    assert e.state(4)["eject_until"] == 130.0
    assert e.sweep(129.9) == [] and e.sweep(130.0) == [4]
    assert e.available_py(4) and e.generation_py == g + 2
    e.eject_py(4, 200.0, 30.0)                      # the second ejection lasts twice as long
    assert e.state(4)["eject_until"] == 260.0
    e.sweep(1e9)
    e.eject_py(4, 300.0, 30.0, 50.0)                # capped
    assert e.state(4)["eject_until"] == 350.0


def test_the_state_is_shared_with_a_forked_process():
    e = Endpoints(8)
    pid = os.fork()
    if pid == 0:
        e.set_health(5, UNHEALTHY)
        os._exit(0)
    os.waitpid(pid, 0)
    assert e.health_py(5) == UNHEALTHY and e.generation_py == 1
