"""Rendering the city page (which city's sign-in the person uses).

Pages are plain HTML built once per language and tenant set: the city list is
the same for every visitor, so it is rendered on first use and cached; only the
flow's CSRF token, the service's name and the "previous choice" button differ
per visit and are filled in at render.  Choices are one ``POST`` form
(``/disco/choose``) whose buttons name the IdP; a city with several ways in
links to its own page.  The search box filters cities and schools in the
browser; its script is allowed by hash in the page's Content-Security-Policy.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from broker.errors import language_nav, page
from broker.i18n import LANGUAGES, negotiate, text
from broker.registry.tenants import IdentityProvider, Tenants
from broker.web import csp

FILTER_SCRIPT = """
document.getElementById('q').addEventListener('input',function(e){
 var q=e.target.value.trim().toLowerCase();
 document.querySelectorAll('[data-search]').forEach(function(el){
  el.style.display=(!q||el.getAttribute('data-search').indexOf(q)>=0)?'':'none';});});
"""
_CSRF = "\x00csrf\x00"
_SERVICE = "<!--service-->"
_REMEMBERED = "<!--remembered-->"


#: No form-action: the choice form is answered with a redirect to the chosen city's IdP, which
#: browsers check against form-action too.  The filter script is allowed by its hash alone.
CSP = csp.policy(form_action=None, script_src=[csp.script_hash(FILTER_SCRIPT)])


class DiscoveryPages:
    csp = CSP

    def __init__(self, tenants: Tenants, base_url: str):
        self.tenants = tenants
        self.base_url = base_url
        self._cache: dict[tuple[str, str], str] = {}   # (tenant or "", lang) -> page

    def render(self, *, tenant_id: str | None, lang: str | None, accept_language: str | None,
               remembered: IdentityProvider | None, csrf: str, service_name: str = "") -> str | None:
        """The page for ``tenant_id`` (its ways in) or the city list; ``None`` for an unknown tenant."""
        lang = negotiate(lang, accept_language)
        if tenant_id:
            if tenant_id not in self.tenants.by_id:
                return None
            html = self._cached(tenant_id, lang, lambda: self._build_methods(tenant_id, lang))
        else:
            html = self._cached("", lang, lambda: self._build_cities(lang))
            html = html.replace(_REMEMBERED, self._remembered(remembered, lang), 1)
        service = (f'<p id="service">{escape(text("disco.service", lang))}: '
                   f'<strong>{escape(service_name)}</strong></p>') if service_name else ""
        return html.replace(_SERVICE, service, 1).replace(_CSRF, escape(csrf))

    def _remembered(self, idp: IdentityProvider | None, lang: str) -> str:
        if idp is None:
            return ""
        tenant = self.tenants.by_id[idp.tenant_id]
        button = self._idp_button(idp, f"{tenant.names[lang]} – {idp.names[lang]}", id="continue")
        return (f'<section id="remembered"><p>{escape(text("disco.remembered", lang))}</p>'
                + self._choice_form(button, lang)
                + f'<form method="post" action="{self.base_url}/disco/forget">{self._hidden(lang)}'
                f'<button class="link" id="change">{escape(text("disco.change", lang))}</button></form>'
                "</section><hr>")

    def _cached(self, tenant_id: str, lang: str, build) -> str:
        # Bounded: (tenants + 1) x 3 languages, all fixed for the life of this registry.
        key = (tenant_id, lang)
        page_html = self._cache.get(key)
        if page_html is None:
            page_html = self._cache[key] = build()
        return page_html

    def _hidden(self, lang: str) -> str:
        return (f'<input type="hidden" name="csrf" value="{_CSRF}">'
                f'<input type="hidden" name="lang" value="{escape(lang)}">')

    def _choice_form(self, inner: str, lang: str, **attrs: str) -> str:
        extra = "".join(f' {k}="{escape(v)}"' for k, v in attrs.items())
        return f'<form method="post" action="{self.base_url}/disco/choose"{extra}>{self._hidden(lang)}{inner}</form>'

    def _idp_button(self, idp: IdentityProvider, label: str, **attrs: str) -> str:
        extra = "".join(f' {k}="{escape(v)}"' for k, v in attrs.items())
        return f'<button class="choice" name="idp" value="{escape(idp.key)}"{extra}>{escape(label)}</button>'

    def _build_cities(self, lang: str) -> str:
        items = []
        for tenant in sorted(self.tenants, key=lambda t: t.names[lang]):
            search = " ".join([tenant.names[lng] for lng in LANGUAGES]
                              + [s.names[lng] for s in tenant.schools for lng in LANGUAGES]).lower()
            attrs = {"data-tenant": tenant.id, "data-search": search}
            if len(tenant.identity_providers) == 1:
                items.append(self._idp_button(tenant.identity_providers[0], tenant.names[lang], **attrs))
            else:
                href = f"{self.base_url}/disco?{urlencode({'tenant': tenant.id, 'lang': lang})}"
                extra = "".join(f' {k}="{escape(v)}"' for k, v in attrs.items())
                items.append(f'<a class="choice"{extra} href="{escape(href)}">{escape(tenant.names[lang])}</a>')
        body = (self._languages(lang, "") + _SERVICE + _REMEMBERED
                + f'<label for="q">{escape(text("disco.search", lang))}</label>'
                + '<input type="search" id="q" autocomplete="off">'
                + self._choice_form("".join(items), lang, id="cities")
                + f"<script>{FILTER_SCRIPT}</script>")
        return page(lang, text("disco.title", lang), body)

    def _build_methods(self, tenant_id: str, lang: str) -> str:
        tenant = self.tenants.by_id[tenant_id]
        items = "".join(self._idp_button(idp, idp.names[lang], **{"data-idp": idp.key})
                        for idp in tenant.identity_providers)
        body = (self._languages(lang, tenant_id) + _SERVICE
                + f"<p><strong>{escape(tenant.names[lang])}</strong></p>"
                + self._choice_form(items, lang, id="methods")
                + f'<p><a href="{self.base_url}/disco?lang={lang}">{escape(text("disco.change", lang))}</a></p>')
        return page(lang, text("disco.method", lang), body)

    def _languages(self, current: str, tenant_id: str) -> str:
        return language_nav(current, {lang: f"{self.base_url}/disco?" + urlencode(
            {"lang": lang, **({"tenant": tenant_id} if tenant_id else {})}) for lang in LANGUAGES})
