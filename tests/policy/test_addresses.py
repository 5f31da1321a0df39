"""engine/policy/addresses.py"""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.policy.addresses import Address, parse_address


@pytest.mark.parametrize("text, host, port", [
    ("127.0.0.1:8080", "127.0.0.1", 8080),
    ("[::1]:8080", "::1", 8080),
    ("localhost:80", "localhost", 80),
    ("api.svc.cluster.local:9000", "api.svc.cluster.local", 9000),
    ("0.0.0.0:0", "0.0.0.0", 0),
])
def test_parses_and_prints_the_original_form(text, host, port):
    address = parse_address(text)
    assert address == Address(host, port)
    assert str(address) == text


@pytest.mark.parametrize("value, message", [
    ("8080", "expected 'host:port', got '8080' (no port)"),
    (":8080", "':8080' has no host: write 0.0.0.0:8080 for every interface or "
              "127.0.0.1:8080 for this machine only"),
    ("::1:80", "an IPv6 address needs brackets: '[::1]:80'"),
    ("[::1]80", "expected '[IPv6]:port', got '[::1]80'"),
    ("[zz]:80", "'zz' is not an IPv6 address"),
    ("1.2.3.999:80", "'1.2.3.999' is not an IPv4 address"),
    ("bad_host:80", "'bad_host' is not a valid host name or IP address"),
    ("host:http", "'http' is not a port number (0-65535)"),
    ("host:70000", "port 70000 is out of range (0-65535)"),
    (8080, "expected an address 'host:port' as a string, got 8080"),
])
def test_refuses_with_a_message(value, message):
    with pytest.raises(ValueError) as caught:
        parse_address(value)
    assert str(caught.value) == message


def test_loopback_and_unspecified():
    assert parse_address("127.0.0.2:1").is_loopback
    assert parse_address("[::1]:1").is_loopback
    assert parse_address("localhost:1").is_loopback
    assert not parse_address("10.0.0.1:1").is_loopback
    assert not parse_address("example.com:1").is_loopback
    assert parse_address("0.0.0.0:1").is_unspecified
    assert parse_address("[::]:1").is_unspecified


def test_same_socket_key_normalises_literals_and_names():
    long_form, short_form = parse_address("[0:0::1]:80"), parse_address("[::1]:80")
    assert long_form.same_socket_key() == short_form.same_socket_key()
    assert parse_address("Host.Example:80").same_socket_key() == ("host.example", 80)


@given(st.ip_addresses(), st.integers(min_value=0, max_value=65535))
def test_round_trips_any_ip_literal(ip, port):
    text = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    assert str(parse_address(text)) == text
