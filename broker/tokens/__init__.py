"""The broker's OpenID Connect provider, organised by specification.

========================  =====================================================
module                    concern
========================  =====================================================
``jws``                   compact JWS signing (RFC 7515/7518); verification is ``digione_verify``
``keys``                  the shared, encrypted key ring and its rotation
``authorize``             authorization requests (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2)
``client_auth``           client authentication (RFC 6749 §2.3, RFC 7523, OIDC Core §9)
``grants``                codes, refresh-token families, token minting (RFC 6749, RFC 9068)
``access``                checking our own access tokens against revocation state
``introspection``         RFC 7662
``revocation``            RFC 7009
``userinfo``              OIDC Core §5.3, RFC 6750
``logout``                OpenID Connect RP-Initiated Logout 1.0: the decision, the pages after it
``logout_token``          Back-Channel Logout 1.0 logout tokens, Front-Channel Logout 1.0 URLs
``discovery``             OpenID Connect Discovery 1.0 §3
``provider``              the :class:`Provider` facade and :func:`build_provider`
(the SATOSA FrontendModule adapter is :mod:`broker.frontends.oidc`)
========================  =====================================================

Nothing here imports SATOSA or has import-time side effects.
"""

from broker.tokens.keys import KeyRing, KeyRingBusy, KeyRingError
from broker.tokens.lifetimes import Lifetimes
from broker.tokens.provider import Provider, build_provider

__all__ = ["KeyRing", "KeyRingBusy", "KeyRingError", "Lifetimes", "Provider", "build_provider"]
