"""Single logout: one person's broker session ends, and everything that heard of it is told.

A logout starts in one of four places:

* a service: OIDC RP-Initiated Logout (``/end_session``) or a SAML ``<LogoutRequest>``
  from an SP (``/saml2/idp/slo/*``);
* the broker's own "sign out everywhere" page (``/logout``);
* the city's IdP: its SAML ``<LogoutRequest>`` (``/saml2/sp/slo/*``) or the Entra
  front-channel logout URL (``/oidc/<tenant>/<idp>/frontchannel_logout``).

Whatever the start, the steps are the same, in this order (:class:`Logout`):

1. **end** — the session is taken from the store atomically (of two logouts racing,
   one fans out), its cookie expired, every grant issued in it revoked: refresh
   tokens stop, access tokens introspect inactive;
2. **back-channel** — a signed logout token to every OIDC service with a
   ``backchannel_logout_uri`` (Back-Channel Logout 1.0), delivered in parallel with a
   deadline; what does not arrive is retried from the shared queue by any instance;
3. **SAML SPs** — a signed ``<LogoutRequest>`` to each SP that has an SLO endpoint,
   one after another through the browser (Profiles §4.4.3), each answering back;
4. **upstream** — the city's IdP: a ``<LogoutRequest>`` to its SLO endpoint, or its
   OIDC ``end_session_endpoint``; where it has neither, the page says so plainly and
   names the city service that still has a session (close the browser);
5. **answer** — front-channel logout iframes (Front-Channel Logout 1.0) on the page,
   then back to whoever asked: the OIDC ``post_logout_redirect_uri`` with ``state``, a
   ``<LogoutResponse>`` to the SP or city IdP that asked, or the signed-out page.

The service that started the logout is not told again (step 2 and 3 skip it).  The
steps cross browser redirects, so the logout carries a :class:`LogoutFlow` sealed in its
own cookie, like a login.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from satosa.response import Redirect, Response

from broker import logs
from broker.errors import page
from broker.i18n import negotiate, text
from broker.login.context import LoginContext
from broker.login.cookies import Cookies
from broker.login.router import Router
from broker.login.seal import FlowSeal, SealError
from broker.sessions.logout_flow import Initiator, Kind, LogoutFlow, LogoutRefused, PendingSp
from broker.sessions.store import EndedSession, SessionStore
from broker.web import csp

if TYPE_CHECKING:
    from broker.saml.slo import Received, SingleLogout

logger = logging.getLogger("broker.logout")

LOGOUT_COOKIE = "digione_logout"
PAGE = "logout"
#: Seconds the person waits at most for the back-channel deliveries (the rest are retried in the background).
BACKCHANNEL_DEADLINE = 3.0

class Logout:
    """The logout steps, with the parts of the broker they reach.

    ``oidc`` is the OIDC provider (its clients, key ring and grants); ``saml_idp`` the SAML
    frontend (it writes LogoutRequests to SPs and LogoutResponses to them); ``upstream``
    maps a backend name to the backend that signs the person out at the city's IdP.
    """

    def __init__(self, *, base_url: str, sessions: SessionStore, cookies: Cookies, master_secret: bytes,
                 flow_ttl: int, delivery: Any, tenants: Any, clients: Any, sps: Any,
                 mint_logout_token: Callable[..., str], frontchannel_url: Callable[..., str | None],
                 revoke_grants: Callable[[tuple[str, ...]], None], clock: Callable[[], float] = time.time):
        from broker.derive import derive_key

        self.base_url = base_url
        self.sessions = sessions
        self.cookies = cookies
        self.seal = FlowSeal(master_secret, name=cookies.name(LOGOUT_COOKIE), max_age=flow_ttl, clock=clock)
        self._csrf_key = derive_key(master_secret, b"logout-csrf")
        self.delivery = delivery
        self.tenants = tenants
        self.clients = clients
        self.sps = sps
        self.mint_logout_token = mint_logout_token
        self.frontchannel_url = frontchannel_url
        self.revoke_grants = revoke_grants
        self._clock = clock
        self.saml_idp: Any = None
        self.backends: Mapping[str, Any] = {}

    def plug(self, *, saml_idp: Any, backends: Mapping[str, Any]) -> None:
        self.saml_idp = saml_idp
        self.backends = dict(backends)

    def register(self, router: Router) -> None:
        router.add(PAGE, self.everywhere, owner=("broker", "logout"))

    @staticmethod
    def initiator(kind: Kind, **fields: Any) -> Initiator:
        return Initiator(kind=kind, **fields)

    def session_for_service(self, context: LoginContext, requester: str, session_indexes: tuple[str, ...],
                            subject: str | None) -> str | None:
        """The browser's session, if the service's logout request names it (Profiles §4.4.4.1).

        The request arrives through the browser (front-channel): it ends the browser's own
        session, and only if ``requester`` received something in it, for that subject, with
        that SessionIndex when the request names one.
        """
        session = self.sessions.get(context.cookies.get(self.cookies.sso))
        entry = self.sessions.service(session.id, requester) if session is not None else None
        if session is None or entry is None:
            return None
        if subject is not None and entry.subject != subject:
            return None
        if session_indexes and entry.sid not in session_indexes:
            return None
        return session.id

    def session_for_upstream(self, context: LoginContext, idp: str, values: tuple[str, ...]) -> str | None:
        """The session the city IdP ``idp`` names (by SessionIndex, NameID or sid), else the browser's own."""
        for value in values:
            session_id = self.sessions.find_by_upstream(idp, value)
            if session_id is not None:
                return session_id
        session = self.sessions.get(context.cookies.get(self.cookies.sso))
        return session.id if session is not None and session.idp == idp and not values else None

    # -- the CSRF token of the broker's own logout forms -------------------------------------------

    def csrf(self, context: LoginContext) -> str | None:
        """The token a logout form of this browser must carry: a MAC of its session cookie (``None`` without one)."""
        token = context.cookies.get(self.cookies.sso)
        if not token:
            return None
        return hmac.new(self._csrf_key, token.encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_ok(self, context: LoginContext, value: Any) -> bool:
        expected = self.csrf(context)
        return expected is not None and isinstance(value, str) and hmac.compare_digest(value, expected)

    # -- OIDC RP-Initiated Logout 1.0 (/end_session) -------------------------------------------------

    def rp_initiated(self, context: LoginContext, decision: Any) -> Response:
        """Carry out a logout request the provider read (``broker.tokens.logout.LogoutRequest``).

        §2: a request that proves its client (a valid ``id_token_hint`` naming this browser's
        session, or ``client_id`` with a registered ``post_logout_redirect_uri``) proceeds; any
        other asks the person first, on a page whose POST carries this browser's CSRF token.
        """
        session = self.sessions.get(context.cookies.get(self.cookies.sso))
        lang = negotiate(decision.ui_locales or context.lang, context.header("Accept-Language"))
        confirmed = bool(decision.confirmed)
        if confirmed and decision.sid and session is not None and decision.client_id and \
                session.sid_for(decision.client_id, "oidc") != decision.sid:
            confirmed = False  # §2: the hint names another session than this browser's: ask
        posted = context.request_method == "POST" and (context.request or {}).get("confirm") == "1"
        if posted and self.csrf_ok(context, (context.request or {}).get("csrf")):
            confirmed = True
        initiator = Initiator(kind="oidc", requester=decision.client_id if decision.confirmed else None,
                              return_to=decision.post_logout_redirect_uri, state=decision.state)
        if session is None:
            flow = LogoutFlow(id="", created=int(self._clock()), initiator=initiator, lang=lang)
            context.set_cookie(self.cookies.expire(self.cookies.sso))
            return self.finish(context, flow) if initiator.return_to else self._page(context, flow, nothing=True)
        if not confirmed:
            params = context.request or {}
            fields = {k: v for k, v in params.items() if k in ("client_id", "post_logout_redirect_uri", "state",
                                                              "ui_locales", "id_token_hint") and isinstance(v, str)}
            fields["confirm"] = "1"
            names = [self._service_name(s.requester) for s in self.sessions.services(session.id)]
            return self.confirm_page(context, lang, action=f"{self.base_url}/end_session", fields=fields,
                                     services=names)
        return self.start(context, initiator, session.id, lang=lang)

    # -- the broker's own page: sign out everywhere ----------------------------------------------

    def everywhere(self, context: LoginContext) -> Response:
        """``GET /logout`` asks (listing what would be signed out); ``POST`` with the token does it."""
        session = self.sessions.get(context.cookies.get(self.cookies.sso))
        lang = negotiate(context.lang, context.header("Accept-Language"))
        if context.request_method == "POST":
            if session is not None and not self.csrf_ok(context, (context.request or {}).get("csrf")):
                raise LogoutRefused("the sign-out form does not belong to this browser's session (CSRF token)")
            return self.start(context, Initiator(kind="broker"), session.id if session else None, lang=lang)
        if session is None:
            return self._page(context, LogoutFlow(id="", created=0, initiator=Initiator(kind="broker"), lang=lang),
                              nothing=True)
        names = [self._service_name(s.requester) for s in self.sessions.services(session.id)]
        return self.confirm_page(context, lang, action=f"{self.base_url}/{PAGE}", fields={}, services=names)

    def confirm_page(self, context: LoginContext, lang: str, *, action: str, fields: Mapping[str, str],
                     services: list[str]) -> Response:
        """A page asking the person to confirm the sign-out (POST with the CSRF token)."""
        hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())
        listed = "".join(f"<li>{escape(s)}</li>" for s in services)
        body = (f'<p class="lead">{escape(text("logout.confirm.body", lang))}</p>'
                + (f'<ul id="services">{listed}</ul>' if listed else "")
                + f'<form method="post" action="{escape(action)}">{hidden}'
                f'<input type="hidden" name="csrf" value="{escape(self.csrf(context) or "")}">'
                f'<button class="choice" id="confirm" type="submit">{escape(text("logout.confirm.button", lang))}'
                "</button></form>")
        response = Response(page(lang, text("logout.confirm.title", lang), body), content="text/html; charset=utf-8")
        response.headers.append(("Cache-Control", "no-store"))
        return response

    # -- 1.-2. end the session and tell the services by back-channel --------------------------------------

    def start(self, context: LoginContext, initiator: Initiator, session_id: str | None, *,
              lang: str | None = None) -> Response:
        """End ``session_id`` (if still alive) and carry the logout through its steps."""
        context.set_cookie(self.cookies.expire(self.cookies.sso))
        flow = LogoutFlow(id=secrets.token_urlsafe(18), created=int(self._clock()), initiator=initiator,
                          lang=lang or context.lang)
        ended = self.sessions.end(session_id) if session_id else None
        if ended is not None:
            flow = self._fan_out(flow, ended)
        return self.proceed(context, flow)

    def end_quietly(self, session_id: str, initiator: Initiator) -> LogoutFlow | None:
        """End a session where no redirect can follow (a replaced session, the city's front-channel iframe).

        Back-channel deliveries go out; the front-channel URLs are in the flow returned, for a
        page that can frame them (:meth:`frames`); SAML SPs cannot be reached without the browser.
        """
        ended = self.sessions.end(session_id)
        if ended is None:
            return None
        return self._fan_out(LogoutFlow(id="", created=int(self._clock()), initiator=initiator), ended)

    def frames(self, flow: LogoutFlow | None, *, framed_by: str) -> Response:
        """A blank page framing the services' front-channel logout URLs, itself framed by ``framed_by``.

        For the city IdP's front-channel call (Front-Channel Logout 1.0 §2-§4): the IdP loads this
        in an iframe; the services' URLs load in iframes of it, so they are told in the same browser.
        """
        urls = flow.frontchannel if flow is not None else ()
        body = "<!doctype html><title>signed out</title>" + "".join(
            f'<iframe hidden title="sign-out" src="{escape(url)}"></iframe>' for url in urls)
        response = Response(body, content="text/html; charset=utf-8")
        frames = sorted({csp.origin(url) or "'none'" for url in urls})
        policy = f"default-src 'none'; frame-ancestors {csp.origin(framed_by) or chr(39) + 'none' + chr(39)}"
        if frames:
            policy += f"; frame-src {' '.join(frames)}"
        response.headers += [("Cache-Control", "no-store"), ("Content-Security-Policy", policy)]
        return response

    def _fan_out(self, flow: LogoutFlow, ended: EndedSession) -> LogoutFlow:
        session = ended.session
        if ended.grants:
            self.revoke_grants(ended.grants)
        initiator = flow.initiator
        deliveries, names, frontchannel, saml_sps = [], [], [], []
        now = self._clock()
        for service in ended.services:
            skip = initiator.requester == service.requester and initiator.kind in ("oidc", "saml")
            names.append(self._service_name(service.requester))
            if skip:
                continue
            if service.protocol == "oidc":
                client = self.clients.client(service.requester)
                if client is None:
                    continue
                if client.backchannel_logout_uri:
                    token = self.mint_logout_token(client=client, sub=service.subject, sid=service.sid, now=now)
                    deliveries.append(self._delivery(client.client_id, client.backchannel_logout_uri, token,
                                                     service.subject, service.sid))
                url = self.frontchannel_url(client, sid=service.sid)
                if url:
                    frontchannel.append(url)
            else:
                saml_sps.append(PendingSp(sp=service.requester, name_id=service.subject,
                                          session_index=service.sid))
        failed: list[str] = []
        if deliveries:
            self.delivery.start()  # idempotent: retries run in the background from now on
            queued = self.delivery.enqueue(deliveries)
            outcomes = self.delivery.deliver(queued, deadline=now + BACKCHANNEL_DEADLINE)
            failed = [self._service_name(d.client_id) for d in queued if outcomes.get(d.id) == "refused"]
        upstream = session.upstream if initiator.kind != "upstream" else None
        logs.login_event("logout", session.tenant, session.idp.split("/", 1)[-1], initiator.requester,
                         None, initiated_by=initiator.kind, services=len(ended.services),
                         backchannel=len(deliveries), frontchannel=len(frontchannel), saml_sps=len(saml_sps))
        return dataclasses.replace(flow, signed_out=tuple(dict.fromkeys(names)), failed=tuple(failed),
                                   frontchannel=tuple(frontchannel), saml_sps=tuple(saml_sps), upstream=upstream,
                                   upstream_left=None)

    def _delivery(self, client_id: str, url: str, token: str, sub: str, sid: str) -> Any:
        from broker.sessions.delivery import Delivery

        return Delivery(client_id=client_id, url=url, logout_token=token, sub=sub, sid=sid)

    def renew_token(self, client_id: str, sub: str | None, sid: str | None) -> str | None:
        """A freshly signed logout token for a retry (the delivery engine's ``renew``)."""
        client = self.clients.client(client_id)
        if client is None:
            return None
        return self.mint_logout_token(client=client, sub=sub, sid=sid, now=self._clock())

    # -- 3.-4. the SAML SPs, then the city's IdP, through the browser ---------------------------------

    def proceed(self, context: LoginContext, flow: LogoutFlow) -> Response:
        while flow.saml_sps:
            pending, rest = flow.saml_sps[0], flow.saml_sps[1:]
            sent = self.saml_idp.logout_request(pending.sp, name_id=pending.name_id,
                                                session_index=pending.session_index, relay_state=flow.id) \
                if self.saml_idp is not None else None
            flow = dataclasses.replace(flow, saml_sps=rest)
            if sent is not None:
                url, request_id = sent
                return self._redirect(context, dataclasses.replace(flow, waiting=request_id,
                                                                   waiting_for=f"sp:{pending.sp}"), url)
        if flow.upstream is not None:
            upstream, flow = flow.upstream, dataclasses.replace(flow, upstream=None)
            idp = self.tenants.idps.get(upstream.idp)
            backend = self.backends.get(idp.backend_name) if idp is not None else None
            sent = backend.logout_request(upstream, relay_state=flow.id) if backend is not None else None
            if sent is not None:
                url, request_id = sent
                return self._redirect(context, dataclasses.replace(flow, waiting=request_id, waiting_for="upstream",
                                                                   upstream_idp=upstream.idp), url)
            flow = dataclasses.replace(flow, upstream_left=self._idp_name(upstream.idp, flow.lang))
        return self.finish(context, flow)

    def receive_saml(self, context: LoginContext, slo: SingleLogout, binding: str, *,
                     from_upstream: bool) -> tuple[Received, Response | None]:
        """A SAML logout message at one of our SLO endpoints, its signature checked (``slo.receive``).

        A LogoutResponse is answered here: the logout it belongs to goes on (the response).  A
        LogoutRequest comes back with no response, for its endpoint to start a logout.
        """
        received = slo.receive(binding=binding, raw_query=context.raw_query, form=context.request or {})
        if received.response is None:
            return received, None
        return received, self.answered(context, relay_state=received.relay_state,
                                       in_response_to=received.response.in_response_to,
                                       success=received.response.success, from_upstream=from_upstream)

    def answered(self, context: LoginContext, *, relay_state: str | None, in_response_to: str | None,
                 success: bool, from_upstream: bool) -> Response:
        """A LogoutResponse (or the OIDC IdP's return) for the request the logout waits for."""
        flow = self._open(context)
        if flow is None or not relay_state or not hmac.compare_digest(relay_state.encode(), flow.id.encode()):
            raise LogoutRefused("a logout answer without the logout it belongs to (RelayState/state)")
        expected = "upstream" if from_upstream else (flow.waiting_for or "")
        if flow.waiting_for != expected or not flow.waiting or (
                in_response_to is not None and not hmac.compare_digest(in_response_to.encode(), flow.waiting.encode())):
            raise LogoutRefused("a logout answer to a request this logout did not send (InResponseTo)")
        who = flow.waiting_for or ""
        flow = dataclasses.replace(flow, waiting=None, waiting_for=None)
        if not success:
            if who == "upstream":
                flow = dataclasses.replace(flow, upstream_left=self._idp_name(flow.upstream_idp or "", flow.lang))
            else:
                flow = dataclasses.replace(flow, failed=(*flow.failed, self._service_name(who[3:])))
        return self.proceed(context, flow)

    # -- 5. the answer ------------------------------------------------------------------------------------

    def finish(self, context: LoginContext, flow: LogoutFlow) -> Response:
        if self.seal.name in context.cookies:
            context.set_cookie(self.cookies.expire(self.seal.name))
        initiator = flow.initiator
        target: str | None = None
        if initiator.kind == "oidc" and initiator.return_to:
            target = initiator.return_to + (("&" if "?" in initiator.return_to else "?")
                                             + urlencode({"state": initiator.state}) if initiator.state else "")
        elif initiator.kind == "saml" and initiator.request_id and self.saml_idp is not None:
            target = self.saml_idp.logout_response(initiator.requester, in_response_to=initiator.request_id,
                                                   relay_state=initiator.relay_state,
                                                   partial=bool(flow.failed or flow.upstream_left))
        elif initiator.kind == "upstream" and initiator.request_id and initiator.requester:
            idp = self.tenants.idps.get(initiator.requester)
            backend = self.backends.get(idp.backend_name) if idp is not None else None
            if backend is not None:
                target = backend.logout_response(initiator.requester, in_response_to=initiator.request_id,
                                                 relay_state=initiator.relay_state)
        if target and not flow.frontchannel and not flow.upstream_left:
            return Redirect(target)
        return self._page(context, flow, continue_to=target)

    def _page(self, context: LoginContext, flow: LogoutFlow, *, continue_to: str | None = None,
              nothing: bool = False) -> Response:
        lang = negotiate(flow.lang, context.header("Accept-Language"))
        parts = [f'<p class="lead" id="signed-out">{escape(text("logout.done", lang))}</p>']
        if flow.signed_out:
            parts.append(f"<p>{escape(text('logout.services', lang))}</p><ul id=\"services\">"
                         + "".join(f"<li>{escape(name)}</li>" for name in flow.signed_out) + "</ul>")
        elif nothing:
            parts.append(f"<p>{escape(text('logout.nothing', lang))}</p>")
        if flow.failed:
            parts.append(f'<p id="failed">{escape(text("logout.failed", lang))}: '
                         + escape(", ".join(flow.failed)) + "</p>")
        if flow.upstream_left:
            parts.append(f'<p class="lead" id="close-browser"><strong>{escape(text("logout.close", lang))}</strong> '
                         + escape(text("logout.city_left", lang).format(idp=flow.upstream_left)) + "</p>")
        if continue_to:
            parts.append(f'<p><a class="choice" id="continue" href="{escape(continue_to)}">'
                         f'{escape(text("logout.continue", lang))}</a></p>')
        # Front-Channel Logout §4: each client's logout URI in an iframe of this page.
        parts += [f'<iframe hidden title="sign-out" src="{escape(url)}"></iframe>' for url in flow.frontchannel]
        response = Response(page(lang, text("logout.title", lang), "".join(parts)), content="text/html; charset=utf-8")
        frames = sorted({csp.origin(url) or "'none'" for url in flow.frontchannel})
        policy = csp.policy(form_action=("'self'",)) + (f"; frame-src {' '.join(frames)}" if frames else "")
        if continue_to and not flow.upstream_left:
            # The iframes have a moment to load; then the person goes back where they came from.
            response.headers.append(("Refresh", f"2; url={continue_to}"))
        response.headers.extend([("Cache-Control", "no-store"), ("Content-Security-Policy", policy)])
        return response

    # -- the logout flow cookie -------------------------------------------------------------------------------

    def _redirect(self, context: LoginContext, flow: LogoutFlow, url: str) -> Response:
        context.set_cookie(self.cookies.header(self.seal.name, self.seal.seal_data(flow.to_dict())))
        return Redirect(url)

    def _open(self, context: LoginContext) -> LogoutFlow | None:
        value = context.cookies.get(self.seal.name)
        if not value:
            return None
        try:
            return LogoutFlow.from_dict(self.seal.open_data(value))
        except SealError as exc:
            logger.warning("logout cookie rejected correlation_id=%s reason=%s", context.correlation_id, exc)
            return None

    # -- names for the page ----------------------------------------------------------------------------------

    def _service_name(self, requester: str) -> str:
        client = self.clients.client(requester)
        if client is not None:
            return str(client.name or client.client_id)
        return requester

    def _idp_name(self, idp_key: str, lang: str | None) -> str:
        idp = self.tenants.idps.get(idp_key)
        if idp is None:
            return idp_key
        tenant = self.tenants.by_id.get(idp.tenant_id)
        language = negotiate(lang, None)
        city = tenant.names.get(language) if tenant is not None else idp.tenant_id
        return f"{city} – {idp.names.get(language) or idp.id}"
