"""engine/policy/translate.py: pydantic errors worded for YAML users."""
import pydantic

from engine.policy.model import Config, Match
from engine.policy.translate import fields_at, translate


def test_fields_at_walks_models_lists_and_optionals():
    assert fields_at(Config, ()) == ["admin", "listeners", "routes", "clusters", "access_log",
                                     "filters", "overload"]
    assert fields_at(Config, ("routes", 3, "match")) == list(Match.model_fields)
    assert fields_at(Config, ("routes", 0, "rewrite")) == ["path_prefix", "set_headers",
                                                          "remove_headers"]
    assert fields_at(Config, ("routes", 0, "match", "headers")) == []
    assert fields_at(Config, ("nope",)) == []


def test_items_that_failed_do_not_also_make_the_list_too_short():
    try:
        Config.model_validate({"listeners": [{"name": 1}], "routes": [], "clusters": []})
    except pydantic.ValidationError as error:
        found = dict(translate(error, Config))
    assert ("listeners",) not in found  # one bad item, not an empty list
    assert found[("routes",)] == "must not be empty"
    assert found[("listeners", 0, "name")] == 'expected a string, got the number 1 (quote it: "1")'
