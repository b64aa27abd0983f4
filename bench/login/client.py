"""The relying party the benchmark plays: one brokered login over HTTP, validated.

A login is what a service and a pupil's browser do, with nothing followed automatically:

1. ``GET /authorize`` (code flow, PKCE S256, state, nonce; ``idp_hint`` for ours) → a redirect
   to the upstream IdP and the flow-state cookie;
2. SAML: the benchmark's IdP parses the AuthnRequest and signs a Response for a new pupil,
   which is POSTed to the broker's ACS. OIDC: the demo Entra ID is asked for a code (its
   session cookie is kept per client process, as a browser would), and the broker's callback
   is called with it (the broker exchanges the code at Entra's token endpoint itself);
3. the redirect back carries ``code`` and the same ``state`` (and ``iss`` where sent);
4. ``POST /token`` (``client_secret_basic``, ``code_verifier``);
5. the ID token is verified against the broker's JWKS (``digione_verify``: signature, ``kid``,
   allowed algorithm) and its claims checked (``iss``, ``aud``, ``azp``, ``nonce``, ``exp``,
   ``iat``, ``at_hash``, ``sub``; for ours the released names and roles too);
6. ``GET /userinfo`` with the access token: ``sub`` must equal the ID token's and the names
   must be those the IdP asserted.

Any deviation raises :class:`LoginFailed`; nothing is retried.  Cookies are handled by hand
(name=value of each ``Set-Cookie``, a fresh jar per login, so no login rides on another's
SSO session).
"""

from __future__ import annotations

import base64
import hashlib
import http.cookiejar
import json
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from digione_verify import load_jwks, verify_jws

LEEWAY = 60


class LoginFailed(Exception):
    pass


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie, request):
        return False

    def return_ok(self, cookie, request):
        return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def half_hash(value: str) -> str:
    """``at_hash`` for a SHA-256 algorithm (ES256, RS256): OIDC Core §3.1.3.6."""
    return _b64(hashlib.sha256(value.encode("ascii")).digest()[:16])


class Jar(dict):
    """Cookies of one login: name -> value, from ``Set-Cookie`` headers (expired ones removed)."""

    def update_from(self, response: requests.Response) -> None:
        for header in response.raw.headers.getlist("Set-Cookie"):
            first, _, attributes = header.partition(";")
            name, _, value = first.strip().partition("=")
            attrs = attributes.lower()
            if "max-age=0" in attrs.replace(" ", "") or "1970" in attrs or not value:
                self.pop(name, None)
            else:
                self[name] = value

    def header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.items())} if self else {}


