"""The broker session: who signed in in this browser, and which services received what.

:class:`SsoSessions` keeps sessions in the store behind a random cookie token; the
login reads it for single sign-on and writes it when a login finishes.
"""

from broker.sessions.sso import SsoSessions

__all__ = ["SsoSessions"]
