"""The OIDC backend: one per upstream OpenID Provider (Entra ID, Google Workspace...).

SATOSA's ``OpenIDConnectBackend`` drives pyoidc's ``Client``, which (a) accepts
``alg=none`` ID tokens, (b) keeps every login's grant in a per-process dict that
is never cleaned, and (c) sends no PKCE.  This backend keeps SATOSA's module
shape and pyoidc's message model for the provider configuration, and does the
code exchange and ID-token validation itself:

* authorization request with ``state``, ``nonce`` and PKCE S256 (RFC 7636 §4.2),
  all kept in the login flow (:meth:`~broker.login.flow.LoginFlow.upstream_sent`),
  so any instance can take the callback, and only for this IdP: the callback is
  refused unless the flow waits for this backend;
* the code is exchanged once, with ``client_secret_post`` or ``_basic`` as the
  provider supports (RFC 6749 §2.3.1);
* the ID token is verified by :mod:`digione_verify` (asymmetric algorithms only,
  ``kid`` lookup in the provider's JWKS with rate-limited refresh), then
  OIDC Core §3.1.3.7: ``iss`` is the configured issuer, ``aud`` contains our
  client id, ``azp`` is our client id when present, ``nonce`` matches the flow;
* claims the IdP's mapping reads that the ID token lacks are asked of the userinfo
  endpoint (OIDC Core §5.3, §5.4), whose ``sub`` must be the ID token's (§5.3.2):
  :mod:`broker.backends.userinfo`, as the IdP's ``userinfo`` key says;
* every fetch (JWKS, token, userinfo) goes over ``http``: for an IdP with a ``ca_file``, a
  session trusting that city's CA only (:mod:`broker.backends.trust`).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from satosa.backends.base import BackendModule
from satosa.internal import InternalData
from satosa.response import Redirect

from broker.backends import userinfo
from broker.backends.trust import FormPost
from broker.errors import ExpiredFlow, IdpError, InvalidResponse
from broker.login.context import LoginContext
from broker.login.internal import auth_information, internal_data
from broker.sessions.model import UpstreamSession
from broker.tokens.grants import s256
from digione_verify import InvalidToken, TokenVerifier

logger = logging.getLogger(__name__)

TIMEOUT = (3.05, 10)


class BrokerOidcBackend(BackendModule):
    """Sign in at one upstream OpenID Provider with the authorization code flow."""

    def __init__(self, auth_callback_func, internal_attributes, config, base_url, name, *,
                 http: requests.Session | None = None, verifier: TokenVerifier | None = None):
        super().__init__(auth_callback_func, internal_attributes, base_url, name)
        self.config = config
        self.provider: dict[str, Any] = config["provider_metadata"]
        self.client_id: str = config["client_id"]
        self._client_secret: str = config["client_secret"]
        self.redirect_uri: str = config["redirect_uri"]
        self.idp_key: str = config.get("idp_key") or name
        #: The logout steps (:class:`broker.sessions.logout.Logout`), attached when the broker is assembled.
        self.logout: Any = None
        self.scope: str = " ".join(config.get("scopes") or ("openid",))
        #: ``auto``, ``always`` or ``never`` (:mod:`broker.backends.userinfo`).
        self.userinfo: str = config.get("userinfo") or "auto"
        #: The claims the IdP's mapping reads, as groups of names standing in for each other.
        self.claims_read: list[list[str]] = [list(group) for group in config.get("claims_read") or ()]
        self.http = http or requests.Session()
        self._token_request = FormPost(self.http, self.provider["token_endpoint"])
        methods = self.provider.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        self.auth_method = "client_secret_post" if "client_secret_post" in methods and \
            "client_secret_basic" not in methods else "client_secret_basic"
        self.verifier = verifier or TokenVerifier(
            issuer=self.provider["issuer"], audience=self.client_id, jwks_uri=self.provider["jwks_uri"],
            typ=None, allowed_algs=("RS256", "ES256", "PS256", "ES384", "RS384", "ES512", "RS512"),
            http_get=_http_get(self.http))

    def start_auth(self, context: LoginContext, internal_request: InternalData) -> Redirect:
        flow = context.flow
        if flow is None:
            raise ExpiredFlow("no login in progress")
        flow.waiting_for(self.name)
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        context.flow = flow.upstream_sent(state=state, nonce=nonce, verifier=verifier)
        challenge = s256(verifier)
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                  "scope": self.scope, "state": state, "nonce": nonce,
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        service = flow.service
        if service.login_hint:
            params["login_hint"] = service.login_hint
        if flow.lang or service.ui_locales:
            params["ui_locales"] = flow.lang or service.ui_locales or ""
        if service.force_login:
            params["prompt"] = "login"
        if service.max_age is not None:
            params["max_age"] = str(service.max_age)
        endpoint = self.provider["authorization_endpoint"]
        return Redirect(endpoint + ("&" if "?" in endpoint else "?") + urlencode(params))

    def register_endpoints(self) -> list[tuple[str, Any]]:
        base = urlsplit(self.redirect_uri).path.lstrip("/").rsplit("/", 1)[0]
        return [(f"^{urlsplit(self.redirect_uri).path.lstrip('/')}$", self.response_endpoint),
                (f"^{base}/logout$", self.logged_out_endpoint),
                (f"^{base}/frontchannel_logout$", self.frontchannel_logout_endpoint)]

    # -- single logout with the city's OpenID Provider ---------------------------------------------

    @property
    def post_logout_redirect_uri(self) -> str:
        """Where the city's IdP sends the person back after its own logout (registered there)."""
        return self.redirect_uri.rsplit("/", 1)[0] + "/logout"

    def logout_request(self, upstream: UpstreamSession, *, relay_state: str) -> tuple[str, str] | None:
        """RP-Initiated Logout 1.0 §2 at the city's IdP, or ``None`` if it has no ``end_session_endpoint``."""
        endpoint = self.provider.get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        params = {"post_logout_redirect_uri": self.post_logout_redirect_uri, "state": relay_state,
                  "client_id": self.client_id}
        if upstream.id_token:
            params["id_token_hint"] = upstream.id_token
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params), relay_state

    def logged_out_endpoint(self, context: LoginContext) -> Any:
        """The city's IdP has signed the person out and sent them back (RP-Initiated Logout §3)."""
        state = (context.qs_params or {}).get("state")
        return self.logout.answered(context, relay_state=state if isinstance(state, str) else None,
                                    in_response_to=state if isinstance(state, str) else None, success=True,
                                    from_upstream=True)

    def frontchannel_logout_endpoint(self, context: LoginContext) -> Any:
        """The city's IdP signs the person out and loads this in an iframe (Front-Channel Logout 1.0 §2-§3)."""
        params = context.qs_params or {}
        iss, sid = params.get("iss"), params.get("sid")
        if iss is not None and iss != self.provider["issuer"]:
            raise InvalidResponse("front-channel logout names another issuer (Front-Channel Logout §3)")
        session_id = self.logout.session_for_upstream(context, self.idp_key, (sid,) if isinstance(sid, str) else ())
        flow = None
        if session_id is not None:
            flow = self.logout.end_quietly(session_id, self.logout.initiator("upstream", requester=self.idp_key))
            context.set_cookie(self.logout.cookies.expire(self.logout.cookies.sso))
        # Framed by the city's IdP (only its origin may), framing the services told by front-channel.
        return self.logout.frames(flow, framed_by=self.provider["issuer"])

    def response_endpoint(self, context: LoginContext, *args: Any) -> Any:
        flow = context.flow
        if flow is None:
            raise ExpiredFlow(f"OIDC callback without a login in progress ({context.flow_problem or 'no flow cookie'})")
        upstream = flow.waiting_for(self.name)
        if not upstream.state or not upstream.nonce or not upstream.verifier:
            raise InvalidResponse("the flow sent no request to this IdP")
        params = context.request or {}
        # RFC 6749 §10.12: the state binds the callback to the browser that started the flow.
        if not isinstance(params.get("state"), str) or not secrets.compare_digest(params["state"], upstream.state):
            raise InvalidResponse("state does not match the flow")
        # RFC 9207 §2.4: when the provider names itself, it must be the one we asked.
        if params.get("iss") and params["iss"] != self.provider["issuer"]:
            raise InvalidResponse("iss in the authorization response is not the expected issuer")
        if params.get("error"):
            error = str(params["error"])[:64]
            # RFC 6749 §4.1.2.1 / OIDC Core §3.1.2.6: the person did not sign in; the service hears it.
            passed = error if error in ("access_denied", "login_required", "consent_required",
                                        "interaction_required") else None
            raise IdpError(f"IdP returned error {error}", upstream_error=passed)
        code = params.get("code")
        if not code:
            raise InvalidResponse("no code in the authorization response")
        if not isinstance(code, str):
            raise InvalidResponse("the code is not a string")
        tokens = self._exchange(code, upstream.verifier)
        claims = self._verify_id_token(tokens.get("id_token"), upstream.nonce)
        claims = userinfo.complete(claims, mode=self.userinfo, groups=self.claims_read, provider=self.provider,
                                   tokens=tokens, http=self.http, idp=self.idp_key, timeout=TIMEOUT)
        context.upstream_session = UpstreamSession(
            kind="oidc", idp=upstream.idp, id_token=tokens["id_token"],
            sid=claims["sid"] if isinstance(claims.get("sid"), str) else None)
        attributes = {name: _as_strings(value) for name, value in claims.items()
                      if name not in ("nonce", "at_hash", "c_hash", "aud", "exp", "iat", "nbf", "azp", "uti",
                                      "rh", "aio")}
        return self.auth_callback_func(context, internal_data(
            auth_info=auth_information(
                auth_class_ref=claims.get("acr"), timestamp=str(claims.get("auth_time") or claims.get("iat")),
                issuer=self.provider["issuer"]),
            attributes=attributes,
            subject_id=str(claims["sub"]),
        ))

    def _exchange(self, code: str, verifier: str) -> dict[str, Any]:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": verifier}
        auth = None
        if self.auth_method == "client_secret_post":
            data.update(client_id=self.client_id, client_secret=self._client_secret)
        else:
            auth = (self.client_id, self._client_secret)
        try:
            reply = self._token_request.post(data, auth=auth, timeout=TIMEOUT, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise IdpError(f"token endpoint unreachable: {exc.__class__.__name__}") from None
        try:
            body = reply.json()
        except ValueError:
            body = {}
        if reply.status_code != 200 or not isinstance(body, dict) or "error" in body:
            error = body.get("error") if isinstance(body, dict) else None
            raise IdpError(f"token endpoint answered {reply.status_code} {str(error or '')[:64]}")
        return body

    def _verify_id_token(self, id_token: Any, nonce: str) -> dict[str, Any]:
        if not isinstance(id_token, str):
            raise InvalidResponse("no ID token in the token response")
        try:
            claims = self.verifier.verify(id_token)
        except InvalidToken as exc:
            raise InvalidResponse(f"ID token rejected: {exc}") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidResponse("ID token without sub")
        # OIDC Core §3.1.3.7 (11): the nonce binds the ID token to this flow (replay).
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
            raise InvalidResponse("ID token nonce does not match the flow")
        # §3.1.3.7 (4)-(5): with several audiences azp must be present and be us.
        audiences = claims["aud"] if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != self.client_id:
            raise InvalidResponse("ID token azp is not this client")
        return claims

    def get_metadata_desc(self):
        return []


def _as_strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [v if isinstance(v, str) else _scalar(v) for v in value]
    return [value if isinstance(value, str) else _scalar(value)]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _http_get(session: requests.Session) -> Callable[[str], bytes]:
    def get(url: str) -> bytes:
        reply = session.get(url, timeout=TIMEOUT)
        reply.raise_for_status()
        return reply.content
    return get
