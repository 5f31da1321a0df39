"""Warnings: a config that loads but probably does not do what its author meant.

Run only on a config that validated (on a broken one the findings would be noise, and some
would vanish once the errors are fixed). Each finding is `(loc, reason)` from the file's root.
Warnings never block a load: an unused route is harmless, and a rollout may add a route before
the listener that uses it.
"""
from __future__ import annotations

from collections.abc import Iterable

from .errors import Loc
from .matching import covers
from .model import Config


def check(config: Config) -> list[tuple[Loc, str]]:
    return [*_shadowed_routes(config), *_unused(config), *_no_effect(config),
            *_ignored_hash_on(config)]


def _shadowed_routes(config: Config) -> Iterable[tuple[Loc, str]]:
    routes = {route.name: route for route in config.routes}
    for i, listener in enumerate(config.listeners):
        earlier: list[tuple[int, str]] = []
        for j, name in enumerate(listener.routes):
            route = routes.get(name)
            if route is None or any(name == seen for _, seen in earlier):
                continue  # an error already (crossref)
            for k, seen in earlier:
                if covers(routes[seen].match, route.match):
                    what = "matches every request" if routes[seen].match.is_catch_all \
                        else f"matches every request '{name}' matches"
                    yield (("listeners", i, "routes", j),
                           f"route '{name}' is never reached: route '{seen}' before it "
                           f"(routes[{k}]) {what}")
                    break
            earlier.append((j, name))


def _unused(config: Config) -> Iterable[tuple[Loc, str]]:
    listed = {name for listener in config.listeners for name in listener.routes}
    for i, route in enumerate(config.routes):
        if route.name not in listed:
            yield ("routes", i), f"route '{route.name}' is not used by any listener"
    targeted = {target.cluster for route in config.routes for target in route.to}
    for i, cluster in enumerate(config.clusters):
        if cluster.name not in targeted:
            yield ("clusters", i), f"cluster '{cluster.name}' is not used by any route"


def _no_effect(config: Config) -> Iterable[tuple[Loc, str]]:
    for i, route in enumerate(config.routes):
        if route.direct_response is None:
            continue
        for field in ("rewrite", "timeout"):
            if field in route.model_fields_set and getattr(route, field) is not None:
                yield (("routes", i, field),
                       "has no effect on a route with direct_response (nothing goes upstream)")


def _ignored_hash_on(config: Config) -> Iterable[tuple[Loc, str]]:
    """Not an error, because CONFIG.md's own example sets hash_on on a weighted_round_robin
    cluster to show the field; the user should still learn that it does nothing there."""
    for i, cluster in enumerate(config.clusters):
        if cluster.hash_on is not None and cluster.balancer != "ring_hash":
            yield (("clusters", i, "hash_on"),
                   f"has no effect with balancer: {cluster.balancer} (only ring_hash uses it)")
