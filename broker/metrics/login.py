"""The login flow's metrics: started, sent upstream, time at the IdP, completed and failed.

:class:`LoginMetrics` belongs to one registry version's :class:`broker.login.steps.Login`,
which calls it at four points (begin, to the IdP, the IdP's answer, the one line a finished
login logs).  Label values are resolved against that version's registry: a tenant, IdP or
service it does not know is :data:`~broker.metrics.UNKNOWN`, never the string the flow or
a request carried, so the number of series is bounded by the registry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from broker.logs import SUCCESS
from broker.metrics.families import (
    LOGINS_COMPLETED,
    LOGINS_FAILED,
    LOGINS_STARTED,
    NONE,
    REASONS,
    STEP_SECONDS,
    UNKNOWN,
    UPSTREAM_REQUESTS,
    Children,
    bounded,
)


class LoginMetrics:
    """The hooks of one registry version's login.

    ``idps`` maps ``"<tenant>/<idp>"`` keys to the registry's identity providers; ``services``
    is a :class:`broker.registry.services.ServiceNames` (client id, ``sp/<name>``), or ``None``
    in tests that build a login without relying parties (every service is then unknown).
    """

    def __init__(self, idps: Mapping[str, Any], services: Any = None):
        self._idps = idps
        self._services = services
        self._started = Children(LOGINS_STARTED)
        self._upstream = Children(UPSTREAM_REQUESTS)
        self._completed = Children(LOGINS_COMPLETED)
        self._failed = Children(LOGINS_FAILED)
        self._upstream_seconds = STEP_SECONDS.labels("upstream")

    # -- label values, from the registry -----------------------------------------------------

    def service(self, protocol: str, requester: str) -> str:
        """The service id the registry has for ``requester`` (client id or ``sp/<name>``), else unknown."""
        parties = getattr(self._services, "parties", None)
        if parties is None:
            return UNKNOWN
        if protocol == "oidc":
            return requester if parties.client(requester) is not None else UNKNOWN
        sp = parties.sp_for_entity(requester)
        return f"sp/{sp.name}" if sp is not None else UNKNOWN

    def idp(self, key: str | None) -> tuple[str, str]:
        """``(tenant, idp)`` of a registry key; ``("none", "none")`` before one was chosen."""
        if not key:
            return NONE, NONE
        if key not in self._idps:
            return UNKNOWN, UNKNOWN
        tenant, _, idp = key.partition("/")
        return tenant, idp

    # -- the hooks -------------------------------------------------------------------------------

    def started(self, service: Any) -> None:
        """A service's valid request began a login (``service``: its ServiceRequest)."""
        self._started(self.service(service.protocol, service.requester), service.protocol).inc()

    def sent_upstream(self, idp_key: str) -> None:
        """The login went to the city's IdP ``idp_key``."""
        self._upstream(*self.idp(idp_key)).inc()

    def answered(self, upstream: Any) -> None:
        """The IdP the flow waited for answered (``upstream``: the flow's Upstream): its time there.

        ``upstream.started`` is whole seconds (the flow cookie stays small), hence the step's resolution.
        """
        self._upstream_seconds.observe(max(time.time() - upstream.started, 0.0))

    def finished(self, outcome: str, flow: Any, idp_key: str | None, sso: Any) -> None:
        """The login ended (:meth:`Login._log`): completed if ``outcome`` is a success, else failed."""
        service = self.service(flow.service.protocol, flow.service.requester) if flow is not None else NONE
        tenant, idp = self.idp(idp_key)
        if outcome == SUCCESS:
            self._completed(tenant, idp, service, "true" if sso else "false").inc()
        else:
            self._failed(tenant, idp, service, bounded(outcome, REASONS)).inc()
