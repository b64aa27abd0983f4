"""Rendering the discovery pages.

Pages are plain HTML built once per language and tenant set: the city list is
the same for every visitor, so it is rendered on first use and cached; only the
"previous choice" box differs per browser.  The search box filters cities by
their names and their schools' names in the browser, without a round trip.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from broker.errors import page
from broker.i18n import LANGUAGES, negotiate, text
from broker.registry.tenants import IdentityProvider, Tenants

_FILTER_SCRIPT = """<script>
document.getElementById('q').addEventListener('input',function(e){
 var q=e.target.value.trim().toLowerCase();
 document.querySelectorAll('[data-search]').forEach(function(el){
  el.style.display=(!q||el.getAttribute('data-search').indexOf(q)>=0)?'':'none';});});
</script>"""


class DiscoveryPages:
    def __init__(self, tenants: Tenants, base_url: str):
        self.tenants = tenants
        self.base_url = base_url
        self._cache: dict[tuple[str, str], str] = {}   # (tenant or "", lang) -> page

    def render(self, *, tenant_id: str | None, lang: str | None, accept_language: str | None,
               remembered: IdentityProvider | None) -> str | None:
        """The page for ``tenant_id`` (its methods) or the city list; ``None`` for an unknown tenant."""
        lang = negotiate(lang, accept_language)
        if tenant_id:
            if tenant_id not in self.tenants.by_id:
                return None
            return self._methods(tenant_id, lang)
        return self._cities(lang).replace("<!--remembered-->", self._remembered(remembered, lang), 1)

    def _remembered(self, idp: IdentityProvider | None, lang: str) -> str:
        if idp is None:
            return ""
        tenant = self.tenants.by_id[idp.tenant_id]
        label = f"{tenant.names[lang]} – {idp.names[lang]}"
        return (f'<section id="remembered"><p>{escape(text("disco.remembered", lang))}</p>'
                f'<a class="choice" id="continue" href="{self._choose(idp, lang)}">{escape(label)}</a>'
                f'<p><a id="change" href="{self.base_url}/disco/forget?lang={lang}">'
                f'{escape(text("disco.change", lang))}</a></p></section><hr>')

    def _cached(self, tenant_id: str, lang: str, build) -> str:
        # Bounded: (tenants + 1) x 3 languages, all fixed for the life of this registry.
        key = (tenant_id, lang)
        page_html = self._cache.get(key)
        if page_html is None:
            page_html = self._cache[key] = build()
        return page_html

    def _cities(self, lang: str) -> str:
        return self._cached("", lang, lambda: self._build_cities(lang))

    def _build_cities(self, lang: str) -> str:
        items = []
        for tenant in sorted(self.tenants, key=lambda t: t.names[lang]):
            search = " ".join([tenant.names[l] for l in LANGUAGES]
                              + [s.names[l] for s in tenant.schools for l in LANGUAGES]).lower()
            if len(tenant.identity_providers) == 1:
                href = self._choose(tenant.identity_providers[0], lang)
            else:
                href = f"{self.base_url}/disco?{urlencode({'tenant': tenant.id, 'lang': lang})}"
            items.append(f'<a class="choice" data-tenant="{escape(tenant.id)}" data-search="{escape(search)}" '
                         f'href="{escape(href)}">{escape(tenant.names[lang])}</a>')
        body = (self._languages(lang, "")
                + "<!--remembered-->"
                + f'<label for="q">{escape(text("disco.search", lang))}</label>'
                + '<input type="search" id="q" autocomplete="off">'
                + f'<nav id="cities">{"".join(items)}</nav>' + _FILTER_SCRIPT)
        return page(lang, text("disco.title", lang), body)

    def _methods(self, tenant_id: str, lang: str) -> str:
        return self._cached(tenant_id, lang, lambda: self._build_methods(tenant_id, lang))

    def _build_methods(self, tenant_id: str, lang: str) -> str:
        tenant = self.tenants.by_id[tenant_id]
        items = "".join(
            f'<a class="choice" data-idp="{escape(idp.key)}" href="{escape(self._choose(idp, lang))}">'
            f'{escape(idp.names[lang])}</a>' for idp in tenant.identity_providers)
        body = (self._languages(lang, tenant_id) + f"<p><strong>{escape(tenant.names[lang])}</strong></p>"
                + f'<nav id="methods">{items}</nav>'
                + f'<p><a href="{self.base_url}/disco?lang={lang}">{escape(text("disco.change", lang))}</a></p>')
        return page(lang, text("disco.method", lang), body)

    def _choose(self, idp: IdentityProvider, lang: str) -> str:
        return f"{self.base_url}/disco/choose?{urlencode({'idp': idp.key, 'lang': lang})}"

    def _languages(self, current: str, tenant_id: str) -> str:
        names = {"fi": "Suomeksi", "sv": "På svenska", "en": "In English"}
        links = []
        for lang in LANGUAGES:
            query = {"lang": lang, **({"tenant": tenant_id} if tenant_id else {})}
            attr = ' aria-current="true"' if lang == current else ""
            links.append(f'<a lang="{lang}" href="{self.base_url}/disco?{urlencode(query)}"{attr}>{names[lang]}</a>')
        return f'<nav class="lang" aria-label="{escape(text("disco.language", current))}">{"".join(links)}</nav>'
