"""The attribute-mapping rule engine and release policy (pure: no web framework,
SATOSA, Redis or pysaml2 here).

Three steps, each a function of its inputs only:

1. **Map** — :meth:`Ruleset.apply` turns one upstream response (SAML attributes or
   OIDC claims) into the canonical identity of ``docs/identity.schema.json``,
   following the tenant file's rules (:meth:`Ruleset.from_config`) and validating
   as MPASSid does (:mod:`broker.mapping.validate`).
2. **Identify** — :func:`stable_user_id` and :func:`subject_for`: the broker's
   own identifiers, scoped by tenant and IdP, pairwise per service by default.
3. **Release** — :func:`release_claims` and :func:`release_saml_attributes`: only
   the claim sets (:data:`SCOPES`) a service's policy allows, in its profile
   (``digione`` or ``mpassid``), by the names :data:`PROFILES` lists for both protocols;
   :func:`access_token_claims` what access tokens carry.

:func:`explain` runs all three on a sample for the ``broker mapping explain``
simulator.  ``docs/mapping.md`` documents the rule format, claims and attributes.
"""

from broker.mapping.config import PRESETS
from broker.mapping.errors import InputError, RuleError
from broker.mapping.explain import explain, format_explanation, load_upstream
from broker.mapping.identifiers import stable_user_id, subject_for
from broker.mapping.model import (
    MPASSID_ROLE_NAMES,
    ROLE_CODES,
    ROLE_NAMES,
    Drop,
    MappingResult,
    PolicyLike,
    School,
    TenantScope,
    Trace,
)
from broker.mapping.profiles import NAME_FORMAT_URI, PROFILES, SAML_FRIENDLY_NAMES, SAML_NAMES, ProfileName
from broker.mapping.release import (
    CLAIMS_BY_SCOPE,
    DEFAULT_SCOPES,
    OIDC_CLAIMS,
    SCOPES,
    access_token_claims,
    release_claims,
    release_saml_attributes,
    released_scopes,
)
from broker.mapping.roles import parse_role_string, role_code
from broker.mapping.ruleset import Ruleset

__all__ = [
    "CLAIMS_BY_SCOPE", "DEFAULT_SCOPES", "Drop", "InputError", "MPASSID_ROLE_NAMES", "MappingResult",
    "NAME_FORMAT_URI", "OIDC_CLAIMS", "PRESETS", "PROFILES", "ProfileName", "SAML_NAMES",
    "PolicyLike", "ROLE_CODES", "ROLE_NAMES", "RuleError", "Ruleset", "SAML_FRIENDLY_NAMES", "SCOPES", "School",
    "TenantScope", "Trace", "access_token_claims", "explain", "format_explanation", "load_upstream",
    "parse_role_string",
    "release_claims", "release_saml_attributes", "released_scopes", "role_code", "stable_user_id", "subject_for",
]
