"""Release: what one relying party receives of a canonical identity.

A relying party's release policy lists the claim sets (:data:`SCOPES`) it may
receive and the output profile:

* ``digione`` — clean JSON claims (OIDC) and ``urn:digione:*`` SAML attributes,
  documented in ``docs/mapping.md`` and ``docs/claims.schema.json``: ``roles`` is a flat
  list of role names (what ``mod_auth_openidc``, ``openid-client`` and RFC 9068 §2.2.3.1
  consumers read), the per-school detail is ``role_assignments``;
* ``mpassid`` — MPASSid's attribute names and value formats exactly (SAML
  attributes, and the same names as OIDC claims), so that a service integrated
  with MPASSid switches to the broker without changing code.

Only the intersection of the policy's scopes and the scopes granted for this
request is released; the subject (``sub`` / NameID) is the caller's business
(:func:`broker.mapping.subject_for`), passed in as ``subject`` where the profile
also carries it as an attribute (MPASSid ``urn:mpass.id:uid``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from broker.mapping.model import MPASSID_ROLE_NAMES, PolicyLike
from broker.mapping.profiles import MPASSID

#: Claim sets a policy may allow, and the canonical claims each releases.
#: ``profile`` (names) and ``learner_id`` are personal data of minors: opt-in only.
SCOPES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "openid": ("sub",),
    "roles": ("roles",),
    "schools": ("schools",),
    "education_providers": ("education_providers",),
    "profile": ("given_name", "family_name", "nickname"),
    "learner_id": ("learner_id",),
    "class_level": ("class_level",),
    "learning_materials": ("learning_materials_charges",),
})

#: The release every policy starts from: a (pairwise) subject and roles.
DEFAULT_SCOPES = ("openid", "roles")

MPASSID_GIVEN_NAME = "urn:oid:2.5.4.42"
MPASSID_FAMILY_NAME = "urn:oid:2.5.4.4"
MPASSID_LEARNER_ID = "urn:oid:1.3.6.1.4.1.16161.1.1.27"

#: The OIDC claim names each scope releases, in either profile: what a refresh that narrows the
#: scope keeps (RFC 6749 §6), so names and learner ids stop with their scope in both profiles.
CLAIMS_BY_SCOPE: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "openid": ("sub", "urn:mpass.id:uid"),
    "roles": ("roles", "role_assignments", "urn:mpass.id:role", "urn:mpass.id:role_v1.1"),
    "schools": ("schools", "urn:mpass.id:schoolInfo"),
    "education_providers": ("education_providers", "urn:mpass.id:educationProviderInfo",
                            "urn:mpass.id:originalIssuer"),
    "profile": ("given_name", "family_name", "nickname", "urn:mpass.id:nickname"),
    "learner_id": ("learner_id", MPASSID_LEARNER_ID),
    "class_level": ("class_level", "urn:mpass.id:classLevel"),
    "learning_materials": ("learning_materials_charges", "urn:mpass.id:learningMaterialsCharge"),
})


#: The OIDC claims of the ``digione`` profile (discovery's ``claims_supported``, OIDC Discovery §3).
OIDC_CLAIMS: tuple[str, ...] = ("sub", "roles", "role_assignments", "schools", "education_providers", "given_name",
                                "family_name", "nickname", "learner_id", "class_level", "learning_materials_charges")

#: The members of one ``role_assignments`` entry, in this order (``docs/claims.schema.json``).
ROLE_ASSIGNMENT_KEYS = ("role", "code", "school", "group")


def released_scopes(policy: PolicyLike, granted_scopes: Iterable[str] | None = None) -> tuple[str, ...]:
    """The scopes released: the policy's known scopes, limited to ``granted_scopes``
    when given (``None``: everything the policy allows, as for SAML)."""
    granted = None if granted_scopes is None else set(granted_scopes)
    return tuple(s for s in dict.fromkeys(policy.scopes) if s in SCOPES and (granted is None or s in granted))


def _claims(identity: Mapping[str, Any], scopes: tuple[str, ...]) -> set[str]:
    return {c for s in scopes for c in SCOPES[s] if c != "sub"}


def release_claims(identity: Mapping[str, Any], *, policy: PolicyLike, granted_scopes: Iterable[str] | None,
                   subject: str | None = None) -> dict[str, Any]:
    """OIDC claims for one relying party (ID token / userinfo), without ``sub``.

    ``digione``: the canonical claims as JSON.  ``mpassid``: ``given_name``,
    ``family_name`` and MPASSid's URN-named claims with its string formats;
    ``urn:mpass.id:uid`` too when ``subject`` is given.
    """
    scopes = released_scopes(policy, granted_scopes)
    wanted = _claims(identity, scopes)
    if policy.profile == "mpassid":
        attrs = _mpassid(identity, wanted, subject if "openid" in scopes else None)
        out: dict[str, Any] = {}
        for name, values in attrs.items():
            claim = {MPASSID_GIVEN_NAME: "given_name", MPASSID_FAMILY_NAME: "family_name"}.get(name, name)
            out[claim] = values[0] if name in _MPASSID_SINGLE else values
        return out
    out = {}
    for claim in ("given_name", "family_name", "nickname", "learner_id", "class_level"):
        if claim in wanted and claim in identity:
            out[claim] = identity[claim]
    if "roles" in wanted:
        out.update(role_claims(identity))
    for claim in ("schools", "education_providers", "learning_materials_charges"):
        if claim in wanted:
            out[claim] = [dict(v) for v in identity.get(claim, ())]
    return out


def role_claims(identity: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``roles`` and ``role_assignments``: what the ``roles`` scope releases as OIDC claims.

    ``roles`` is the list of the person's role names, each once, in the order first held
    (``["teacher", "principal"]``): a JSON array of strings, the shape RFC 9068 §2.2.3.1
    (after SCIM, RFC 7643 §4.1.2) gives ``roles`` and the one ``mod_auth_openidc``
    (``OIDC_CLAIM_roles=teacher,principal``, ``Require claim roles:teacher``) and
    ``openid-client`` hand to applications.  ``role_assignments`` says where each role is
    held: one object per canonical role with ``role``, ``code`` (the MPASSid role code),
    ``school`` (absent for a role at the education provider) and ``group`` when known.
    The same two claims go into access tokens (:func:`access_token_claims`) for every profile.
    """
    roles = list(identity.get("roles") or ())
    return {
        "roles": list(dict.fromkeys(r["role"] for r in roles)),
        "role_assignments": [{k: r[k] for k in ROLE_ASSIGNMENT_KEYS if k in r} for r in roles],
    }


