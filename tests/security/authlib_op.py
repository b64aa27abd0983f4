"""A city's OpenID Provider built on Authlib's server (an independent OIDC implementation).

It behaves as OIDC Core §5.4 allows and panva ``oidc-provider`` does by default: in the
code flow the ID token carries only ``sub`` (and the protocol claims), and every claim about
the person (``oid``, ``tid``, names, ``roles``) is at the userinfo endpoint.  It runs on a
loopback HTTPS server whose certificate a private CA issued (:mod:`.private_ca`), so only a
client trusting that CA reaches it.

Authlib does the protocol: the authorization request (``state``, ``nonce`` required, PKCE
S256 required), single-use codes bound to the client, ``client_secret_basic``, RS256 ID
tokens, Bearer-protected userinfo (and, when a test asks, a signed ``application/jwt``
userinfo).  The person is signed in without a form (the test is about what the broker does
with the answer).  A test may make its userinfo lie: :attr:`AuthlibOp.userinfo_sub`.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo, UserInfoEndpoint
from flask import Flask, jsonify
from joserfc.jwk import KeySet, RSAKey

CLIENT_ID = "digione-yksityinen"
SUBJECT = "yk-7d1f0c2e"                       # the OP's sub for the person
PERSON = {"oid": "5b0e2c41-8f3a-4f7e-9a61-0c9d2e4b7a13", "tid": "yksityinen-tenant",
          "given_name": "Ulla", "family_name": "Userinfo", "roles": ["Teacher"], "email": "ulla@yksityinen.example"}


class _Client:
    """One registered client: the broker's redirect URI, a secret, ``client_secret_basic``."""

    def __init__(self, client_id: str, secret: str, redirect_uris: list[str]):
        self.client_id, self.secret, self.redirect_uris = client_id, secret, redirect_uris
        self.client_metadata: dict[str, Any] = {}

    def get_client_id(self): return self.client_id
    def get_default_redirect_uri(self): return self.redirect_uris[0]
    def get_allowed_scope(self, scope): return " ".join(s for s in scope.split() if s in ("openid", "profile", "email"))
    def check_redirect_uri(self, redirect_uri): return redirect_uri in self.redirect_uris
    def check_client_secret(self, client_secret): return secrets.compare_digest(client_secret, self.secret)
    def check_endpoint_auth_method(self, method, endpoint): return method == "client_secret_basic"
    def check_response_type(self, response_type): return response_type == "code"
    def check_grant_type(self, grant_type): return grant_type == "authorization_code"


class _Code:
    def __init__(self, client_id: str, request: Any):
        self.client_id = client_id
        self.redirect_uri = request.payload.redirect_uri
        self.scope = request.payload.scope
        self.nonce = request.payload.data.get("nonce")
        self.code_challenge = request.payload.data.get("code_challenge")
        self.code_challenge_method = request.payload.data.get("code_challenge_method")
        self.auth_time = int(time.time())

    def get_redirect_uri(self): return self.redirect_uri
    def get_scope(self): return self.scope
    def get_nonce(self): return self.nonce
    def get_auth_time(self): return self.auth_time
    def get_acr(self): return None
    def get_amr(self): return None


class _Token:
    def __init__(self, client: _Client, token: dict[str, Any]):
        self.client, self.scope = client, token.get("scope", "")
        self.expires_at = time.time() + int(token.get("expires_in", 600))

    def get_scope(self): return self.scope
    def get_expires_in(self): return int(self.expires_at - time.time())
    def is_expired(self): return time.time() >= self.expires_at
    def is_revoked(self): return False
    def get_client(self): return self.client
    def get_user(self): return SUBJECT


