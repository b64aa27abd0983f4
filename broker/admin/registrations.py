"""Service owners' registrations: what needs a platform admin's approval, and why it is asked.

A service owner registers an OIDC client or a SAML SP and says, for each scope its
release policy asks for, why it needs it.  The registration becomes a version
(:mod:`broker.admin.operations` decides who may make it); this module prepares its
document and decides its status:

* a **new** registration, or one that changes the **release policy** (scopes,
  profile, subject type, sector) or the **pairwise sector** in effect (a client's
  first redirect host, an SP's entityID, when no sector is registered: changing it
  would change every person's ``sub``, or line it up with another service's), is
  ``pending_approval``: it takes effect only when a platform admin approves it;
* any other change (redirect and logout URIs, name, JWKS, authentication method,
  SP metadata with the same entityID) is ``staged``, and the owner may activate it.

The broker generates every client secret (a secret a service chose is refused); an
update keeps the client's secret unless ``rotate_secret`` asks for a new one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from broker.admin.errors import BadRequest, ValidationFailed
from broker.registry.relying_parties import (
    SP_FLAGS,
    Client,
    RegistrationError,
    ReleasePolicy,
    ServiceProvider,
    client_document,
    sp_document,
)

#: What a service owner may send for an OIDC client (``reasons`` and ``rotate_secret`` are not stored).
CLIENT_FIELDS = frozenset({
    "client_id", "redirect_uris", "name", "token_endpoint_auth_method", "jwks", "jwks_uri", "policy",
    "post_logout_redirect_uris", "id_token_signed_response_alg", "backchannel_logout_uri",
    "backchannel_logout_session_required", "frontchannel_logout_uri", "frontchannel_logout_session_required",
    "reasons", "rotate_secret"})
POLICY_FIELDS = frozenset(f.name for f in dataclasses.fields(ReleasePolicy))
MAX_REASON = 500


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A registration ready to stage."""

    kind: str                       # client or sp
    key: str                        # client id or SP name
    document: dict[str, Any]
    status: str                     # staged or pending_approval
    comment: str
    #: A client's new secret in clear: shown once, never stored (None: unchanged or none).
    secret: str | None = None


def reasons_of(value: Any, scopes: tuple[str, ...]) -> dict[str, str]:
    """``{scope: reason}`` for every scope asked (a single text applies to all)."""
    if isinstance(value, str):
        value = {scope: value for scope in scopes}
    if not isinstance(value, dict) or set(value) - set(scopes):
        raise BadRequest("reasons", "an object giving, for each scope of the policy, why the service needs it")
    for scope in scopes:
        text = value.get(scope)
        if not (isinstance(text, str) and 0 < len(text.strip()) <= MAX_REASON):
            raise BadRequest(f"reasons.{scope}", f"why the service needs {scope} (1-{MAX_REASON} characters)")
    return {scope: value[scope].strip() for scope in scopes}


def _asked(kind: str, key: str, scopes: tuple[str, ...], reasons: Mapping[str, str], text: str) -> str:
    what = "; ".join(f"{scope}: {reasons[scope]}" for scope in scopes)
    return f"{text or f'register {kind} {key}'} [release policy asked: {what}]"


def prepare_client(data: Any, existing: Mapping[str, Any] | None, *, comment: str,
                   approved_by_author: bool) -> Prepared:
    """The client document of ``data``, its status and comment (see the module documentation).

    ``approved_by_author``: the author is a platform admin, whose registration is staged
    (they approve by activating it).
    """
    if not isinstance(data, dict):
        raise BadRequest("client", "a JSON object describing the OIDC client")
    unknown = sorted(set(data) - CLIENT_FIELDS)
    if unknown:
        raise BadRequest(unknown[0], f"one of the fields a service registers ({', '.join(sorted(CLIENT_FIELDS))}); "
                                     "the broker generates client secrets itself")
    rotate = data.get("rotate_secret", False)
    if not isinstance(rotate, bool):
        raise BadRequest("rotate_secret", "true or false")
    _check_client_shape(data)
    fields = {k: v for k, v in data.items() if k not in ("reasons", "rotate_secret")}
    try:
        client, secret = client_document(fields)
    except RegistrationError as exc:
        raise ValidationFailed([str(exc)]) from None
    document = client.to_dict()
    if existing is not None and not rotate and existing.get("secret_sha256") and secret is not None:
        document["secret_sha256"] = existing["secret_sha256"]
        secret = None
    reasons = reasons_of(data.get("reasons"), client.policy.scopes)
    before = _client(existing)
    review = (before is None or before.policy != client.policy or before.sector != client.sector)
    status = "staged" if approved_by_author or not review else "pending_approval"
    return Prepared("client", client.client_id, document, status,
                    _asked("client", client.client_id, client.policy.scopes, reasons, comment), secret)


