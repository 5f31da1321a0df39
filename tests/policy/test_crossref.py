"""engine/policy/crossref.py: names, references and addresses, from a Config or from raw data."""
from engine.policy.crossref import Sections, check
from engine.policy.model import Config

VALID = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
    "routes": [{"name": "web", "match": {}, "to": [{"cluster": "web"}]}],
    "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9000"}]}],
}


def test_sections_of_a_config_equal_sections_from_its_data():
    assert Sections.of(Config.model_validate(VALID)) == Sections.from_data(VALID)


def test_from_data_skips_what_has_the_wrong_shape():
    data = {
        "admin": "nonsense",
        "listeners": [5, {"name": 7, "address": "nope", "routes": ["web", 3]}],
        "routes": {"not": "a list"},
        "clusters": [{"name": "web"}],
    }
    sections = Sections.from_data(data)
    assert sections.names == {"listeners": (), "routes": (), "clusters": ((0, "web"),),
                              "filters": ()}
    assert sections.route_refs == ((1, ((("listeners", 1, "routes", 0), "web"),)),)
    assert sections.admin_address is None and sections.listener_addresses == ()
    assert check(sections) == [
        (("listeners", 1, "routes", 0), "route 'web' is not defined")]


def test_default_admin_address_collides_with_a_listener():
    data = {**VALID, "listeners": [{**VALID["listeners"][0], "address": "127.0.0.1:9901"}]}
    assert check(Sections.from_data(data)) == [
        (("listeners", 0, "address"), "127.0.0.1:9901 is already used by the admin API")]


def test_ipv6_literals_are_compared_normalised():
    data = {**VALID, "listeners": [
        {"name": "a", "address": "[::1]:80", "routes": ["web"]},
        {"name": "b", "address": "[0:0::1]:80", "routes": ["web"]},
    ]}
    assert check(Sections.from_data(data)) == [
        (("listeners", 1, "address"),
         "[0:0::1]:80 is already used by listener 'a' (listeners[0]) ([::1]:80)")]


def test_wildcards_of_different_families_do_not_collide():
    data = {**VALID, "listeners": [
        {"name": "a", "address": "0.0.0.0:80", "routes": ["web"]},
        {"name": "b", "address": "[::]:80", "routes": ["web"]},
    ]}
    assert check(Sections.from_data(data)) == []
