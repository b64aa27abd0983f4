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
from broker.mapping.model import PolicyLike
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
    subject).  The result is plain JSON: ``tenant``, ``idp``, ``refused``, ``identity``,
    ``trace`` (the rule behind each value), ``drops`` (field, rule, reason) and
    ``services`` (per service: its protocol, the scopes released, the subject and what it
    receives).  Raises :class:`ValueError` for a service without a known protocol.
    """
    result = ruleset.apply(upstream, upstream_subject=subject, salt=salt)
    out: dict[str, Any] = {
        "tenant": ruleset.tenant.tenant_id,
        "idp": ruleset.idp_id,
        "preset": ruleset.preset,
        "refused": result.refused,
        "identity": result.identity,
        "trace": [t._asdict() for t in result.trace],
        "drops": [d._asdict() for d in result.drops],
        "services": [],
    }
    for service in services:
        if len(service) != 3 or service[2] not in PROTOCOLS:
            raise ValueError(f"service {service[0]!r}: expected (name, policy, protocol) with protocol "
                             f"one of {', '.join(PROTOCOLS)}")
        name, policy, protocol = service
        entry: dict[str, Any] = {"name": str(name), "protocol": protocol, "profile": policy.profile,
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
        lines.append(f"REFUSED: {explained['refused']} (nothing is released)")
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
            lines.append(f"  - {d['field']}: {d['reason']} (rule {d['rule']})")
    else:
        lines.append("Dropped: nothing")
    for service in explained["services"]:
        lines.append("")
        kind = "OIDC client" if service["protocol"] == "oidc" else "SAML service provider"
        lines.append(f"Service {service['name']} ({kind}, profile {service['profile']}, "
                     f"{service['subject_type']} subject, scopes {' '.join(service['scopes']) or '(none)'}):")
        if "subject" not in service:
            lines.append("  receives nothing (login refused)")
            continue
        if "oidc_claims" in service:
            lines.append("  OIDC claims (ID token, userinfo):")
            for k, v in service["oidc_claims"].items():
                lines.append(f"    {k}: {json.dumps(v, ensure_ascii=False)}")
            if service.get("access_token_claims"):
                lines.append("  Access token claims (besides iss, sub, aud, client_id, scope, exp, ...):")
                for k, v in service["access_token_claims"].items():
                    lines.append(f"    {k}: {json.dumps(v, ensure_ascii=False)}")
        if "saml_attributes" in service:
            lines.append("  SAML attributes:")
            for k, values in service["saml_attributes"].items():
                for v in values:
                    lines.append(f"    {k} = {v}")
    return "\n".join(lines) + "\n"


def _compact(value: Any, nested: bool = False) -> str:
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_compact(v, True)}" for k, v in value.items())
        return "{" + text + "}" if nested else text
    return str(value)


def _origin(trace: Mapping[str, str] | None) -> str:
    return f"    <- {trace['source']} by {trace['rule']}" if trace else ""