def prepare_sp(metadata_xml: Any, name: Any, policy: Any, reason: Any, existing: Mapping[str, Any] | None, *,
               comment: str, approved_by_author: bool) -> Prepared:
    """The SP document, its status and comment (see the module documentation)."""
    if not (isinstance(metadata_xml, str) and metadata_xml.strip()):
        raise BadRequest("metadata_xml", "the SP's SAML metadata (an EntityDescriptor with an SPSSODescriptor)")
    if isinstance(policy, dict):   # the SAML flags travel in the SP's policy object (ADR 0013)
        policy = dict(policy)
        flags = {k: policy.pop(k) for k in SP_FLAGS if k in policy}
    else:
        flags = {}
    if flags and not all(isinstance(v, bool) for v in flags.values()):
        raise BadRequest("policy", f"{' and '.join(SP_FLAGS)} true or false")
    release = policy_of(policy or None)
    try:
        key, document = sp_document(metadata_xml, name=name, policy=release, **flags)
        sp = ServiceProvider.from_document(key, document)
    except RegistrationError as exc:
        raise ValidationFailed([str(exc)]) from None
    reasons = reasons_of(reason, sp.policy.scopes)
    before = _sp(key, existing)
    # Naming the city IdP to the SP is an entitlement, reviewed as a wider policy is.
    review = before is None or before.policy != sp.policy or before.sector != sp.sector or (
        sp.release_authenticating_authority and not before.release_authenticating_authority)
    status = "staged" if approved_by_author or not review else "pending_approval"
    return Prepared("sp", key, document, status, _asked("SAML SP", key, sp.policy.scopes, reasons, comment))


def _check_client_shape(data: Mapping[str, Any]) -> None:
    """Shapes :meth:`Client.from_dict` takes on trust (it checks URIs, methods and flags itself)."""
    from broker.admin.edits import https_url

    if "policy" in data and data["policy"] is not None:
        policy_of(data["policy"], default_profile="digione")
    name = data.get("name", "")
    if not (isinstance(name, str) and len(name) <= 200):
        raise BadRequest("name", "the service's name (at most 200 characters)")
    jwks = data.get("jwks")
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if jwks is not None and not (isinstance(keys, list) and len(keys) <= 20 and all(isinstance(k, dict) for k in keys)):
        raise BadRequest("jwks", "a JWK Set ({\"keys\": [public keys]}, at most 20 keys)")
    if data.get("jwks_uri") is not None:
        https_url(data["jwks_uri"], "jwks_uri", localhost=True)
    for field in ("redirect_uris", "post_logout_redirect_uris"):
        value = data.get(field)
        if value is not None and not (isinstance(value, list) and len(value) <= 20):
            raise BadRequest(field, "a list of at most 20 URIs")


def sp_name(metadata_xml: Any, name: Any) -> str:
    """The registration name of an SP: ``name``, or one made of the metadata's entityID."""
    if name is not None and not isinstance(name, str):
        raise BadRequest("name", "the SP's registration name (letters, digits, '.', '_' or '-')")
    if not (isinstance(metadata_xml, str) and metadata_xml.strip()):
        raise BadRequest("metadata_xml", "the SP's SAML metadata (an EntityDescriptor with an SPSSODescriptor)")
    try:
        return sp_document(metadata_xml, name=name)[0]
    except RegistrationError as exc:
        raise ValidationFailed([str(exc)]) from None


def policy_of(value: Any, *, default_profile: str = "mpassid") -> ReleasePolicy:
    """A release policy from ``{scopes, profile?, subject_type?, sector?}`` (SP default profile: mpassid)."""
    if value is None:
        return ReleasePolicy(profile=default_profile)
    if not isinstance(value, dict) or set(value) - POLICY_FIELDS:
        raise BadRequest("policy", f"an object with {', '.join(sorted(POLICY_FIELDS))}")
    scopes = value.get("scopes", ["openid", "roles"])
    if not (isinstance(scopes, list) and scopes and all(isinstance(s, str) and 0 < len(s) <= 100 for s in scopes)):
        raise BadRequest("policy.scopes", "a list of scopes (e.g. [\"openid\", \"roles\"])")
    for field in ("profile", "subject_type", "sector"):
        if field in value and not isinstance(value[field], str):
            raise BadRequest(f"policy.{field}", "a string")
    return ReleasePolicy(scopes=tuple(dict.fromkeys(scopes)), profile=value.get("profile", default_profile),
                         subject_type=value.get("subject_type", "pairwise"), sector=value.get("sector", ""))


def _client(document: Mapping[str, Any] | None) -> Client | None:
    if document is None:
        return None
    try:
        return Client.from_dict(dict(document))
    except RegistrationError:
        return None


def _sp(key: str, document: Mapping[str, Any] | None) -> ServiceProvider | None:
    if document is None:
        return None
    try:
        return ServiceProvider.from_document(key, document)
    except RegistrationError:
        return None


def public_client(document: Mapping[str, Any]) -> dict[str, Any]:
    """A client document as the API shows it: without the secret's hash."""
    return {k: v for k, v in document.items() if k != "secret_sha256"}
