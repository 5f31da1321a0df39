"""engine/_fast/exchange.pyx: the exchange's transition table.

The exchange's behaviour over real sockets is tests/integration/*; here, the table itself: the
edges that exist, and that anything else fails loudly."""
import pytest

from engine._fast.exchange import Exchange, Services, TransitionError, transitions

EXPECTED = {
    "IDLE": {"LOCAL", "WAITING"},
    "LOCAL": {"IDLE", "LOCAL"},
    "WAITING": {"PROXYING", "LOCAL", "IDLE"},
    "PROXYING": {"WAITING", "LOCAL", "TUNNEL", "BODY_WAIT", "IDLE"},
    "TUNNEL": {"IDLE"},
    "BODY_WAIT": {"LOCAL", "IDLE"},
}


def test_the_table_has_exactly_the_documented_edges():
    assert transitions() == EXPECTED


def test_every_state_returns_to_idle_only_through_the_table():
    # every state but IDLE can reach IDLE (finish); IDLE cannot go to itself
    for state, targets in EXPECTED.items():
        if state != "IDLE":
            assert "IDLE" in targets
    assert "IDLE" not in EXPECTED["IDLE"]


@pytest.mark.parametrize("path", [
    ["LOCAL", "IDLE"],
    ["WAITING", "PROXYING", "BODY_WAIT", "IDLE"],
    ["WAITING", "PROXYING", "WAITING", "PROXYING", "IDLE"],     # a retry
    ["WAITING", "PROXYING", "TUNNEL", "IDLE"],
    ["WAITING", "LOCAL", "LOCAL", "IDLE"],                      # overflow, then a late timeout
])
def test_a_lifecycle_along_the_table_is_accepted(path):
    x = Exchange(Services())
    for to in path:
        x.step(to)
    assert x.state_name == "IDLE"


@pytest.mark.parametrize("frm,to", [
    (frm, to) for frm in EXPECTED for to in EXPECTED if to not in EXPECTED[frm]])
def test_an_edge_not_in_the_table_raises(frm, to):
    x = Exchange(Services())
    reach = {"IDLE": [], "LOCAL": ["LOCAL"], "WAITING": ["WAITING"],
             "PROXYING": ["WAITING", "PROXYING"], "TUNNEL": ["WAITING", "PROXYING", "TUNNEL"],
             "BODY_WAIT": ["WAITING", "PROXYING", "BODY_WAIT"]}
    for s in reach[frm]:
        x.step(s)
    with pytest.raises(TransitionError):
        x.step(to)
    assert x.state_name == frm
