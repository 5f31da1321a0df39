"""engine/policy/lint.py, issue 11: warnings about retry, mirror and circuit-breaker settings
that load but probably do not do what their author meant."""
from engine.policy.lint import check
from engine.policy.model import Config


def config(route: dict | None = None, cluster: dict | None = None) -> Config:
    return Config.model_validate({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
        "routes": [{"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "web"}],
                    **(route or {})}],
        "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9000"}],
                      **(cluster or {})},
                     {"name": "shadow", "endpoints": [{"address": "127.0.0.1:9001"}]}],
    })


def mine(found):
    """Leave out the unused-shadow warning the fixture itself causes."""
    return [f for f in found if f[0] != ("clusters", 1)]


def test_the_resilience_defaults_warn_about_nothing():
    assert mine(check(config({"retry": {}, "fault": {"abort": {"status": 503}}},
                             {"circuit_breakers": {}, "retry_budget": {}}))) == []


def test_retrying_methods_that_are_not_idempotent_warns_once_per_method():
    found = check(config({"retry": {"methods": ["GET", "POST", "PATCH", "PUT"]}}))
    assert [(loc, reason.split(" is not")[0]) for loc, reason in mine(found)] == [
        (("routes", 0, "retry", "methods", 1), "POST"),
        (("routes", 0, "retry", "methods", 2), "PATCH")]
    assert mine(found)[0][1] == (
        "POST is not idempotent: a try that failed after the upstream acted on it (a reset, a "
        "timeout, a 5xx) is sent again, so the upstream may act twice")


def test_no_method_warning_when_retries_are_off():
    assert mine(check(config({"retry": {"attempts": 0, "methods": ["POST"]}}))) == []


def test_tries_that_cannot_all_fit_in_the_route_timeout_warn():
    found = mine(check(config({"timeout": "2s",
                               "retry": {"attempts": 2, "per_try_timeout": "1s"}})))
    assert found == [(("routes", 0, "retry", "per_try_timeout"),
                      "3 tries of up to 1s each take up to 3s, longer than the route's timeout "
                      "(2s): the later tries are cut short by the route's deadline")]


def test_tries_that_fit_or_without_a_deadline_do_not_warn():
    assert mine(check(config({"timeout": "3s",
                              "retry": {"attempts": 2, "per_try_timeout": "1s"}}))) == []
    assert mine(check(config({"timeout": "0s",
                              "retry": {"attempts": 2, "per_try_timeout": "1s"}}))) == []
    assert mine(check(config({"timeout": "1s", "retry": {"attempts": 9}}))) == []


def test_mirroring_to_a_target_of_the_same_route_warns():
    assert mine(check(config({"mirror": {"cluster": "web"}}))) == [
        (("routes", 0, "mirror", "cluster"),
         "cluster 'web' is also a target of this route (to): the copies go to the same "
         "endpoints as the requests themselves, which then handle both")]


def test_a_cluster_used_only_as_a_mirror_is_used():
    assert check(config({"mirror": {"cluster": "shadow", "percent": 5}})) == []


def test_max_retries_beside_a_retry_budget_has_no_effect():
    assert mine(check(config(cluster={"circuit_breakers": {"max_retries": 10},
                                      "retry_budget": {"percent": 10}}))) == [
        (("clusters", 0, "circuit_breakers", "max_retries"),
         "has no effect: retry_budget replaces it (retries in flight are capped by the budget)")]
    # the default value (as a snapshot writes it out) is no finding
    assert mine(check(config(cluster={"circuit_breakers": {"max_retries": 3},
                                      "retry_budget": {}}))) == []