def access_token_claims(identity: Mapping[str, Any], *, policy: PolicyLike,
                        granted_scopes: Iterable[str] | None) -> dict[str, Any]:
    """The identity claims an access token carries: :func:`role_claims` when ``roles`` is released.

    The same for both profiles: an access token is read by resource servers through the
    verification kit (``digione_verify``, RFC 9068), not by software written for MPASSid,
    so it always carries ``roles`` as role names and ``role_assignments`` for per-school
    checks; never names, learner ids or anything else of the identity.
    """
    return role_claims(identity) if "roles" in released_scopes(policy, granted_scopes) else {}


def release_saml_attributes(identity: Mapping[str, Any], *, policy: PolicyLike,
                            granted_scopes: Iterable[str] | None = None,
                            subject: str | None = None) -> dict[str, list[str]]:
    """SAML attributes for one service provider, keyed by Attribute Name (NameFormat URI).

    ``mpassid``: MPASSid's names and value formats exactly.  ``digione``: the
    ``urn:digione:*`` attributes of ``docs/mapping.md``.  ``subject`` (the NameID
    value) is also released as ``urn:mpass.id:uid`` / ``urn:digione:uid``.
    """
    scopes = released_scopes(policy, granted_scopes)
    wanted = _claims(identity, scopes)
    uid = subject if "openid" in scopes else None
    return _mpassid(identity, wanted, uid) if policy.profile == "mpassid" else _digione_saml(identity, wanted, uid)


# -- MPASSid ---------------------------------------------------------------------------------

#: Single-valued MPASSid names: strings as OIDC claims (one list for both protocols, broker.mapping.profiles).
_MPASSID_SINGLE = frozenset(a.name for a in MPASSID if a.single)


