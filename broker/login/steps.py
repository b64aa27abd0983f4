"""The steps of a login, in the order they run.

::

    1. request      a frontend validated the service's request       -> begin()
                    request micro-services (SATOSA plugins)
    2. selection    SSO session, hint, or the city page              -> select(), choose()
    3. upstream     the backend sends the person to the city's IdP   -> to_upstream()
    4. response     the backend verified the answer against the flow -> upstream_answered()
    5. mapping      the tenant's rules make the canonical identity
                    the city's schools allow the service?            -> _respond()
                    response micro-services (SATOSA plugins)
    6. release      the broker session is written; the frontend      -> release()
    7. answer       issues the code or the signed assertion

Error exits are explicit: :meth:`Login.deny` answers the *service* (OIDC
``error=login_required``/``access_denied``, a SAML ``<Status>``); any
:class:`~broker.errors.BrokerError` raised on the way is shown to the *person*
by the proxy (:mod:`broker.login.proxy`) with a correlation id.  A service the
person's school has not enabled (:mod:`broker.login.access`) is both:
:meth:`Login.not_allowed` shows the person a page whose button carries
``access_denied`` to the service.

Every step reads and writes :attr:`LoginContext.flow` and nothing else carries
the login: the flow names the IdP it waits for, so an answer from any other IdP
is refused (:meth:`LoginFlow.waiting_for`), and the mapping rules applied are
always those of the IdP whose message was verified.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

from satosa.exception import SATOSAAuthenticationError
from satosa.internal import InternalData
from satosa.micro_services.base import MicroService
from satosa.response import Redirect, Response

from broker import logs
from broker.errors import BrokerError, ExpiredFlow, IdpError, InvalidResponse, NoUserId
from broker.login import plugins
from broker.login.access import NOT_ALLOWED, Notice, ServiceGate
from broker.login.context import Answer, LoginContext
from broker.login.cookies import Cookies
from broker.login.flow import LoginFlow, ServiceRequest
from broker.login.internal import auth_information, internal_data
from broker.login.selection import Choice, IdpSelector
from broker.metrics.login import LoginMetrics
from broker.registry.services import ServiceNames
from broker.registry.tenants import IdentityProvider, Tenants
from broker.sessions import BrokerSession, SessionStore

logger = logging.getLogger("broker.login")


class Frontend(Protocol):
    """What the login needs of a frontend (besides SATOSA's ``FrontendModule`` interface)."""

    name: str

    def handle_authn_response(self, context: LoginContext, internal_response: InternalData) -> Response: ...

    def deny(self, context: LoginContext, error: str, description: str, *,
             notice: Notice | None = None) -> Response:
        """Answer the service with ``error``; with a ``notice``, the person reads it first and its
        button delivers the answer (:class:`broker.login.access.Notice`)."""
        ...

    def session_fits(self, service: ServiceRequest, identity: Mapping[str, Any]) -> bool: ...

    def subject_for(self, service: ServiceRequest, identity: Mapping[str, Any]) -> str: ...


class Login:
    """The login transaction of one registry version: its plugins, rules and stores."""

    def __init__(self, *, base_url: str, request_services: list[MicroService],
                 response_services: list[MicroService], tenants: Tenants, rulesets: Mapping[str, Any],
                 user_id_salt: bytes, log_salt: bytes, sessions: SessionStore, cookies: Cookies, remember_ttl: int,
                 services: ServiceNames | None = None):
        self.base_url = base_url
        self.frontends: Mapping[str, Frontend] = {}
        self.backends: Mapping[str, Any] = {}
        self.tenants = tenants
        self.rulesets = rulesets
        self.sessions = sessions
        self.cookies = cookies
        self.selector = IdpSelector(tenants)
        #: The cities' choice of services (``allowed_services``); ``services`` names them.
        self.gate = ServiceGate(tenants, services)
        #: Prometheus counters of this version's logins, labelled from its registry (broker.metrics.login).
        self.metrics = LoginMetrics(tenants.idps, services)
        self.remember_ttl = remember_ttl
        self._user_id_salt = user_id_salt
        self._log_salt = log_salt
        self.request_services = list(request_services)
        self.response_services = list(response_services)
        self._request_chain: Callable[[LoginContext, InternalData], Response] = \
            plugins.chain(request_services, self.select)
        self._response_chain: Callable[[LoginContext, InternalData], Response] = \
            plugins.chain(response_services, self.release)

    #: Called with the id of a session a new sign-in in the same browser replaced (it must be ended).
    on_session_replaced: Callable[[str], object] | None = None

    def plug(self, *, frontends: Mapping[str, Frontend], backends: Mapping[str, Any]) -> None:
        """Attach the frontends and backends (built with this login's :meth:`begin` and
        :meth:`upstream_answered` as their SATOSA callbacks)."""
        self.frontends = dict(frontends)
        self.backends = dict(backends)

    # -- 1. the service's request ------------------------------------------------------------

    def begin(self, context: LoginContext, request: ServiceRequest) -> Response:
        """A frontend validated ``request``: a new flow begins (any earlier one in this browser ends)."""
        context.flow = LoginFlow.begin(request)
        context.target_frontend = request.frontend
        self.metrics.started(request)
        if not self.request_services:  # nothing to run before the IdP choice (as _respond for the answer)
            return self.select(context, None)
        internal = internal_data(requester=request.requester,
                                requester_name=[{"text": request.requester_name, "lang": "en"}])
        return self._guarded(context, self._request_chain, internal)

    # -- 2. choosing the IdP -------------------------------------------------------------------

    def select(self, context: LoginContext, internal: InternalData | None) -> Response:
        """Sign in from the broker session if it fits; else go to the IdP the request names, or the city page."""
        flow = _flow(context)
        service = flow.service
        choice = self.selector.from_request(service)
        if not service.force_login:
            session = self.sessions.get(context.cookies.get(self.cookies.sso))
            if session is not None and self._session_fits(session, service, choice):
                return self.from_session(context, session)
        if service.passive:
            # OIDC Core §3.1.2.1 prompt=none; SAML Core §3.4.1 IsPassive: never show a page.
            return self.deny(context, "login_required", "no broker session to sign in from")
        if choice.idp is not None:
            return self.to_upstream(context, choice.idp)
        return self.to_discovery(context, choice)

    def to_discovery(self, context: LoginContext, choice: Choice) -> Response:
        query = {"tenant": choice.tenant.id} if choice.tenant else {}
        if choice.tenant and choice.school:
            query["school"] = choice.school
        elif choice.query:
            query["q"] = choice.query
        lang = _flow(context).lang
        if lang:
            query["lang"] = lang
        return Redirect(f"{self.base_url}/disco" + (f"?{urlencode(query)}" if query else ""))

    def choose(self, context: LoginContext, idp: IdentityProvider, *, lang: str | None = None) -> Response:
        """The person chose ``idp`` on the city page (a POST carrying the flow's CSRF token)."""
        context.flow = _flow(context).in_language(lang)
        return self.to_upstream(context, idp)

    # -- 3. the upstream request ----------------------------------------------------------------

    def to_upstream(self, context: LoginContext, idp: IdentityProvider) -> Response:
        """Send the person to ``idp``; the flow now waits for it and for nothing else."""
        backend = self.backends.get(idp.backend_name)
        if backend is None:
            raise IdpError(f"no backend for {idp.key}", status=503)
        context.flow = _flow(context).to_idp(idp.key, idp.backend_name)
        self.metrics.sent_upstream(idp.key)
        context.target_backend = backend.name
        service = _flow(context).service
        response: Response = backend.start_auth(context, internal_data(requester=service.requester))
        return response

    # -- 4./5. the IdP's answer, mapped -------------------------------------------------------

    def upstream_answered(self, context: LoginContext, internal: InternalData) -> Response:
        """A backend verified an answer against the flow's upstream request: map it with *that* IdP's rules."""
        flow = _flow(context)
        upstream = flow.waiting_for(context.target_backend or "")
        self.metrics.answered(upstream)
        idp = self.tenants.idps.get(upstream.idp)
        if idp is None:
            raise ExpiredFlow(f"IdP {upstream.idp} is no longer registered")
        expected = idp.entity_id if idp.type == "saml" else idp.issuer
        if internal.auth_info is None or internal.auth_info.issuer != expected:
            raise InvalidResponse("the answer's issuer is not the IdP the flow waits for")
        ruleset = self.rulesets.get(idp.key)
        if ruleset is None:
            raise ExpiredFlow(f"no mapping rules for {idp.key}")
        result = ruleset.apply(internal.attributes, upstream_subject=internal.subject_id, salt=self._user_id_salt)
        if result.refused:
            raise NoUserId(f"mapping refused the login: {result.refused}")
        context.flow = flow.upstream_done()
        return self._respond(context, Answer(identity=result.identity, idp=idp.key, auth=internal.auth_info,
                                             upstream=context.upstream_session))

    def from_session(self, context: LoginContext, session: BrokerSession) -> Response:
        """Answer from the broker session: the identity the session's login produced, no trip upstream."""
        info = session.auth_info
        auth = auth_information(auth_class_ref=info.get("auth_class_ref"), timestamp=info.get("timestamp"),
                                         issuer=info.get("issuer"), authority=info.get("authority"))
        return self._respond(context, Answer(identity=dict(session.identity), idp=session.idp, auth=auth,
                                             session=session))

    def _respond(self, context: LoginContext, answer: Answer) -> Response:
        """Run the response micro-services on the answer; the chain ends in :meth:`release`.

        First, once for a fresh sign-in and for SSO alike: the person's city must allow the
        service for their schools, else :meth:`not_allowed`.
        """
        context.answer = answer
        if not self.gate.allows(_flow(context).service, answer):
            return self.not_allowed(context)
        if not self.response_services:  # nothing to narrow: the chain is release itself
            return self.release(context, None)
        service = _flow(context).service
        internal = internal_data(auth_info=answer.auth, requester=service.requester,
                                requester_name=[{"text": service.requester_name, "lang": "en"}],
                                attributes=plugins.identity_view(answer.identity),
                                subject_id=answer.identity["user_id"])
        return self._guarded(context, self._response_chain, internal)

    # -- 6./7. release and answer ----------------------------------------------------------------

    def release(self, context: LoginContext, internal: InternalData | None) -> Response:
        """Write the broker session, then let the frontend issue the code or the assertion.

        ``internal`` is what the response micro-services left (``None`` without any): the
        identity released is the answer's, narrowed to it.
        """
        flow = _flow(context)
        answer = context.answer
        if answer is None:
            raise ExpiredFlow("release without an answer")
        identity = answer.identity if internal is None else plugins.narrow(answer.identity, internal.attributes or {})
        frontend = self.frontends[flow.service.frontend]
        if not frontend.session_fits(flow.service, identity):
            return self.deny(context, "login_required", "the signed-in user is not the one the service named")
        auth = answer.auth
        service = flow.service
        with self.sessions.store.batch():
            session, replaced = self._open_session(context, answer)
            context.sso_sid = session.sid_for(service.requester, service.protocol)
            response = frontend.handle_authn_response(context, internal_data(
                auth_info=auth, requester=service.requester, attributes=identity,
                subject_id=identity["user_id"]))
            self.sessions.record_service(session, requester=service.requester, protocol=service.protocol,
                                         subject=frontend.subject_for(service, identity),
                                         sid=context.service_session_index or context.sso_sid)
        self._ended_replaced(session, replaced)
        self._log(context, logs.SUCCESS, idp=answer.idp, user_id=identity.get("user_id"),
                  sso=answer.session is not None, rotated=replaced is not None)
        context.flow = None
        return response

    def _open_session(self, context: LoginContext, answer: Answer) -> tuple[BrokerSession, BrokerSession | None]:
        """The broker session the answer is released in, and the one it replaced in this browser (if any).

        From a session: that session.  A new sign-in: a new session and a new cookie.  The identity
        is kept as the city's IdP asserted it (plugins narrow per service).  Call inside a store batch.
        """
        session = answer.session
        replaced = None
        if session is None:
            auth = answer.auth
            old = context.cookies.get(self.cookies.sso)
            replaced = self.sessions.get(old) if old else None
            token, session = self.sessions.create(
                identity=answer.identity, idp=answer.idp,
                auth_info={"auth_class_ref": auth.auth_class_ref, "timestamp": auth.timestamp,
                           "issuer": auth.issuer, "authority": auth.authority},
                upstream=answer.upstream)
            context.set_cookie(self.cookies.header(self.cookies.sso, token))
            # Offered first on this browser's next city page; never applied without a click.
            context.set_cookie(self.cookies.header(self.cookies.idp, answer.idp, max_age=self.remember_ttl))
        context.session = session
        return session, replaced

    def _ended_replaced(self, session: BrokerSession, replaced: BrokerSession | None) -> None:
        """A session this browser had before the new sign-in ends (its services are told)."""
        if replaced is not None and replaced.id != session.id and self.on_session_replaced is not None:
            self.on_session_replaced(replaced.id)

    # -- error exits ---------------------------------------------------------------------------------

    def not_allowed(self, context: LoginContext) -> Response:
        """The person's school has not enabled the service (:mod:`broker.login.access`).

        The person signed in all the same: a new sign-in gets its broker session (another
        service works by SSO), but this service is not recorded in it and receives nothing but
        ``access_denied``, delivered by the button of a page telling the person why (at once,
        without the page, for a passive request).
        """
        flow = _flow(context)
        answer = context.answer
        if answer is None:
            raise ExpiredFlow("no answer to check")
        service = flow.service
        with self.sessions.store.batch():
            session, replaced = self._open_session(context, answer)
        self._ended_replaced(session, replaced)
        notice = None if service.passive else self.gate.notice(context, service)
        self._log(context, NOT_ALLOWED, idp=answer.idp, sso=answer.session is not None,
                  service_id=self.gate.service_id(service), answered="service" if notice is None else "person",
                  correlation_id=context.correlation_id)
        response = self.frontends[service.frontend].deny(
            context, "access_denied", "the person's school has not enabled this service", notice=notice)
        context.flow = None
        return response

    def deny(self, context: LoginContext, error: str, description: str) -> Response:
        """End the flow with ``error`` sent back to the service (its frontend decides the form)."""
        flow = _flow(context)
        frontend = self.frontends[flow.service.frontend]
        self._log(context, error, idp=flow.upstream.idp if flow.upstream else None, answered="service")
        response = frontend.deny(context, error, description)
        context.flow = None
        return response

    def refused(self, context: LoginContext, error: BrokerError) -> None:
        """Log the end of a login refused with a page to the person (the proxy renders the page)."""
        if context.flow_if_loaded is not None:
            flow = context.flow_if_loaded
            self._log(context, error.code, idp=flow.upstream.idp if flow.upstream else None, answered="person")

    def _guarded(self, context: LoginContext, step: Callable[[LoginContext, InternalData], Response],
                 internal: InternalData) -> Response:
        """Run a micro-service chain; a plugin's refusal goes back to the service as ``access_denied``."""
        try:
            return step(context, internal)
        except SATOSAAuthenticationError as exc:
            logger.info("a micro-service refused the login correlation_id=%s reason=%s",
                        context.correlation_id, str(getattr(exc, "message", exc))[:120])
            return self.deny(context, "access_denied", "the service does not allow this sign-in")

    # -- helpers ---------------------------------------------------------------------------------------

    def _session_fits(self, session: BrokerSession, service: ServiceRequest, choice: Choice) -> bool:
        """OIDC Core §3.1.2.1 max_age, a hint naming another IdP, and a named user each demand a fresh login.

        (An expired or idle session is not returned by the store at all.)
        """
        if service.max_age is not None and time.time() - session.auth_time > service.max_age:
            return False
        if choice.idp is not None and choice.idp.key != session.idp:
            return False
        if choice.tenant is not None and session.tenant != choice.tenant.id:
            return False
        return bool(self.frontends[service.frontend].session_fits(service, session.identity))

    def _log(self, context: LoginContext, outcome: str, *, idp: str | None, user_id: str | None = None,
             **fields: Any) -> None:
        """The one line a finished login writes (:func:`broker.logs.login_event`): no personal data."""
        flow = context.flow_if_loaded
        self.metrics.finished(outcome, flow, idp, fields.get("sso"))
        tenant, _, idp_id = (idp or "").partition("/")
        logs.login_event(
            outcome, tenant or None, idp_id or None, flow.service.requester if flow is not None else None,
            logs.user_reference(user_id, self._log_salt) if user_id else None,
            protocol=flow.service.protocol if flow is not None else None,
            duration_ms=int((time.time() - flow.created) * 1000) if flow is not None else None, **fields)


def _flow(context: LoginContext) -> LoginFlow:
    flow = context.flow
    if flow is None:
        raise ExpiredFlow(f"no login in progress ({context.flow_problem or 'no flow cookie'})")
    return flow
