"""The mapping simulator: what a ruleset makes of one upstream sample, and why.

``broker mapping explain`` and (later) the admin API call :func:`load_upstream` on
a file, :func:`explain` on its attributes and :func:`format_explanation` (or
``json.dumps``) on the result.  Nothing here verifies signatures: the simulator
reads a sample the way the broker would read it after verification.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from broker.mapping.errors import InputError
from broker.mapping.identifiers import subject_for
from broker.mapping.model import PolicyLike, TenantScope
from broker.mapping.release import access_token_claims, release_claims, release_saml_attributes, released_scopes
from broker.mapping.ruleset import Ruleset

MAX_INPUT = 4 * 1024 * 1024
#: What a service of :func:`explain` speaks: ``oidc`` (a client) or ``saml`` (a service provider).
PROTOCOLS = ("oidc", "saml")
SAML_ASSERTION_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
_A = f"{{{SAML_ASSERTION_NS}}}"


def load_upstream(data: bytes) -> tuple[dict[str, list[str]], str | None]:
    """Read an upstream sample: attributes (name -> list of strings) and subject.

    Accepts

    * JSON claims (an ID token payload or userinfo): each claim becomes an
      attribute; strings, numbers and booleans become one-value lists, lists of
      them become lists; nested objects and nulls are skipped; ``sub`` is the subject.
    * a JSON attribute map ``{"subject": ..., "attributes": {name: [values]}}``.
    * SAML 2.0 XML, a ``Response`` or an ``Assertion``: the first assertion's
      ``AttributeStatement`` values and its ``Subject/NameID``.  Parsed without DTDs,
      entities or network access; a document with a DOCTYPE is refused.

    Raises :class:`InputError` (with a reason safe to print) for anything else.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise InputError("expected bytes")
    if len(data) > MAX_INPUT:
        raise InputError(f"input larger than {MAX_INPUT} bytes")
    text = bytes(data).lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return _load_saml(bytes(text))
    try:
        obj = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError("expected JSON claims, a JSON attribute map or SAML XML") from None
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object (claims or {\"attributes\": {...}})")
    if isinstance(obj.get("attributes"), dict) and set(obj) <= {"attributes", "subject"}:
        subject = obj.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise InputError("subject: expected a string")
        return _attributes(obj["attributes"]), subject or None
    subject = obj.get("sub")
    return _attributes(obj), subject if isinstance(subject, str) and subject else None


def _attributes(obj: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in obj.items():
        items = value if isinstance(value, list) else [value]
        scalars = [_scalar(v) for v in items]
        values = [v for v in scalars if v is not None]
        if values:
            out[str(name)] = values
    return out


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _load_saml(data: bytes) -> tuple[dict[str, list[str]], str | None]:
    from lxml import etree  # local: only the simulator reads XML here

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser=parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise InputError(f"not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise InputError("XML with a DOCTYPE is not accepted")
    if not isinstance(root.tag, str):
        raise InputError("expected a SAML Response or Assertion")
    if root.tag == _A + "Assertion":
        assertion = root
    else:
        assertion = root.find(_A + "Assertion")
        if assertion is None:
            if root.find(_A + "EncryptedAssertion") is not None:
                raise InputError("the assertion is encrypted: give the decrypted Assertion")
            raise InputError("expected a SAML 2.0 Response with an Assertion, or an Assertion")
    attributes: dict[str, list[str]] = {}
    for attr in assertion.iterfind(f"{_A}AttributeStatement/{_A}Attribute"):
        name = attr.get("Name")
        if not name:
            continue
        values = attributes.setdefault(name, [])
        for value in attr.iterfind(_A + "AttributeValue"):
            values.append("".join(value.itertext()))
    name_id = assertion.find(f"{_A}Subject/{_A}NameID")
    subject = "".join(name_id.itertext()).strip() if name_id is not None else ""
    return attributes, subject or None


def explain(ruleset: Ruleset, upstream: Mapping[str, Sequence[str]], *, subject: str | None, salt: bytes,
            services: Iterable[tuple[Any, ...]] = (), subject_salt: bytes | None = None) -> dict[str, Any]:
    """Map ``upstream`` and say what every service would receive.

    ``salt`` is the user-id salt of :meth:`Ruleset.apply`; ``subject_salt`` the salt
    of :func:`subject_for` (default: ``salt``), so that the subjects shown are the
    ones services really get.  ``services`` are ``(name, policy, protocol)``: an OIDC
    client (``"oidc"``) is shown its claims (``oidc_claims``: ID token and userinfo) and
    the identity claims of its access tokens (``access_token_claims``), a SAML service
    provider (``"saml"``) its attributes (``saml_attributes``), never both: a service
    receives one protocol's release.  A pairwise policy without a sector is paired by the
    service's name (pass the policy with ``sector=Client.sector`` to show the real
    subject).  The result is plain JSON: ``tenant``, ``idp``, ``refused`` (a reason code)
    and ``refused_why`` (it in words), ``identity``, ``trace`` (the rule behind each
    value), ``drops`` (field, rule, reason, the dropped ``value``, the ``school`` it named
    when that is not the value, and ``why`` in words), ``unused`` (``names``: the input's
    attributes no rule reads; ``values``: per attribute, the values no rule takes) and
    ``services`` (per service: its protocol, the scopes released, the subject and what it
    receives).

    Dropped values are shown: the sample is the caller's own (an admin trying their
    city's response); the login path never keeps them.  Raises :class:`ValueError` for a
    service without a known protocol.
    """
    result = ruleset.apply(upstream, upstream_subject=subject, salt=salt, keep_dropped_values=True)
    names, values = ruleset.unused(upstream)
    if ruleset.keyed_by_subject and subject is not None:
        # No uid rule: the subject is the user key, and JSON claims carry it as `sub` too.
        names = [n for n in names if not (n == "sub" and list(upstream[n]) == [subject])]
    drops = []
    for drop, dropped in zip(result.drops, result.dropped_values, strict=True):
        entry: dict[str, Any] = {**drop._asdict(), "value": dropped.value}
        if dropped.school is not None:
            entry["school"] = dropped.school
        entry["why"] = _no_user_id(ruleset) if drop.reason == "no_user_id" else \
            drop_reason(drop.reason, ruleset.tenant, dropped.school)
        drops.append(entry)
    out: dict[str, Any] = {
        "tenant": ruleset.tenant.tenant_id,
        "idp": ruleset.idp_id,
        "preset": ruleset.preset,
        "refused": result.refused,
        "refused_why": (_no_user_id(ruleset) if result.refused == "no_user_id"
                        else drop_reason(result.refused, ruleset.tenant, None)) if result.refused else None,
        "identity": result.identity,
        "trace": [t._asdict() for t in result.trace],
        "drops": drops,
        "unused": {"names": names, "values": values},
        "services": [],
    }
    for service in services:
        if len(service) != 3 or service[2] not in PROTOCOLS:
            raise ValueError(f"service {service[0]!r}: expected (name, policy, protocol) with protocol "
                             f"one of {', '.join(PROTOCOLS)}")
        name, policy, protocol = service
        entry = {"name": str(name), "protocol": protocol, "profile": policy.profile,
                 "scopes": list(released_scopes(policy)), "subject_type": policy.subject_type}
        if result.refused is None:
            sub = _subject(result.identity, policy, subject_salt or salt, str(name))
            entry["subject"] = sub
            if protocol == "oidc":
                entry["oidc_claims"] = {"sub": sub, **release_claims(result.identity, policy=policy,
                                                                       granted_scopes=None, subject=sub)}
                entry["access_token_claims"] = access_token_claims(result.identity, policy=policy,
                                                                   granted_scopes=None)
            else:
                entry["saml_attributes"] = release_saml_attributes(result.identity, policy=policy, subject=sub)
        out["services"].append(entry)
    return out


#: Each drop reason in words; ``{tenant}`` is the tenant's id, ``{school}`` the school named.
REASONS: Mapping[str, str] = {
    "school_not_in_tenant": "school code not in tenant {tenant}'s schools",
    "school_inactive": "school of tenant {tenant}, but marked inactive there",
    "unrecognised_role": "not a role the broker knows (learner, teacher, staff, school_secretary, "
                         "substitute_teacher, principal, their MPASSid names, or the rule's role_names)",
    "malformed_role": "not an MPASSid role string (v1.4: 7 fields, v1.1: 4 fields, separated by ';')",
    "malformed_school": "not a school code (5 or 6 digits) or a school OID",
    "malformed_provider": "not an education provider OID",
    "malformed_charge": "not a learning-materials charge (0 or 1, optionally ';' and a school)",
    "provider_not_in_tenant": "education provider is not tenant {tenant}'s",
    "school_oid_mismatch": "the school OID is not that school code's OID in tenant {tenant}",
    "invalid_name": "not a usable name (1-256 characters, no control characters)",
    "invalid_learner_id": "not a national learner id (1.2.246.562.24. or, for tests, 1.2.246.562.98. and "
                          "11 digits)",
    "invalid_class_level": "not a class level (0-10)",
    "invalid_group": "not a class or group (1-64 characters without ';')",
    "unreadable_value": "values that are empty, not strings, longer than 2048 characters or beyond the "
                        "first 1000",
    "multiple_values": "different values where the field holds one",
    "no_user_id": "no user key: the attribute the uid rule reads (or, without one, the NameID / sub) "
                  "is missing",
    "requirement_not_met": "not one of the values the tenant file's require allows",
    "misaligned_multi_values": "parallel lists (schools, roles, classes, charges) of different lengths: "
                               "they cannot be paired by position",
    "no_school_for_group": "a class without a school to attach it to",
    "no_school_for_charge": "a charge without a school to attach it to",
    "group_without_role": "a class whose school has no role to attach it to",
    "school_not_in_identity": "a charge for a school the identity does not have",
}


def _no_user_id(ruleset: Ruleset) -> str:
    if ruleset.keyed_by_subject:
        return "no user key: the input has no subject (SAML NameID, OIDC sub), and no uid rule names an attribute"
    return f"no user key: none of {', '.join(ruleset.uid_names)} is in the input (one value), which the uid rule reads"


def drop_reason(reason: str, tenant: TenantScope, school: str | None) -> str:
    """A drop (or refusal) reason code in words, for someone who has not read the code."""
    text = REASONS.get(reason, reason).format(tenant=tenant.tenant_id)
    if school is not None and reason in ("school_not_in_tenant", "school_inactive", "malformed_school",
                                         "school_oid_mismatch"):
        return f"its school {school}: {text}"
    if school is not None and reason in ("unrecognised_role", "group_without_role", "school_not_in_identity"):
        return f"{text} (school {school})"
    return text


def _subject(identity: Mapping[str, Any], policy: PolicyLike, salt: bytes, fallback_sector: str) -> str:
    # A registration without a sector pairs by its redirect host; the simulator has
    # only the service's name, which is enough to show that subjects differ.
    return subject_for(identity, policy=policy, salt=salt, sector=policy.sector or fallback_sector)


def format_explanation(explained: Mapping[str, Any]) -> str:
    """Human-readable text of an :func:`explain` result."""
    lines = [f"tenant {explained['tenant']}, IdP {explained['idp']}"
             + (f" (preset {explained['preset']})" if explained.get("preset") else "")]
    by_field = {t["field"]: t for t in explained["trace"]}
    if explained["refused"]:
        lines.append(f"REFUSED: {explained['refused']}: {explained.get('refused_why') or ''} "
                     "(nothing is released)")
    else:
        lines.append("")
        lines.append("Canonical identity:")
        identity = explained["identity"]
        for key, value in identity.items():
            if isinstance(value, list):
                lines.append(f"  {key}:" + ("" if value else " (none)"))
                for i, item in enumerate(value):
                    lines.append(f"    - {_compact(item)}{_origin(by_field.get(f'{key}[{i}]'))}")
                    group = by_field.get(f"{key}[{i}].group")
                    if group:
                        lines.append(f"        group from {group['rule']} <- {group['source']}")
            else:
                lines.append(f"  {key}: {value}{_origin(by_field.get(key))}")
    lines.append("")
    if explained["drops"]:
        lines.append("Dropped:")
        for d in explained["drops"]:
            shown = _quoted(d.get("value"))
            lines.append(f"  - {d['field']}: {shown + ' — ' if shown else ''}{d.get('why') or d['reason']} "
                         f"(rule {d['rule']})")
    else:
        lines.append("Dropped: nothing")
    unused = explained.get("unused") or {"names": [], "values": {}}
    lines.append("")
    if unused["names"] or unused["values"]:
        lines.append("Not used by any rule:")
        for name in unused["names"]:
            lines.append(f"  - {name}")
        for name, values in unused["values"].items():
            for value in values:
                lines.append(f"  - {name}: {_quoted(value)} (no rule takes this value)")
    else:
        lines.append("Not used by any rule: nothing")
    if not explained["services"]:
        lines.append("")
        lines.append("No services are registered: nothing to show of what a service would receive.")
    for service in explained["services"]:
        lines.append("")
        kind = "OIDC client" if service["protocol"] == "oidc" else "SAML service provider"
        lines.append(f"Service {service['name']} ({kind}, profile {service['profile']}, "
                     f"{service['subject_type']} subject, scopes {' '.join(service['scopes']) or '(none)'}):")
        if "subject" not in service:
            lines.append("  receives nothing (login refused)")
            continue
        if service["protocol"] == "oidc":
            lines.append("  OIDC claims (ID token, userinfo):")
            for k, v in service["oidc_claims"].items():
                lines.append(f"    {k}: {json.dumps(v, ensure_ascii=False)}")
            if service.get("access_token_claims"):
                lines.append("  Access token claims (besides iss, sub, aud, client_id, scope, exp, ...):")
                for k, v in service["access_token_claims"].items():
                    lines.append(f"    {k}: {json.dumps(v, ensure_ascii=False)}")
        else:
            lines.append("  SAML attributes:")
            for k, values in service["saml_attributes"].items():
                for v in values:
                    lines.append(f"    {k} = {v}")
    return "\n".join(lines) + "\n"


def _quoted(value: str | list[str] | None) -> str:
    if value is None:
        return ""
    items = value if isinstance(value, list) else [value]
    return ", ".join(json.dumps(v, ensure_ascii=False) for v in items)


def _compact(value: Any, nested: bool = False) -> str:
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_compact(v, True)}" for k, v in value.items())
        return "{" + text + "}" if nested else text
    return str(value)


def _origin(trace: Mapping[str, str] | None) -> str:
    return f"    <- {trace['source']} by {trace['rule']}" if trace else ""