def _name(names: Mapping[str, str] | None, fallback: str) -> str:
    names = names or {}
    for lang in ("fi", "sv", "en"):
        if names.get(lang):
            return names[lang]
    return next((n for n in names.values() if n), fallback)


def _mpassid(identity: Mapping[str, Any], wanted: set[str], uid: str | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    providers = identity.get("education_providers") or ()
    provider = providers[0] if providers else None
    schools = {s["code"]: s for s in identity.get("schools", ())}
    if uid:
        out["urn:mpass.id:uid"] = [uid]
    for claim, name in (("given_name", MPASSID_GIVEN_NAME), ("family_name", MPASSID_FAMILY_NAME),
                        ("nickname", "urn:mpass.id:nickname"), ("learner_id", MPASSID_LEARNER_ID),
                        ("class_level", "urn:mpass.id:classLevel")):
        if claim in wanted and claim in identity:
            out[name] = [str(identity[claim])]
    if "roles" in wanted and identity.get("roles"):
        provider_oid = provider["oid"] if provider else ""
        municipality = _name(provider.get("names"), provider_oid) if provider else ""
        v14, v11 = [], []
        for r in identity["roles"]:
            code = r.get("school", "")
            school_oid = schools[code]["oid"] if code in schools else ""
            group = r.get("group", "")
            fi = MPASSID_ROLE_NAMES[r["code"]]
            v14.append(f"{provider_oid};{code};{group};{fi};{r['code']};{school_oid};{r.get('office_oid', '')}")
            v11.append(f"{municipality};{code};{group};{fi}")
        out["urn:mpass.id:role"] = v14
        out["urn:mpass.id:role_v1.1"] = v11
    if "schools" in wanted and schools:
        info = []
        for s in schools.values():
            name = _name(s.get("names"), s["code"])
            info += [f"{s['code']};{name}", f"{s['oid']};{name}"]
        out["urn:mpass.id:schoolInfo"] = info
    if "education_providers" in wanted and providers:
        out["urn:mpass.id:educationProviderInfo"] = [f"{p['oid']};{_name(p.get('names'), p['oid'])}"
                                                     for p in providers]
        out["urn:mpass.id:originalIssuer"] = [providers[0]["oid"]]
    if "learning_materials_charges" in wanted and identity.get("learning_materials_charges"):
        charges = []
        for c in identity["learning_materials_charges"]:
            paid = "1" if c["paid"] else "0"
            charges.append(f"{paid};{c['school']}")
            if c["school"] in schools:
                charges.append(f"{paid};{schools[c['school']]['oid']}")
        out["urn:mpass.id:learningMaterialsCharge"] = charges
    return out


# -- DigiOne SAML ----------------------------------------------------------------------------

def _digione_saml(identity: Mapping[str, Any], wanted: set[str], uid: str | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if uid:
        out["urn:digione:uid"] = [uid]
    singles: tuple[tuple[str, str], ...] = (
        ("given_name", "urn:oid:2.5.4.42"), ("family_name", "urn:oid:2.5.4.4"),
        ("nickname", "urn:digione:nickname"), ("learner_id", "urn:digione:learnerId"),
        ("class_level", "urn:digione:classLevel"))
    for claim, name in singles:
        if claim in wanted and claim in identity:
            out[name] = [str(identity[claim])]
    multi: tuple[tuple[str, str, Callable[[Mapping[str, Any]], str]], ...] = (
        ("roles", "urn:digione:role", lambda r: f"{r['role']};{r.get('school', '')};{r.get('group', '')}"),
        ("schools", "urn:digione:school",
         lambda s: f"{s['code']};{s['oid']};{_name(s.get('names'), s['code'])}"),
        ("education_providers", "urn:digione:educationProvider",
         lambda p: f"{p['oid']};{_name(p.get('names'), p['oid'])}"),
        ("learning_materials_charges", "urn:digione:learningMaterialsCharge",
         lambda c: f"{'1' if c['paid'] else '0'};{c['school']}"),
    )
    for claim, name, fmt in multi:
        if claim in wanted and identity.get(claim):
            out[name] = [fmt(v) for v in identity[claim]]
    return out
