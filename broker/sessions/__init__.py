"""The broker session and single logout.

==============  =====================================================================
module          concern
==============  =====================================================================
``model``       the session, what the city's IdP needs to end its own, and per-service ids
``store``       sessions in the shared store (O(1) each), ended atomically
``logout``      single logout: its steps (back-channel, front-channel, SAML SPs, the
                city's IdP, back to whoever asked)
``logout_flow`` the logout in progress: who asked and what is left (sealed in a cookie)
``delivery``    OIDC back-channel logout tokens, delivered in parallel with retries
==============  =====================================================================
"""

from broker.sessions.model import BrokerSession, ServiceEntry, UpstreamSession
from broker.sessions.store import EndedSession, Limits, SessionStore

__all__ = ["BrokerSession", "EndedSession", "Limits", "ServiceEntry", "SessionStore", "UpstreamSession"]
