"""Services a city's schools have not enabled: the check on the login path, and the page the person reads.

A city chooses, in its tenant file, which services its schools allow (``allowed_services``,
:mod:`broker.registry.services`).  :class:`ServiceGate` applies that choice once per login, in
:meth:`broker.login.steps.Login._respond`: the one step both a fresh sign-in (the city's IdP
answered) and single sign-on from a broker session (``from_session``) pass through, after the
person is known and before the response micro-services run, anything is released, or the
service is recorded in the broker session.  The identity checked is the one the city's IdP
asserted (its ``tenant`` and ``schools``), never one a micro-service narrowed for a service.

What each party sees when the service is not allowed:

* **the person** reads a page in their language (fi/sv/en, HTTP 403): "Your school has not
  enabled this service", with the service's name, a line saying they *are* signed in (their
  school's other services work) and the correlation id of the log line.  The page's one
  button, "Back to the service", is the service's answer: a link to the OIDC error redirect,
  or a form posting the SAML Response to the service's ACS (never submitted by script, so
  the person has read the page before the service shows its own error);
* **the service** gets ``access_denied`` when the person presses it: OIDC
  ``error=access_denied`` with its ``state`` and ``iss`` at its validated redirect URI; SAML a
  Response signed as every other, with the status ``Responder`` / ``RequestDenied``;
* a **passive** request (OIDC ``prompt=none``, SAML ``IsPassive``: no page may be shown) gets
  the same ``access_denied`` at once, without the page.

The broker session is created all the same when the person has just signed in (they did sign
in, so a service their school allows works by SSO afterwards), but the refused service is not
recorded in it: it received nothing, so a logout has nothing to tell it.  The login ends with
one log line, ``outcome=service_not_allowed``, naming the tenant, IdP and service (no personal
data).  A city's change applies to sign-ins from then on (the next registry build); tokens a
service already holds are not revoked.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping

from satosa.response import Response

from broker.errors import page
from broker.i18n import negotiate, text
from broker.login.context import Answer, LoginContext
from broker.login.flow import ServiceRequest
from broker.registry.services import ServiceNames
from broker.registry.tenants import Tenants
from broker.web import csp

#: The outcome of the login's log line.
NOT_ALLOWED = "service_not_allowed"


@dataclasses.dataclass(frozen=True)
class Notice:
    """A page the person reads before the service hears the answer; its one button delivers the answer.

    The frontend answering the service decides the button (``deny(..., notice=notice)``):
    :meth:`link` to an error redirect (OIDC), or :meth:`form` posting a message (SAML).
    """

    lang: str
    title: str
    lead: str
    help: str
    button: str
    correlation_id: str
    status: str = "403 Forbidden"

    def link(self, url: str) -> Response:
        """The page with a link to ``url`` (an error redirect to the service)."""
        action = f'<p><a class="choice" id="continue" href="{html.escape(url)}">{html.escape(self.button)}</a></p>'
        return self._response(action, csp.policy(form_action=()))

    def form(self, action: str, fields: Mapping[str, str]) -> Response:
        """The page with a button posting ``fields`` to ``action`` (a SAML Response to the ACS).

        Like an auto-POST page (:func:`broker.web.csp.autopost_page`) without the script: the
        policy's ``form-action`` names the target's origin (and ``https:``, for the redirects that
        may follow the post), and nothing on the page is cached.
        """
        inputs = "".join(f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
                         for name, value in fields.items())
        button = (f'<form method="post" action="{html.escape(action)}">{inputs}'
                  f'<button class="choice" id="continue" type="submit">{html.escape(self.button)}</button></form>')
        targets = [t for t in (csp.origin(action),) if t] + ["https:"]
        return self._response(button, csp.policy(form_action=targets))

    def _response(self, action_html: str, policy: str) -> Response:
        body = page(self.lang, self.title,
                    f'<p class="lead">{html.escape(self.lead)}</p>'
                    f"<p>{html.escape(self.help)}</p>"
                    + action_html
                    + f'<p class="cid">{html.escape(text("error.correlation", self.lang))}: '
                    f'<code id="correlation-id">{html.escape(self.correlation_id)}</code></p>')
        return Response(body, status=self.status, content="text/html; charset=utf-8",
                        headers=[("Content-Type", "text/html; charset=utf-8"), ("Content-Security-Policy", policy),
                                 ("Cache-Control", "no-store"), ("Pragma", "no-cache"),
                                 ("Referrer-Policy", "no-referrer")])


#: Services a city's ``allowed_services`` does not govern: the admin console's own sign-in
#: client (:mod:`broker.admin.console.oidc`), so that a city admin can always reach the console.
NOT_GOVERNED = frozenset({"digione-admin"})


class ServiceGate:
    """The tenants' ``allowed_services`` applied to one login (dictionary reads only)."""

    def __init__(self, tenants: Tenants, names: ServiceNames | None = None):
        self.tenants = tenants
        self.names = names or ServiceNames()

    def service_id(self, service: ServiceRequest) -> str | None:
        """The id tenant files name ``service`` by (``client_id``, ``sp/<name>``)."""
        return self.names.service_id(service.protocol, service.requester)

    def allows(self, service: ServiceRequest, answer: Answer) -> bool:
        """Whether the city that authenticated the person lets them, with their schools, into ``service``.

        The city is the one of the IdP that answered (``<tenant>/<idp>``).  A city no longer in the
        registry (a session older than the change) has no choice left to apply: the service is allowed,
        as for a tenant file without ``allowed_services``.
        """
        tenant = self.tenants.by_id.get(answer.idp.partition("/")[0])
        if tenant is None or tenant.allowed_services.allows_all:
            return True
        service_id = self.service_id(service)
        if service_id in NOT_GOVERNED:
            return True
        schools = [s.get("code") for s in answer.identity.get("schools") or () if isinstance(s, Mapping)]
        return tenant.allowed_services.allows(service_id, [c for c in schools if isinstance(c, str)])

    def notice(self, context: LoginContext, service: ServiceRequest) -> Notice:
        """The page for a person whose school has not enabled ``service``, in their language."""
        flow = context.flow_if_loaded
        lang = negotiate((flow.lang if flow is not None else None) or context.lang,
                         context.header("Accept-Language"))
        name = self.names.display_name(service.protocol, service.requester, lang, fallback=service.requester_name)
        return Notice(lang=lang, title=text("access.title", lang),
                      lead=text("access.not_enabled", lang).replace("{service}", name),
                      help=text("access.help", lang), button=text("access.back", lang),
                      correlation_id=context.correlation_id)