class RelyingParty:
    """One client process's relying party for one implementation under test."""

    def __init__(self, cfg: dict, saml_idp=None, entra: dict | None = None):
        self.cfg = cfg
        self.saml_idp = saml_idp
        self.entra = entra
        self.http = requests.Session()
        self.http.cookies.set_policy(_NoCookies())
        self.idp_http = requests.Session()  # the browser's cookies at Entra (its SSO session)
        public, real = cfg.get("public_url"), cfg["base_url"]
        self._rewrite = (public, real) if public and public != real else None
        self._keys: dict | None = None
        self.server_seconds = 0.0

    # -- HTTP ----------------------------------------------------------------------------

    def _url(self, url: str) -> str:
        if self._rewrite and url.startswith(self._rewrite[0]):
            return self._rewrite[1] + url[len(self._rewrite[0]):]
        return url

    def _call(self, method: str, url: str, jar: Jar | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if jar is not None:
            headers.update(jar.header())
        start = time.perf_counter()
        response = self.http.request(method, self._url(url), headers=headers, allow_redirects=False, timeout=60,
                                     **kwargs)
        self.server_seconds += time.perf_counter() - start
        if jar is not None:
            jar.update_from(response)
        return response

    def keys(self) -> dict:
        if self._keys is None:
            reply = self.http.get(self._url(self.cfg["jwks"]), timeout=10)
            reply.raise_for_status()
            self._keys = load_jwks(reply.json())
            if not self._keys:
                raise LoginFailed("the JWKS has no usable key")
        return self._keys

    # -- one login -----------------------------------------------------------------------

    def login(self, upstream: str, user: dict | None = None) -> dict:
        """One validated login through ``upstream`` (``saml`` or ``oidc``); returns its figures."""
        cfg = self.cfg
        self.server_seconds = 0.0
        start = time.perf_counter()
        jar = Jar()
        state, nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        params = {"response_type": "code", "client_id": cfg["client_id"], "redirect_uri": cfg["redirect_uri"],
                  "scope": cfg["scope"], "state": state, "nonce": nonce,
                  "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
                  "code_challenge_method": "S256"}
        if cfg["hints"].get(upstream):
            params["idp_hint"] = cfg["hints"][upstream]
        reply = self._call("GET", f"{cfg['authorize']}?{urlencode(params)}", jar)
        location = _redirect(reply, "authorize")
        if upstream == "saml":
            acs, fields = self.saml_idp.answer(location, user)
            reply = self._call("POST", acs, jar, data=fields)
            expected_names = (user["given_name"], user["family_name"])
        else:
            callback = self._entra(location)
            reply = self._call("GET", callback, jar)
            expected_names = (self.entra["given_name"], self.entra["family_name"])
        back = _redirect(reply, "assertion consumer / callback")
        if not back.startswith(cfg["redirect_uri"] + "?"):
            raise LoginFailed(f"not sent back to the RP: {back[:200]}")
        query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        if "error" in query:
            raise LoginFailed(f"RP got error={query['error']}: {query.get('error_description', '')[:200]}")
        if query.get("state") != state:
            raise LoginFailed("state in the authorization response differs")
        if "iss" in query and query["iss"] != cfg["issuer"]:
            raise LoginFailed("iss in the authorization response is not the issuer")
        code = query.get("code")
        if not code:
            raise LoginFailed("no code in the authorization response")

        reply = self._call("POST", cfg["token"], auth=(cfg["client_id"], cfg["client_secret"]),
                           data={"grant_type": "authorization_code", "code": code,
                                 "redirect_uri": cfg["redirect_uri"], "code_verifier": verifier})
        if reply.status_code != 200:
            raise LoginFailed(f"token endpoint: {reply.status_code} {reply.text[:200]}")
        tokens = reply.json()
        access_token, id_token = tokens.get("access_token"), tokens.get("id_token")
        if not access_token or not id_token or tokens.get("token_type", "").lower() != "bearer":
            raise LoginFailed(f"token response incomplete: {sorted(tokens)}")
        claims = self.check_id_token(id_token, nonce, access_token, expected_names)

        reply = self._call("GET", cfg["userinfo"], headers={"Authorization": f"Bearer {access_token}"})
        if reply.status_code != 200:
            raise LoginFailed(f"userinfo: {reply.status_code} {reply.text[:200]}")
        info = reply.json()
        if info.get("sub") != claims["sub"]:
            raise LoginFailed("userinfo sub differs from the ID token's")
        if _one(info.get("given_name")) != expected_names[0] or _one(info.get("family_name")) != expected_names[1]:
            raise LoginFailed(f"userinfo names differ: {info.get('given_name')!r} {info.get('family_name')!r}")
        return {"latency": time.perf_counter() - start, "server": self.server_seconds,
                "refresh_token": tokens.get("refresh_token"), "access_token": access_token, "claims": claims}

    def check_id_token(self, token: str, nonce: str, access_token: str, names: tuple[str, str]) -> dict:
        try:
            header, claims = verify_jws(token, self.keys().get, ("ES256", "RS256"))
        except Exception as exc:  # noqa: BLE001 - digione_verify's InvalidToken family, or a key-set problem
            raise LoginFailed(f"ID token signature: {exc}") from None
        cfg, now = self.cfg, time.time()
        aud = claims.get("aud")
        if claims.get("iss") != cfg["issuer"]:
            raise LoginFailed(f"ID token iss {claims.get('iss')!r}")
        if aud != cfg["client_id"] and not (isinstance(aud, list) and cfg["client_id"] in aud):
            raise LoginFailed(f"ID token aud {aud!r}")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != cfg["client_id"]:
            raise LoginFailed("ID token azp")
        if "azp" in claims and claims["azp"] != cfg["client_id"]:
            raise LoginFailed("ID token azp is another client")
        if claims.get("nonce") != nonce:
            raise LoginFailed("ID token nonce")
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < now - LEEWAY:
            raise LoginFailed("ID token expired or without exp")
        if not isinstance(claims.get("iat"), (int, float)) or claims["iat"] > now + LEEWAY:
            raise LoginFailed("ID token iat in the future or missing")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise LoginFailed("ID token without sub")
        if "at_hash" in claims and claims["at_hash"] != half_hash(access_token):
            raise LoginFailed("ID token at_hash does not match the access token")
        if cfg["impl"] == "ours":
            if "at_hash" not in claims or "sid" not in claims or "auth_time" not in claims:
                raise LoginFailed("ID token lacks at_hash, sid or auth_time")
            if (claims.get("given_name"), claims.get("family_name")) != names:
                raise LoginFailed(f"ID token names {claims.get('given_name')!r} {claims.get('family_name')!r}")
            if not claims.get("roles"):
                raise LoginFailed("ID token without roles")
        claims["_alg"] = header["alg"]
        return claims

    def _entra(self, location: str) -> str:
        """The browser at Entra: signed in already (session cookie) or through the form once."""
        if not location.startswith(self.entra["url"]):
            raise LoginFailed(f"not sent to the OIDC IdP: {location[:200]}")
        reply = self.idp_http.get(location, allow_redirects=False, timeout=30)
        if reply.status_code == 200:  # the login form: post it with the request's parameters
            params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            path = urlsplit(location).path.replace("/authorize", "/login")
            reply = self.idp_http.post(self.entra["url"] + path, allow_redirects=False, timeout=30,
                                       data={**params, "username": self.entra["username"],
                                             "password": self.entra["password"]})
        return _redirect(reply, "OIDC IdP")


def _redirect(reply: requests.Response, step: str) -> str:
    if reply.status_code not in (301, 302, 303, 307) or "Location" not in reply.headers:
        raise LoginFailed(f"{step}: expected a redirect, got {reply.status_code}: {reply.text[:300]}")
    return reply.headers["Location"]


def _one(value):
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


# -- client processes ---------------------------------------------------------------------

_PROCESS: dict = {}


def init_process(setup: dict) -> None:
    """Build this client process's relying parties (run once per process, spawn start)."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from . import idp

    _PROCESS.clear()
    _PROCESS["seed"] = setup["seed"]
    for name, impl in setup["impls"].items():
        saml = idp.SamlIdp(Path(setup["idp_keys"]), impl["sp_metadata"]) if impl.get("sp_metadata") else None
        _PROCESS[name] = RelyingParty(impl["client"], saml, setup.get("entra"))


def run_logins(name: str, upstream: str, indices: list[int]) -> dict:
    """Run the logins numbered ``indices`` against implementation ``name``; figures and failures."""
    from . import idp

    rp: RelyingParty = _PROCESS[name]
    results, failures = [], []
    kept = _PROCESS.setdefault("tokens", {}).setdefault(name, [])
    cpu0 = time.process_time()
    for index in indices:
        user = idp.synthetic_pupil(index, _PROCESS["seed"]) if upstream == "saml" else None
        try:
            outcome = rp.login(upstream, user)
            results.append((outcome["latency"], outcome["server"]))
            if outcome["refresh_token"]:
                kept.append([outcome["refresh_token"], outcome["access_token"]])
        except Exception as exc:  # noqa: BLE001 - every failure is reported, with what it was
            failures.append(f"{type(exc).__name__}: {exc}"[:400])
    return {"results": results, "failures": failures, "client_cpu": time.process_time() - cpu0}


def run_grants(name: str, kind: str, count: int) -> dict:
    """``count`` token-endpoint-side requests of ``kind`` with tokens this process's logins got:

    * ``refresh`` — ``grant_type=refresh_token`` with rotation (the new refresh token replaces
      the old one; the new access token is kept);
    * ``introspect`` — RFC 7662 introspection of an access token by a resource server (ours);
    * ``userinfo`` — the access token at the userinfo endpoint.
    """
    rp: RelyingParty = _PROCESS[name]
    cfg = rp.cfg
    tokens = _PROCESS.get("tokens", {}).get(name) or []
    if not tokens:
        return {"results": [], "failures": [f"{kind}: no tokens kept from logins"], "client_cpu": 0.0}
    results, failures = [], []
    cpu0 = time.process_time()
    for i in range(count):
        pair = tokens[i % len(tokens)]
        rp.server_seconds = 0.0
        try:
            if kind == "refresh":
                reply = rp._call("POST", cfg["token"], auth=(cfg["client_id"], cfg["client_secret"]),
                                 data={"grant_type": "refresh_token", "refresh_token": pair[0]})
                body = reply.json() if reply.status_code == 200 else {}
                if not body.get("access_token"):
                    raise LoginFailed(f"refresh: {reply.status_code} {reply.text[:200]}")
                pair[0] = body.get("refresh_token") or pair[0]
                pair[1] = body["access_token"]
            elif kind == "introspect":
                reply = rp._call("POST", cfg["introspect"], auth=tuple(cfg["resource_server"]),
                                 data={"token": pair[1]})
                if reply.status_code != 200 or reply.json().get("active") is not True:
                    raise LoginFailed(f"introspection: {reply.status_code} {reply.text[:200]}")
            else:
                reply = rp._call("GET", cfg["userinfo"], headers={"Authorization": f"Bearer {pair[1]}"})
                if reply.status_code != 200 or not reply.json().get("sub"):
                    raise LoginFailed(f"userinfo: {reply.status_code} {reply.text[:200]}")
            results.append((rp.server_seconds, rp.server_seconds))
        except Exception as exc:  # noqa: BLE001 - reported, never retried
            failures.append(f"{kind}: {type(exc).__name__}: {exc}"[:400])
    return {"results": results, "failures": failures, "client_cpu": time.process_time() - cpu0}


def sample_login(name: str, upstream: str, index: int) -> dict:
    """One login whose tokens and claims are returned (used to learn the store's value shapes)."""
    from . import idp

    rp: RelyingParty = _PROCESS[name]
    user = idp.synthetic_pupil(index, _PROCESS["seed"]) if upstream == "saml" else None
    outcome = rp.login(upstream, user)
    return {"claims": outcome["claims"], "refresh_token": outcome["refresh_token"],
            "access_token": outcome["access_token"]}


def dumps(value) -> str:
    return json.dumps(value, default=str)
