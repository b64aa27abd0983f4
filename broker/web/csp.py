"""Content-Security-Policy values for the broker's pages, and an auto-POST page that fits them.

The broker's pages use inline ``<style>`` (:func:`broker.errors.page`), one inline
``<script>`` (the city page's search as you type, :mod:`broker.discovery.script`) and, on
the SAML auto-POST pages, an inline script that submits the form.  Nothing is loaded from elsewhere.  So the policy is
``default-src 'none'`` with inline styles, ``data:`` images, scripts allowed by hash only
(never ``'unsafe-inline'`` for scripts), forms posting only where the page must post,
no framing and no ``<base>``:

* :func:`policy` builds such a value; :data:`DEFAULT_FORM_ACTION` is ``'self'``;
* :func:`autopost_headers` is what a page posting to another site (a SAML response to a
  service's ACS, a SAML request to a city's IdP) sets, naming that one target;
* :func:`autopost_page` renders such a page with a hashed ``<script>`` element, which every
  browser with CSP Level 2 honours.  pysaml2's own page submits from an ``onload``
  attribute, which a hash allows only with ``'unsafe-hashes'`` (CSP Level 3);
  :data:`PYSAML2_ONLOAD` is that handler's hash for pages still rendered by pysaml2.

Note for ``form-action``: browsers check it on the redirects that follow a form
submission too (Chromium blocks a redirect to an origin the directive does not name), so
the auto-POST policy also allows ``https:`` destinations unless told otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

DEFAULT_FORM_ACTION = ("'self'",)

#: The inline handler pysaml2's ``http_form_post_message`` page submits with.
PYSAML2_ONLOAD_HANDLER = "document.forms[0].submit()"
_AUTOSUBMIT = "document.forms[0].submit();"


def script_hash(source: str) -> str:
    """The CSP source expression (``'sha256-…'``) that allows an inline script with exactly ``source``."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def inline_script_hashes(trusted_html: str) -> tuple[str, ...]:
    """Hashes of the inline ``<script>`` elements (without attributes) of a trusted template.

    Only for markup the broker itself wrote (a constant), never for a response body:
    hashing whatever a page contains would allow a script injected into it.
    """
    return tuple(dict.fromkeys(script_hash(body) for body in _SCRIPT.findall(trusted_html)))


#: ``'unsafe-hashes'`` plus the hash of pysaml2's ``onload`` handler (and nothing else).
PYSAML2_ONLOAD = ("'unsafe-hashes'", script_hash(PYSAML2_ONLOAD_HANDLER))
AUTOSUBMIT_HASH = script_hash(_AUTOSUBMIT)


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, as a CSP source expression; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def policy(*, form_action: Iterable[str] | None = DEFAULT_FORM_ACTION, script_src: Iterable[str] = (),
           img_src: Iterable[str] = (), connect_src: Iterable[str] = ()) -> str:
    """The HTML policy: nothing but inline styles, ``data:`` images, hashed scripts and ``form_action``.

    ``form_action=None`` leaves the directive out, for a page whose own form is answered with a
    redirect to a site that cannot be named in advance (the city page: its choice redirects to
    the chosen city's IdP, and browsers check that redirect against ``form-action`` too).
    ``img_src`` adds image origins (a service's registered logo); ``connect_src`` lets the
    page's scripts fetch from those sources (the city search: ``'self'``).
    """
    scripts = " ".join(dict.fromkeys(script_src))
    targets = None if form_action is None else " ".join(dict.fromkeys(form_action)) or "'none'"
    images = " ".join(dict.fromkeys(("'self'", "data:", *img_src)))
    connect = " ".join(dict.fromkeys(connect_src))
    return (f"default-src 'none'; style-src 'self' 'unsafe-inline'; img-src {images}; "
            + (f"script-src {scripts}; " if scripts else "")
            + (f"connect-src {connect}; " if connect else "")
            + (f"form-action {targets}; " if targets is not None else "")
            + "frame-ancestors 'none'; base-uri 'none'")


#: For responses that are not HTML (JSON, XML, redirects): nothing may run or frame them.
NON_HTML_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def autopost_policy(action: str, *, extra_targets: Iterable[str] = (), pysaml2: bool = True,
                    redirects: bool = True) -> str:
    """The policy of a page that posts a form to ``action`` by script.

    ``form-action`` names the target's origin.  Browsers check the redirects that follow a
    form submission against ``form-action`` too (Chromium blocks the redirect), and a
    service's ACS or a city's IdP may well answer with a redirect to another host, so with
    ``redirects=True`` (the default) any ``https:`` destination is allowed as well; only
    ``http:`` and ``javascript:``/``data:`` targets stay forbidden.  ``pysaml2=True`` also
    allows pysaml2's ``onload`` handler (for pages it renders); :func:`autopost_page` pages
    need only :data:`AUTOSUBMIT_HASH`.
    """
    targets = [t for t in (origin(action), *extra_targets) if t]
    if redirects:
        targets.append("https:")
    scripts = [AUTOSUBMIT_HASH, *(PYSAML2_ONLOAD if pysaml2 else ())]
    return policy(form_action=targets or ("'none'",), script_src=scripts)


def autopost_headers(action: str, *, extra_targets: Iterable[str] = (), pysaml2: bool = True,
                     redirects: bool = True) -> list[tuple[str, str]]:
    """Headers for a page carrying a signed assertion or request: its own CSP, never cached."""
    return [("Content-Security-Policy", autopost_policy(action, extra_targets=extra_targets, pysaml2=pysaml2,
                                                        redirects=redirects)),
            ("Cache-Control", "no-store"), ("Pragma", "no-cache")]


_CONTINUE = {"fi": "Jatka", "sv": "Fortsätt", "en": "Continue"}
_WAIT = {"fi": "Siirrytään palveluun…", "sv": "Du skickas vidare…", "en": "Taking you to the service…"}


def autopost_page(action: str, fields: Mapping[str, str], *, lang: str = "fi", extra_targets: Iterable[str] = (),
                  redirects: bool = True) -> tuple[bytes, list[tuple[str, str]]]:
    """``(body, headers)`` of a page that posts ``fields`` to ``action`` at once.

    The form is submitted by a hashed inline script; without scripts the person presses
    the visible button.  Every value is escaped.  The headers carry the page's own CSP
    (``form-action`` the target's origin), ``Cache-Control: no-store`` and the content type.
    """
    from broker.errors import page

    lang = lang if lang in _CONTINUE else "fi"
    inputs = "".join(f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
                     for name, value in fields.items())
    body = page(lang, _WAIT[lang], f'<form method="post" action="{html.escape(action)}">{inputs}'
                f'<button class="choice" type="submit">{html.escape(_CONTINUE[lang])}</button></form>'
                f"<script>{_AUTOSUBMIT}</script>")
    headers = [("Content-Type", "text/html; charset=utf-8"),
               *autopost_headers(action, extra_targets=extra_targets, pysaml2=False, redirects=redirects)]
    return body.encode("utf-8"), headers
