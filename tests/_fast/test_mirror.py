"""engine/_fast/mirror.pyx: the pure parts of request mirroring -- the shadow's host and the
sampling. The shadow's behaviour over real sockets is tests/integration/test_mirror.py."""

import pytest

from engine._fast import mirror


@pytest.mark.parametrize("host, shadow", [
    (b"api.example.com", b"api.example.com-shadow"),
    (b"api.example.com:8080", b"api.example.com-shadow:8080"),
    (b"10.0.0.1:80", b"10.0.0.1-shadow:80"),
    (b"[::1]", b"[::1]-shadow"),                  # the colons of an IPv6 literal are not a port
    (b"[::1]:8443", b"[::1]-shadow:8443"),
    (b"[fe80::1%25eth0]:80", b"[fe80::1%25eth0]-shadow:80"),
    (b"host:", b"host-shadow:"),                  # as Envoy: an empty port is still a port
    (b"a", b"a-shadow"),
])
def test_shadow_is_appended_to_the_host_part_as_envoy_does(host, shadow):
    assert mirror.shadow_host(host) == shadow


def test_percent_0_and_100_are_exact():
    assert mirror.sampled_count(0.0, 10_000) == 0
    assert mirror.sampled_count(100.0, 10_000) == 10_000
    assert mirror.sampled_count(-1.0, 100) == 0 and mirror.sampled_count(250.0, 100) == 100


@pytest.mark.parametrize("percent", [0.1, 1.0, 12.5, 50.0, 99.0])
def test_a_percent_mirrors_that_share_of_requests(percent):
    n = 400_000
    k = mirror.sampled_count(percent, n)
    p = percent / 100
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(k - n * p) < 6 * sigma, (k, n * p)


def test_nothing_is_in_flight_in_a_process_that_mirrors_nothing():
    assert mirror.shadows_in_flight() == 0