class AuthlibOp:
    """State of the OP; :meth:`app` serves it (at :attr:`issuer`, set once served)."""

    def __init__(self, client_secret: str, redirect_uris: list[str]):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "authlib-1", "use": "sig", "alg": "RS256"})
        self.client = _Client(CLIENT_ID, client_secret, redirect_uris)
        self.issuer = ""
        #: The ``sub`` userinfo answers; ``None``: the person's (a test sets another to see it refused).
        self.userinfo_sub: str | None = None
        self.codes: dict[str, _Code] = {}
        self.tokens: dict[str, _Token] = {}
        self.userinfo_calls = 0
        self.id_tokens: list[str] = []
        self._lock = threading.Lock()

    def set_signed_userinfo(self, signed: bool) -> None:
        """Answer userinfo as a signed JWT (``application/jwt``, OIDC Core §5.3.2) rather than JSON."""
        self.client.client_metadata = {"userinfo_signed_response_alg": "RS256"} if signed else {}

    def app(self) -> Flask:
        op = self
        app = Flask("authlib_op")

        class Code(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

            def save_authorization_code(self, code, request):
                with op._lock:
                    op.codes[code] = _Code(request.client.get_client_id(), request)

            def query_authorization_code(self, code, client):
                with op._lock:
                    found = op.codes.get(code)
                return found if found is not None and found.client_id == client.get_client_id() else None

            def delete_authorization_code(self, authorization_code):
                with op._lock:
                    for code, value in list(op.codes.items()):
                        if value is authorization_code:
                            del op.codes[code]

            def authenticate_user(self, authorization_code):
                return SUBJECT

        class IdTokenWithSubOnly(OpenIDCode):
            def exists_nonce(self, nonce, request):
                return False

            def resolve_client_private_key(self, client):
                return KeySet([op.key])

            def get_client_claims(self, client):
                return {"iss": op.issuer, "aud": [client.get_client_id()], "exp": int(time.time()) + 600}

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": "authlib-1"}

            def generate_user_info(self, user, scope):
                return UserInfo(sub=user)          # OIDC Core §5.4: the claims are at userinfo

            def encode_id_token(self, token, request):
                encoded = super().encode_id_token(token, request)
                op.id_tokens.append(encoded)
                return encoded

        class Tokens(BearerTokenValidator):
            def authenticate_token(self, token_string):
                with op._lock:
                    return op.tokens.get(token_string)

        class Userinfo(UserInfoEndpoint):
            def get_issuer(self):
                return op.issuer

            def resolve_private_key(self):
                return KeySet([op.key])

            def get_supported_algorithms(self):
                return ["RS256"]

            def generate_user_info(self, user, scope):
                op.userinfo_calls += 1
                return UserInfo(sub=op.userinfo_sub or user, **PERSON)

        def save_token(token, request):
            with op._lock:
                op.tokens[token["access_token"]] = _Token(request.client, token)

        server = AuthorizationServer(app, query_client=lambda cid: op.client if cid == CLIENT_ID else None,
                                     save_token=save_token)
        server.register_grant(Code, [IdTokenWithSubOnly(require_nonce=True), CodeChallenge(required=True)])
        protector = ResourceProtector()
        protector.register_token_validator(Tokens())
        server.register_endpoint(Userinfo(resource_protector=protector))

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": op.issuer, "authorization_endpoint": f"{op.issuer}/authorize",
                "token_endpoint": f"{op.issuer}/token", "jwks_uri": f"{op.issuer}/jwks",
                "userinfo_endpoint": f"{op.issuer}/userinfo", "response_types_supported": ["code"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"], "scopes_supported": ["openid", "profile", "email"],
                "claims_supported": ["sub", "oid", "tid", "given_name", "family_name", "email", "roles"]})

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([op.key]).as_dict(private=False))

        @app.get("/authorize")
        def authorize():
            try:
                grant = server.get_consent_grant(end_user=SUBJECT)
            except OAuth2Error as error:
                return server.handle_error_response(None, error)
            return server.create_authorization_response(grant_user=SUBJECT, grant=grant)

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo():
            return server.create_endpoint_response("userinfo")

        return app


def tenant_yaml(tenant: str, issuer: str, *, client_id: str = CLIENT_ID, ca_file: str | None = None,
                municipality: str = "998", extra_idp: str = "") -> str:
    """A tenant whose OIDC IdP is the Authlib OP at ``issuer`` (``ca_file``: its CA file, or none)."""
    ca_line = f"\n    ca_file: {ca_file}" if ca_file else ""
    return f"""\
id: {tenant}
names: {{fi: {tenant.capitalize()}, sv: {tenant.capitalize()}, en: {tenant.capitalize()}}}
municipality_code: "{municipality}"
education_provider:
  oid: "1.2.246.562.10.{municipality}80000000"
  names: {{fi: {tenant} kunta, sv: {tenant} kommun, en: {tenant} municipality}}
schools:
  - code: "{municipality}81"
    oid: "1.2.246.562.10.{municipality}80000001"
    names: {{fi: Testikoulu, sv: Testskola, en: Test School}}
identity_providers:
  - id: op
    type: oidc
    names: {{fi: Kaupungin OP, sv: Stadens OP, en: City OP}}
    issuer: {issuer}
    client_id: {client_id}
    client_secret: {{env: TENANT_SECRET_{tenant.upper()}_OP}}
    scopes: [openid, profile, email]{ca_line}
    mapping:
      preset: entra
{extra_idp}"""
