"""Which platform services a city's schools allow: the ``allowed_services`` key of a tenant file.

A city (tenant) may choose which registered services its people may sign in to, for the
whole city and per school::

    allowed_services:
      default: all                         # or a list of service ids ([] allows none)
      schools:                             # per-school overrides (this city's school codes)
        "03083": [demo-service-a, sp/e2e-sp]
        "03084": all

Without the key every registered service is allowed (:data:`ALLOW_ALL`), so a tenant file
that never heard of it keeps working.

**Service ids.**  An OIDC client is named by its ``client_id``; a SAML service provider by
``sp/<name>``, ``<name>`` being its registration name (``broker sps add --name``, the file
``sps/<name>.xml`` in the registry).  A client id may contain ``:`` but never ``/``
(:data:`broker.registry.relying_parties._CLIENT_ID`) and a file name never contains ``/``, so
``sp/…`` can never be read as a client id, nor a client id as an SP.

**Who is allowed.**  A person is allowed a service if *any* of their schools of this city
allows it; a school without an override follows ``default``; a person with no school of this
city (codes the city does not list are ignored) follows ``default``.  :meth:`ServiceAccess.allows`
is a set lookup per school of the person, and a single attribute read for a city without
restrictions.

Service ids are not checked against the registry when tenants load: services are
registered independently of tenant files (and possibly after them).  :func:`unknown_service_warnings`
names the ones nothing is registered under; ``broker check`` prints them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from broker.registry.relying_parties import RelyingParties

#: The prefix of a SAML service provider's service id: ``sp/<registration name>``.
SP_PREFIX = "sp/"
#: The value that allows every service.
ALL = "all"
# A client id (as broker.registry.relying_parties registers them) or sp/<name>.
_SERVICE_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._:-]{0,127}|sp/[^/\s]{1,128})\Z")
_EXPECTED = (f"'{ALL}' or a list of service ids (an OIDC client_id, or {SP_PREFIX}<name> for a SAML service "
             "provider)")


class Checker(Protocol):
    """What the parser reports problems to (:class:`broker.registry.tenants._Checker` is one)."""

    def fail(self, path: str, expected: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class ServiceAccess:
    """A city's choice of services: ``default`` for the city, ``schools`` per school code.

    ``None`` (in ``default`` or as a school's value) means every service; a frozenset names
    the only services allowed.  ``codes`` are the city's school codes: other codes a person
    may carry are ignored.
    """

    default: frozenset[str] | None = None
    schools: Mapping[str, frozenset[str] | None] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    codes: frozenset[str] = frozenset()
    #: Nothing is restricted anywhere (computed): the login path's fast exit.
    allows_all: bool = dataclasses.field(init=False, compare=False, repr=False, default=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schools", MappingProxyType(dict(self.schools)))
        object.__setattr__(self, "allows_all",
                           self.default is None and all(v is None for v in self.schools.values()))

    def allows(self, service_id: str | None, school_codes: Iterable[str]) -> bool:
        """Whether a person of these schools may sign in to ``service_id`` (``None``: a service
        without an id, allowed only where every service is)."""
        if self.allows_all:
            return True
        any_school = False
        for code in school_codes:
            if code not in self.codes:
                continue
            any_school = True
            allowed = self.schools[code] if code in self.schools else self.default
            if allowed is None or service_id in allowed:
                return True
        if any_school:
            return False
        return self.default is None or service_id in self.default

    def service_ids(self) -> frozenset[str]:
        """Every service id this choice names (for :func:`unknown_service_warnings`)."""
        named = set(self.default or ())
        for allowed in self.schools.values():
            named.update(allowed or ())
        return frozenset(named)


#: No ``allowed_services`` key: every registered service.
ALLOW_ALL = ServiceAccess()


def parse_allowed_services(raw: Any, school_codes: Collection[str], c: Checker,
                           path: str = "allowed_services") -> ServiceAccess:
    """The ``allowed_services`` value of a tenant file (already ``${…}``-expanded), validated.

    ``school_codes`` are the tenant's school codes; an override for any other code is an
    error naming the field (``allowed_services.schools.12345``).  Every problem goes to
    ``c.fail(path, expected)``; the result is then :data:`ALLOW_ALL` (the tenant does not
    load anyway).
    """
    if raw is None:
        return ALLOW_ALL
    if not isinstance(raw, dict):
        c.fail(path, f"a mapping with default ({_EXPECTED}) and/or schools (school code: the same)")
        return ALLOW_ALL
    failed = False

    def fail(where: str, expected: str) -> None:
        nonlocal failed
        failed = True
        c.fail(where, expected)

    for key in raw:
        if key not in ("default", "schools"):
            fail(f"{path}.{key}", "one of the known keys (default, schools)")
    default = _services(raw.get("default", ALL), f"{path}.default", fail)
    overrides: dict[str, frozenset[str] | None] = {}
    schools = raw.get("schools")
    if schools is not None and not isinstance(schools, dict):
        fail(f"{path}.schools", f"a mapping of this city's school codes to {_EXPECTED}")
        schools = None
    known = frozenset(school_codes)
    for code, value in (schools or {}).items():
        where = f"{path}.schools.{code}"
        if isinstance(code, bool) or not isinstance(code, (str, int)):
            fail(where, "a school code as a string (e.g. '03083')")
            continue
        text = str(code)
        if text not in known:
            quoted = " (quote it: YAML reads an unquoted 03083 as the number 3083)" if isinstance(code, int) else ""
            fail(where, f"a school code of this city, one of schools[].code ({', '.join(sorted(known)) or 'none'})"
                        + quoted)
            continue
        overrides[text] = _services(value, where, fail)
    if failed:
        return ALLOW_ALL
    return ServiceAccess(default=default, schools=overrides, codes=known)


def _services(value: Any, where: str, fail: Callable[[str, str], None]) -> frozenset[str] | None:
    if value == ALL:
        return None
    if not isinstance(value, list):
        fail(where, _EXPECTED)
        return None
    ids = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _SERVICE_ID.match(item):
            fail(f"{where}[{index}]", f"a service id: an OIDC client_id, or {SP_PREFIX}<name> for a SAML service "
                                      "provider")
            continue
        ids.append(item)
    return frozenset(ids)


class ServiceNames:
    """The service id and the name a person sees for a service request, from the registrations.

    Lookups are dictionary reads on the relying parties of this registry version.
    """

    def __init__(self, parties: RelyingParties | None = None):
        self.parties = parties

    def service_id(self, protocol: str, requester: str) -> str | None:
        """``client_id`` for OIDC, ``sp/<name>`` for a registered SAML SP, else ``None``."""
        if protocol == "oidc":
            return requester
        sp = self.parties.sp_for_entity(requester) if self.parties is not None else None
        return f"{SP_PREFIX}{sp.name}" if sp is not None else None

    def display_name(self, protocol: str, requester: str, lang: str, fallback: str = "") -> str:
        """The service's name for a page in ``lang``: the client's registered name; an SP's
        ``mdui:DisplayName`` or ``OrganizationDisplayName`` in its metadata, else its registration name."""
        if self.parties is None:
            return fallback or requester
        if protocol == "oidc":
            client = self.parties.client(requester)
            return (client.name if client is not None else "") or fallback or requester
        sp = self.parties.sp_for_entity(requester)
        if sp is None:
            return fallback or requester
        return _metadata_name(sp.metadata_xml, lang) or sp.name


_MDUI = "urn:oasis:names:tc:SAML:metadata:ui"
_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _metadata_name(metadata_xml: str, lang: str) -> str | None:
    """The display name an SP's metadata gives, in ``lang`` if it has one, else English, else any."""
    from lxml import etree  # local: only a refusal page reads SP metadata on the login path

    try:
        root = etree.fromstring(metadata_xml.encode(),
                                parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    for tag in (f"{{{_MDUI}}}DisplayName", f"{{{_MD}}}OrganizationDisplayName"):
        names = {(e.get(_XML_LANG) or "").split("-")[0].lower(): (e.text or "").strip() for e in root.iter(tag)}
        names = {k: v for k, v in names.items() if v}
        for choice in (lang, "en"):
            if names.get(choice):
                return names[choice]
        if names:
            return next(iter(names.values()))
    return None


def unknown_service_warnings(tenants: Iterable[Any], parties: RelyingParties) -> list[str]:
    """One warning per tenant whose ``allowed_services`` names services nothing is registered as.

    Not an error: a city may name a service before it is registered; until then the id
    allows nothing.  ``broker check`` prints these.
    """
    registered = set(parties.clients) | {f"{SP_PREFIX}{name}" for name in parties.sps}
    warnings = []
    for tenant in tenants:
        access: ServiceAccess = getattr(tenant, "allowed_services", ALLOW_ALL)
        unknown = sorted(access.service_ids() - registered)
        if unknown:
            warnings.append(f"{tenant.source}: allowed_services: no registered service is named "
                            f"{', '.join(unknown)} (OIDC clients by client_id, SAML SPs as {SP_PREFIX}<name>); "
                            "until one is, these ids allow nothing")
    return warnings
