"""SATOSA micro-services in the login: loaded by SATOSA's own loader, chained as SATOSA chains them.

Operators list micro-services in ``config/broker.yaml`` exactly as in a SATOSA
``proxy_conf.yaml`` (``module``, ``name``, ``config``)::

    micro_services:
      - module: satosa.micro_services.attribute_authorization.AttributeAuthorization
        name: teachers-only
        config:
          attribute_allow:
            demo-service-b: {"": {roles: ["^teacher$"]}}

Request micro-services run after the service's request is validated, before the IdP
is chosen.  Response micro-services run after the city's answer is mapped to the
canonical identity, before anything is released.

What a response micro-service sees.  SATOSA plugins expect ``InternalData`` whose
``attributes`` are ``{name: [string, ...]}``, ``requester`` the service and
``auth_info.issuer`` the upstream IdP.  The canonical identity has nested values
(roles with schools and groups), so a plugin sees a flat *view* of it
(:func:`identity_view`): ``roles`` as role names, ``schools`` as school codes,
``groups`` as group names, and the scalar claims as one-element lists.  After the
chain, :func:`narrow` applies what the plugins left to the identity: a plugin may
remove values (filter, deny), never add any — a value the city's IdP did not
assert through the tenant's rules never reaches a service.  An exception a plugin
raises (``SATOSAAuthenticationError``: "Permission denied") ends the login with
``access_denied`` to the service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from satosa.micro_services.base import MicroService
from satosa.plugin_loader import load_request_microservices, load_response_microservices

from broker.login.context import LoginContext

#: Scalar claims of the canonical identity a plugin may read and filter away.
SCALARS = ("given_name", "family_name", "nickname", "learner_id", "class_level")
#: Facts a plugin may read (to decide) but not remove: the login depends on them.
READ_ONLY = ("tenant", "idp")

Next = Callable[[LoginContext, Any], Any]


def load(specs: Sequence[Mapping[str, Any]], base_url: str) -> tuple[list[MicroService], list[MicroService]]:
    """Request and response micro-services from ``specs``, by SATOSA's loader (its filters decide which is which)."""
    plugins = [dict(spec) for spec in specs]
    internal_attributes: dict[str, Any] = {"attributes": {}}
    return (load_request_microservices([], plugins, internal_attributes, base_url),
            load_response_microservices([], plugins, internal_attributes, base_url))


def chain(services: Iterable[MicroService], last: Next) -> Next:
    """Link ``services`` so each one's ``next`` is the following one and the last one's is ``last``.

    Returns the entry point.  Linking is done once, when the login is built: the
    services are shared by every request, as in SATOSA.
    """
    entry = last
    for service in reversed(list(services)):
        service.next = entry
        entry = service.process
    return entry


def identity_view(identity: Mapping[str, Any]) -> dict[str, list[str]]:
    """The flat ``{name: [string]}`` view of a canonical identity that SATOSA plugins read."""
    view: dict[str, list[str]] = {}
    for name in READ_ONLY + SCALARS:
        value = identity.get(name)
        if value is not None:
            view[name] = [str(value)]
    roles = identity.get("roles") or ()
    view["roles"] = list(dict.fromkeys(r["role"] for r in roles))
    view["schools"] = [s["code"] for s in identity.get("schools") or ()]
    view["groups"] = list(dict.fromkeys(r["group"] for r in roles if r.get("group")))
    return view


def narrow(identity: Mapping[str, Any], view: Mapping[str, Any]) -> dict[str, Any]:
    """The identity restricted to what is left in ``view`` after the plugins ran (never widened)."""
    kept = {name: {v for v in values if isinstance(v, str)} for name, values in view.items()
            if isinstance(values, (list, tuple))}
    out = dict(identity)
    for name in SCALARS:
        if name in out and str(out[name]) not in kept.get(name, ()):
            del out[name]
    schools = kept.get("schools", set())
    roles, groups = kept.get("roles", set()), kept.get("groups", set())
    if "schools" in out:
        out["schools"] = [s for s in out["schools"] if s["code"] in schools]
    if "roles" in out:
        out["roles"] = [r for r in out["roles"]
                        if r["role"] in roles and ("school" not in r or r["school"] in schools)
                        and ("group" not in r or r["group"] in groups)]
    for name in ("learning_materials_charges",):
        if name in out:
            out[name] = [c for c in out[name] if c["school"] in schools]
    return out
