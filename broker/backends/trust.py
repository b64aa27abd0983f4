"""TLS towards a city's IdP that trusts the city's own CA file, and nothing else.

A city whose IdP has a certificate from a private CA names the CA in its tenant file
(``ca_file``, :mod:`broker.registry.ca_files`).  :func:`session_for` gives the HTTP session
for that IdP's fetches (OIDC discovery, JWKS, token and userinfo; SAML metadata by URL):

* the CA file's validated text is the only trust anchor: an :class:`ssl.SSLContext` made
  from it (``cadata``), with hostname checking, TLS 1.2 at least; neither the public CAs
  (certifi) nor ``REQUESTS_CA_BUNDLE`` are added, and a caller's ``verify=False`` is ignored;
* the session is the IdP's own (one per CA file, by its digest), so no connection opened
  under one city's trust is reused for another city's IdP, even on the same host;
* an IdP without a CA file uses the broker's shared session and the public CAs, so a
  city's private CA is trusted for that city's IdP only.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from broker.registry.tenant_model import CaFile


class _CaFileAdapter(HTTPAdapter):
    """An adapter whose every HTTPS connection verifies against one :class:`ssl.SSLContext`."""

    def __init__(self, context: ssl.SSLContext, **kwargs: Any):
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, cert)
        # Our context, never a CA bundle path (which urllib3 would load *into* our context).
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["ssl_context"] = self._context
        pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, False, cert)  # sets no CA bundle on the pool...
        conn.cert_reqs = "CERT_REQUIRED"             # ...and verification stays required
        conn.ca_certs = None
        conn.ca_cert_dir = None


def ssl_context(ca_file: CaFile) -> ssl.SSLContext:
    """A client context trusting exactly the certificates of ``ca_file``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_file.pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@functools.lru_cache(maxsize=1024)
def _session(ca_file: CaFile) -> requests.Session:
    session = requests.Session()
    adapter = _CaFileAdapter(ssl_context(ca_file))
    session.mount("https://", adapter)
    session.verify = True
    return session


def session_for(ca_file: CaFile | None, default: requests.Session) -> requests.Session:
    """The session for an IdP with ``ca_file``: its own (see the module), or ``default`` without one."""
    return default if ca_file is None else _session(ca_file)


def ca_key(ca_file: CaFile | None) -> str:
    """What distinguishes fetches under ``ca_file`` from others of the same URL (cache keys)."""
    return "" if ca_file is None else f"|ca:{ca_file.digest}"


class FormPost:
    """POST forms to one URL of an IdP through its session's adapter: the session's trust and proxies,
    without ``requests.Session.request`` around every call.

    The session's per-request layers (merging its cookies, headers and hooks into each request,
    reading proxy and CA settings from the environment again, resolving redirects, keeping the
    reply's cookies) cost about 0.5 ms of CPU per token request, a tenth of a brokered OIDC login
    (docs/performance.md).  Here the environment is read once, for this URL, when the upstream is
    built; each request is prepared and handed to the adapter that the session would have
    chosen, so TLS (a city's own CA file, :func:`session_for`), proxies and connection pools are
    the session's.  What this drops is on purpose: a token endpoint has no business redirecting
    (RFC 6749 §3.2 names no redirect), and an IdP's cookies set during one person's code exchange
    must never ride along with the next person's.
    """

    def __init__(self, session: requests.Session, url: str):
        self._adapter = session.get_adapter(url)
        self._url = url
        self._headers = dict(session.headers)
        environment = session.merge_environment_settings(url, {}, None, session.verify, session.cert)
        self._verify: bool | str = True if environment["verify"] is None else environment["verify"]
        self._proxies, self._cert = environment["proxies"], environment["cert"]

    def post(self, fields: dict[str, str], *, auth: tuple[str, str] | None, timeout: Any,
             headers: dict[str, str] | None = None) -> requests.Response:
        """Send ``fields`` as ``application/x-www-form-urlencoded``; ``requests.RequestException`` on failure."""
        prepared = requests.PreparedRequest()
        prepared.prepare(method="POST", url=self._url, headers={**self._headers, **(headers or {})}, data=fields,
                         auth=auth)
        return self._adapter.send(prepared, stream=False, timeout=timeout, verify=self._verify, cert=self._cert,
                                  proxies=self._proxies)
