"""What :mod:`digione_verify` raises.

Two families: :class:`InvalidToken` (the token must not be accepted: ``401``, or ``403`` for
:class:`Forbidden`, RFC 6750 §3.1) and the "not the token's fault" errors
:class:`KeySetUnavailable` and :class:`IntrospectionUnavailable` (``503``).  Every reason
(``.reason``) is safe to log and to send back: it names what failed, never the token, its
payload or anything personal.
"""

from __future__ import annotations

__all__ = [
    "VerificationError", "InvalidToken", "MalformedToken", "UnsupportedAlgorithm", "UnknownKey",
    "BadSignature", "WrongTokenType", "WrongIssuer", "WrongAudience", "ExpiredToken", "NotYetValid",
    "MissingClaim", "Forbidden", "InsufficientScope", "MissingRole", "WrongSchool", "RevokedToken",
    "ReplayedToken", "KeySetUnavailable", "IntrospectionUnavailable",
]


class VerificationError(Exception):
    """Base of everything :mod:`digione_verify` raises."""


class InvalidToken(VerificationError):
    """The token must not be accepted.  ``reason`` says why, without echoing the token.

    ``error`` and ``status`` are what a resource server answers (RFC 6750 §3.1):
    ``invalid_token`` with 401 here, ``insufficient_scope`` with 403 for :class:`Forbidden`.
    """

    error = "invalid_token"
    status = 401

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MalformedToken(InvalidToken):
    """Not a compact JWS with JSON header and payload, or a required header is missing."""


class UnsupportedAlgorithm(InvalidToken):
    """``alg`` is ``none``, an HMAC, unknown, or not allowed here (RFC 8725 §3.1)."""


class UnknownKey(InvalidToken):
    """No published key has the token's ``kid`` (even after refreshing the JWKS)."""


class BadSignature(InvalidToken):
    """The signature does not verify with the named key."""


class WrongTokenType(InvalidToken):
    """The ``typ`` header is not the expected one (RFC 9068 §4: ``at+jwt``)."""


class WrongIssuer(InvalidToken):
    """``iss`` is not the configured issuer."""


class WrongAudience(InvalidToken):
    """``aud`` does not contain this service's audience."""


class ExpiredToken(InvalidToken):
    """``exp`` is in the past (beyond the leeway)."""


class NotYetValid(InvalidToken):
    """``nbf`` or ``iat`` is in the future (beyond the leeway)."""


class MissingClaim(InvalidToken):
    """A claim the token type requires is absent or of the wrong type."""


class Forbidden(InvalidToken):
    """The token is valid but does not grant what this request needs (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    status = 403


class InsufficientScope(Forbidden):
    """A required scope is not in ``scope``."""


class MissingRole(Forbidden):
    """A required role is not in ``roles``."""


class WrongSchool(MissingRole):
    """No entry of ``role_assignments`` holds a required role (or, with no role required, any
    role) at one of the required schools: the person is, say, a teacher, but elsewhere."""


class RevokedToken(InvalidToken):
    """The broker's introspection endpoint says the token is no longer active (RFC 7662 §2.2):
    revoked, or the person signed out and the session's tokens ended with it."""


class ReplayedToken(InvalidToken):
    """A logout token whose ``jti`` was already accepted (Back-Channel Logout 1.0 §2.6 step 7)."""


class KeySetUnavailable(VerificationError):
    """The JWKS (or the discovery document) could not be fetched or parsed.

    Not the token's fault: a service should answer 503, not 401.
    """


class IntrospectionUnavailable(VerificationError):
    """The introspection endpoint could not be asked, refused the service's credentials, or
    answered something that is not an RFC 7662 response.

    Not the token's fault: a service should answer 503, not 401 (and check its credentials).
    """
