"""Rules that look across objects: unique names, references that resolve (a route's `to` and
`mirror` clusters among them), sockets that can bind, and routes that need mutual TLS listed
only on listeners that have it.

They need little: the names defined in each section, the names referred to, and the listening
addresses. `Sections` holds just that, built either from a valid `Config` (`Sections.of`, used
by `Config`'s own validator) or tolerantly from raw parsed data (`Sections.from_data`, used by the
loader when the config has other errors). From raw data, whatever has the wrong shape is skipped
(its own error is reported elsewhere), so a typo in one cluster never hides a misspelt reference
in a listener: all errors come out in one run.

Each rule returns `(loc, reason)` pairs from the root of the file; this module never raises.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .addresses import Address, parse_address
from .errors import Loc
from .suggest import did_you_mean

if TYPE_CHECKING:
    from .model import Config

SECTIONS = ("listeners", "routes", "clusters", "filters")
SINGULAR = {"listeners": "listener", "routes": "route", "clusters": "cluster", "filters": "filter"}
ADMIN_DEFAULT = Address("127.0.0.1", 9901)

Ref = tuple[Loc, str]  # where a name is used, the name


@dataclass(frozen=True)
class Sections:
    names: dict[str, tuple[tuple[int, str], ...]]  # section -> (index, name) of each item
    route_refs: tuple[tuple[int, tuple[Ref, ...]], ...]  # per listener index: its route names
    cluster_refs: tuple[Ref, ...]  # every routes[i].to[j].cluster and routes[i].mirror.cluster
    filter_refs: tuple[Ref, ...]  # every routes[i].filters[j]
    admin_address: Address | None
    listener_addresses: tuple[tuple[int, Address], ...]
    mtls_listeners: frozenset[int] = frozenset()  # indexes of listeners with tls.client_ca
    identity_routes: tuple[tuple[int, str], ...] = ()  # (index, name): match.client_identity

    @classmethod
    def of(cls, config: Config) -> Sections:
        return cls(
            names={s: tuple(enumerate(item.name for item in getattr(config, s)))
                   for s in SECTIONS},
            route_refs=tuple(
                (i, tuple((("listeners", i, "routes", j), name)
                          for j, name in enumerate(listener.routes)))
                for i, listener in enumerate(config.listeners)),
            cluster_refs=(*(
                (("routes", i, "to", j, "cluster"), target.cluster)
                for i, route in enumerate(config.routes) for j, target in enumerate(route.to)),
                *((("routes", i, "mirror", "cluster"), route.mirror.cluster)
                  for i, route in enumerate(config.routes) if route.mirror is not None)),
            filter_refs=tuple(
                (("routes", i, "filters", j), name)
                for i, route in enumerate(config.routes) for j, name in enumerate(route.filters)),
            admin_address=config.admin.address,
            listener_addresses=tuple(
                (i, listener.address) for i, listener in enumerate(config.listeners)),
            mtls_listeners=frozenset(
                i for i, listener in enumerate(config.listeners)
                if listener.tls is not None and listener.tls.client_ca is not None),
            identity_routes=tuple(
                (i, route.name) for i, route in enumerate(config.routes)
                if route.match.client_identity is not None),
        )

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Sections:
        """The same facts read from unvalidated data, skipping anything of the wrong shape."""
        items = {s: _items(data.get(s)) for s in SECTIONS}
        admin = data.get("admin", {})
        admin_address = _address(admin.get("address", ADMIN_DEFAULT)) \
            if isinstance(admin, dict) else None
        return cls(
            names={s: tuple((i, item["name"]) for i, item in items[s]
                            if isinstance(item.get("name"), str)) for s in SECTIONS},
            route_refs=tuple(
                (i, tuple((("listeners", i, "routes", j), name)
                          for j, name in enumerate(_list(listener.get("routes")))
                          if isinstance(name, str)))
                for i, listener in items["listeners"]),
            cluster_refs=(*(
                (("routes", i, "to", j, "cluster"), target["cluster"])
                for i, route in items["routes"]
                for j, target in enumerate(_list(route.get("to")))
                if isinstance(target, dict) and isinstance(target.get("cluster"), str)),
                *((("routes", i, "mirror", "cluster"), route["mirror"]["cluster"])
                  for i, route in items["routes"]
                  if isinstance(route.get("mirror"), dict)
                  and isinstance(route["mirror"].get("cluster"), str))),
            filter_refs=tuple(
                (("routes", i, "filters", j), name)
                for i, route in items["routes"]
                for j, name in enumerate(_list(route.get("filters")))
                if isinstance(name, str)),
            admin_address=admin_address,
            listener_addresses=tuple(
                (i, address) for i, listener in items["listeners"]
                if (address := _address(listener.get("address"))) is not None),
            mtls_listeners=frozenset(
                i for i, listener in items["listeners"]
                if isinstance(listener.get("tls"), dict)
                and listener["tls"].get("client_ca") is not None),
            identity_routes=tuple(
                (i, route["name"]) for i, route in items["routes"]
                if isinstance(route.get("name"), str) and isinstance(route.get("match"), dict)
                and route["match"].get("client_identity") is not None),
        )

    def listener_name(self, index: int) -> str:
        return dict(self.names["listeners"]).get(index, "?")


def check(sections: Sections) -> list[tuple[Loc, str]]:
    return [
        *_duplicate_names(sections),
        *_route_references(sections),
        *_cluster_references(sections),
        *_filter_references(sections),
        *_listening_addresses(sections),
        *_identity_without_mtls(sections),
    ]


def _duplicate_names(sections: Sections) -> Iterable[tuple[Loc, str]]:
    for section in SECTIONS:
        first: dict[str, int] = {}
        for i, name in sections.names[section]:
            if name in first:
                yield ((section, i, "name"),
                       f"duplicate {SINGULAR[section]} name '{name}' "
                       f"(first defined at {section}[{first[name]}])")
            first.setdefault(name, i)


def _route_references(sections: Sections) -> Iterable[tuple[Loc, str]]:
    known = {name for _, name in sections.names["routes"]}  # a set: 10k routes, 10k lookups
    defined = sorted(known)                                   # for did-you-mean only
    for _, refs in sections.route_refs:
        listed: dict[str, Loc] = {}
        for loc, name in refs:
            if name not in known:
                yield loc, f"route '{name}' is not defined{did_you_mean(name, defined)}"
            elif name in listed:
                yield loc, f"route '{name}' is already listed at routes[{listed[name][-1]}]"
            listed.setdefault(name, loc)


def _cluster_references(sections: Sections) -> Iterable[tuple[Loc, str]]:
    known = {name for _, name in sections.names["clusters"]}  # a set: 10k routes, 10k lookups
    defined = sorted(known)                                   # for did-you-mean only
    for loc, name in sections.cluster_refs:
        if name not in known:
            yield loc, f"cluster '{name}' is not defined{did_you_mean(name, defined)}"


def _filter_references(sections: Sections) -> Iterable[tuple[Loc, str]]:
    known = {name for _, name in sections.names["filters"]}  # a set: 10k routes, 10k lookups
    defined = sorted(known)                                   # for did-you-mean only
    for loc, name in sections.filter_refs:
        if name not in known:
            yield loc, f"filter '{name}' is not defined{did_you_mean(name, defined)}"


def _listening_addresses(sections: Sections) -> Iterable[tuple[Loc, str]]:
    """Two sockets that cannot both bind: the same address (literals normalised), or a wildcard
    (0.0.0.0 / ::) and another address of its family on the same port. Port 0 never collides.
    The admin address counts: it is a listener of the supervisor."""
    candidates: list[tuple[Loc, str, Address]] = [
        (("listeners", i, "address"),
         f"listener '{sections.listener_name(i)}' (listeners[{i}])", address)
        for i, address in sections.listener_addresses]
    if sections.admin_address is not None:
        candidates.insert(0, (("admin", "address"), "the admin API", sections.admin_address))
    bound: list[tuple[str, Address]] = []
    for loc, who, address in candidates:
        for other_who, other in bound if address.port else ():
            if _collide(address, other):
                shown = "" if str(address) == str(other) else f" ({other})"
                yield loc, f"{address} is already used by {other_who}{shown}"
                break
        bound.append((who, address))


def _identity_without_mtls(sections: Sections) -> Iterable[tuple[Loc, str]]:
    """A route matching on `client_identity` listed by a listener without mutual TLS could never
    match there (no client has an identity), so the config is refused rather than the route
    silently skipped. Reported once per route, naming the first such listener."""
    if not sections.identity_routes:
        return
    needing = {name: i for i, name in sections.identity_routes}
    reported: set[str] = set()
    for listener, refs in sections.route_refs:
        if listener in sections.mtls_listeners:
            continue
        for _, name in refs:
            if name in needing and name not in reported:
                reported.add(name)
                yield (("routes", needing[name], "match", "client_identity"),
                       f"route '{name}' is listed by listener "
                       f"'{sections.listener_name(listener)}' (listeners[{listener}]), which has "
                       "no tls.client_ca: without mutual TLS no client has an identity, so this "
                       "route could never match there")


def _collide(a: Address, b: Address) -> bool:
    if a.port != b.port:
        return False
    if a.same_socket_key() == b.same_socket_key():
        return True
    ip_a, ip_b = a.ip, b.ip
    if ip_a is None or ip_b is None or ip_a.version != ip_b.version:
        return False
    return ip_a.is_unspecified or ip_b.is_unspecified


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(_list(value)) if isinstance(item, dict)]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _address(value: Any) -> Address | None:
    try:
        return parse_address(value)
    except ValueError:
        return None
