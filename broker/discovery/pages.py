"""Rendering the city page (which city's sign-in the person uses), its search and the site pages.

:class:`DiscoveryPages` is built once per registry version, with the login path: it builds
the :class:`~broker.discovery.search.SearchIndex` of the registry's tenants then, and renders
each page's fixed part once per language on first use.  A request fills in only what is its
own: the flow's (masked) CSRF token, the service's name and logo, the "previous choice"
button, the query and its results.

The city page is, top to bottom: the platform's name (a banner), the language switch, the
service being signed in to, the previous choice, the search (a ``GET`` form: it works without
JavaScript; :mod:`broker.discovery.script` answers as the person types), the results, and every
city (a list; behind a disclosure when there are more than :data:`OPEN_LIST` cities), then the
links to help, the privacy notice and the accessibility statement (:mod:`broker.discovery.site`).
Choices are buttons of one ``POST`` form (``/disco/choose``) naming the IdP; a city with several
ways in links to its own page.  :meth:`DiscoveryPages.search` is the same results as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from typing import Any
from urllib.parse import urlencode

from broker.discovery.script import SCRIPT_HASH, SEARCH_SCRIPT
from broker.discovery.search import Hit, Results, SearchIndex
from broker.discovery.site import PAGES, SiteTexts, render_body
from broker.errors import language_nav, page
from broker.i18n import LANGUAGES, negotiate, text
from broker.registry.tenants import IdentityProvider, Tenant, Tenants
from broker.web import csp

#: Up to this many cities the page lists them openly; above it, behind "All cities (N)".
OPEN_LIST = 20
#: Results shown for a query.
RESULTS = 20

STYLE = """
header.site,footer.site{max-width:34rem;margin:0 auto;padding:.75rem 1rem}
header.site p{margin:0;font-weight:700;color:#0b4f8a}
footer.site a{display:inline-block;margin:0 1rem .5rem 0;padding:.25rem 0}
.hint,.status,.choice .kind{color:#4a5560}
.hint{font-size:.95rem;margin:.25rem 0 .5rem}
.row{display:flex;gap:.5rem}
.row input[type=search]{flex:1;min-width:0}
.row button{font-size:1.05rem;padding:.7rem 1rem;border-radius:.5rem;border:1px solid #0b4f8a;background:#0b4f8a;
 color:#fff;cursor:pointer}
.status{min-height:1.25em;margin:.5rem 0}
ul.results{list-style:none;margin:0;padding:0}
.choice .name{font-weight:600}
.choice .kind{display:block;font-size:.9rem}
mark{background:#ffe28a;color:inherit;padding:0}
#service img{vertical-align:middle;margin-right:.5rem;max-height:3rem;max-width:8rem}
details summary{cursor:pointer;padding:.5rem 0;color:#0b4f8a}
h2{font-size:1.15rem;margin:1rem 0 .5rem}
"""

_SLOT = "\x00"


class _Template:
    """A page rendered once, with named slots filled per request in one pass."""

    def __init__(self, html: str):
        pieces = html.split(_SLOT)
        self._text = pieces[0::2]
        self._slots = pieces[1::2]

    def fill(self, values: Mapping[str, str]) -> str:
        out = [self._text[0]]
        for slot, text_after in zip(self._slots, self._text[1:], strict=True):
            out.append(values.get(slot, ""))
            out.append(text_after)
        return "".join(out)


def _esc(value: str) -> str:
    """HTML-escaped, without the slot marker (no registered name can open a slot)."""
    return escape(value.replace(_SLOT, ""))


def _slot(name: str) -> str:
    return f"{_SLOT}{name}{_SLOT}"


class DiscoveryPages:
    """The city page, the search answers and the site pages of one registry version."""

    def __init__(self, tenants: Tenants, base_url: str, *, site: SiteTexts | None = None):
        self.tenants = tenants
        self.base_url = base_url
        self.site = site or SiteTexts.load(None)
        self.index = SearchIndex(tenants)
        self._cache: dict[tuple[str, str], _Template] = {}   # (tenant or "", lang) -> page
        self._csp: dict[str, str] = {}

    # -- policies -------------------------------------------------------------------------------

    def csp(self, logo_uri: str | None = None) -> str:
        """The city page's policy: its script by hash, fetches to the broker, the service's logo's origin.

        No ``form-action``: the choice form is answered with a redirect to the chosen city's IdP,
        which browsers check against ``form-action`` too.
        """
        image = csp.origin(logo_uri) if logo_uri else None
        key = image or ""
        value = self._csp.get(key)
        if value is None:
            value = self._csp[key] = csp.policy(form_action=None, script_src=[SCRIPT_HASH], connect_src=["'self'"],
                                                img_src=[image] if image else ())
        return value

    # -- the city page ----------------------------------------------------------------------------

    def knows(self, tenant_id: str) -> bool:
        """Whether ``tenant_id`` is a city of the registry (its page exists)."""
        return tenant_id in self.tenants.by_id

    def render(self, *, tenant_id: str | None, lang: str | None, accept_language: str | None,
               remembered: IdentityProvider | None, csrf: str, service_name: str = "",
               service_logo: str | None = None, query: str | None = None, school: str | None = None) -> str | None:
        """The page for ``tenant_id`` (its ways in) or the city page; ``None`` for an unknown tenant."""
        lang = negotiate(lang, accept_language)
        values = {"csrf": _esc(csrf), "service": self._service(service_name, service_logo, lang)}
        if tenant_id:
            tenant = self.tenants.by_id.get(tenant_id)
            if tenant is None:
                return None
            values["school"] = self._school_line(tenant, school, lang)
            return self._cached(tenant_id, lang, lambda: self._build_methods(tenant, lang)).fill(values)
        query = (query or "").strip()[:100]
        values["remembered"] = self._remembered(remembered, lang)
        values["query"] = _esc(query)
        if query:
            results = self.index.search(query, lang=lang, limit=RESULTS)
            values["results"], values["none"] = self._results_html(results, query, lang)
            values["status"] = _esc(self._status(results, query, lang))
            values["results_hidden"] = ""
            values["all_hidden"] = " hidden"
        else:
            values["results_hidden"] = " hidden"
        return self._cached("", lang, lambda: self._build_cities(lang)).fill(values)

    def search(self, query: str, lang: str | None) -> dict[str, Any]:
        """The results of ``query`` as the page's script shows them (JSON-ready)."""
        lang = negotiate(lang)
        query = (query or "").strip()[:100]
        results = self.index.search(query, lang=lang, limit=RESULTS)
        body: dict[str, Any] = {"query": query, "results": [self._item(hit, lang) for hit in results.hits],
                                "more": results.more, "status": self._status(results, query, lang) if query else "",
                                "no_matches": None}
        if query and not results.hits:
            body["no_matches"] = {"title": text("disco.no_matches", lang).format(query=query),
                                  "help": text("disco.no_matches_help", lang),
                                  "help_link": text("disco.help_link", lang), "help_url": self._site_url("help", lang)}
        return body

    def _status(self, results: Results, query: str, lang: str) -> str:
        count = len(results.hits)
        if not count:
            return text("disco.count.none", lang)
        if results.more:
            return text("disco.count.more", lang).format(count=count)
        return text("disco.count.one" if count == 1 else "disco.count.many", lang).format(count=count)

    def _item(self, hit: Hit, lang: str) -> dict[str, Any]:
        """What one result shows: the name in the page's language, what matched if other, where, and the choice."""
        tenant = self.tenants.by_id[hit.tenant_id]
        school = next((s for s in tenant.schools if s.code == hit.school_code), None) if hit.school_code else None
        if school is not None:
            name, where = school.names[lang], tenant.names[lang]
        elif hit.kind == "provider":
            name, where = tenant.provider_names[lang], tenant.names[lang]
        else:
            name, where = tenant.names[lang], None
        matched = None if hit.text == name else hit.text
        only = tenant.identity_providers[0] if len(tenant.identity_providers) == 1 else None
        href = None if only else self._tenant_url(tenant.id, lang, hit.school_code)
        return {"kind": hit.kind, "kind_label": text(f"disco.kind.{hit.kind}", lang), "name": name,
                "matched": matched, "marks": [list(span) for span in hit.marks],
                "where": f"— {where}" if where else None, "tenant": tenant.id, "school": hit.school_code,
                "idp": only.key if only else None, "href": href}

    def _results_html(self, results: Results, query: str, lang: str) -> tuple[str, str]:
        """``(list items, "no matches" block)`` of ``results``."""
        items = []
        for hit in results.hits:
            item = self._item(hit, lang)
            inner = (f'<span class="name">{_marked(item["name"], item["marks"] if item["matched"] is None else [])}'
                     "</span>"
                     + (f' <span class="matched">({_marked(item["matched"], item["marks"])})</span>'
                        if item["matched"] is not None else "")
                     + (f' <span class="where">{_esc(item["where"])}</span>' if item["where"] else "")
                     + f'<span class="kind">{_esc(item["kind_label"])}</span>')
            attrs = (f' data-tenant="{_esc(item["tenant"])}" data-kind="{_esc(item["kind"])}"'
                     + (f' data-school="{_esc(item["school"])}"' if item["school"] else ""))
            if item["idp"]:
                items.append(f'<li><button class="choice result" name="idp" value="{_esc(item["idp"])}"{attrs}>'
                             f"{inner}</button></li>")
            else:
                items.append(f'<li><a class="choice result" href="{_esc(item["href"])}"{attrs}>{inner}</a></li>')
        if results.hits:
            return "".join(items), ""
        return "", (f'<div id="no-matches"><p class="lead">{_esc(text("disco.no_matches", lang).format(query=query))}'
                    f'</p><p>{_esc(text("disco.no_matches_help", lang))} '
                    f'<a href="{_esc(self._site_url("help", lang))}">{_esc(text("disco.help_link", lang))}</a></p>'
                    "</div>")

    def _service(self, name: str, logo: str | None, lang: str) -> str:
        if not name:
            return ""
        image = (f'<img src="{_esc(logo)}" alt="" referrerpolicy="no-referrer">'
                 if logo and csp.origin(logo) else "")
        return f'<p id="service">{image}{_esc(text("disco.service", lang))}: <strong>{_esc(name)}</strong></p>'

    def _remembered(self, idp: IdentityProvider | None, lang: str) -> str:
        if idp is None:
            return ""
        tenant = self.tenants.by_id[idp.tenant_id]
        button = self._idp_button(idp, f"{tenant.names[lang]} – {idp.names[lang]}", id="continue")
        return (f'<section id="remembered"><p>{_esc(text("disco.remembered", lang))}</p>'
                + self._choice_form(button, lang)
                + f'<form method="post" action="{self.base_url}/disco/forget">{self._hidden(lang)}'
                f'<button class="link" id="change">{_esc(text("disco.change", lang))}</button></form>'
                "</section><hr>")

    def _school_line(self, tenant: Tenant, code: str | None, lang: str) -> str:
        school = next((s for s in tenant.schools if s.code == code and s.active), None) if code else None
        if school is None:
            return ""
        return f'<p id="school">{_esc(text("disco.school", lang))}: {_esc(school.names[lang])}</p>'

    def _cached(self, tenant_id: str, lang: str, build: Callable[[], str]) -> _Template:
        # Bounded: (tenants + 1) x 3 languages, all fixed for the life of this registry.
        key = (tenant_id, lang)
        template = self._cache.get(key)
        if template is None:
            template = self._cache[key] = _Template(build())
        return template

    def _hidden(self, lang: str) -> str:
        return (f'<input type="hidden" name="csrf" value="{_slot("csrf")}">'
                f'<input type="hidden" name="lang" value="{_esc(lang)}">')

    def _choice_form(self, inner: str, lang: str, **attrs: str) -> str:
        extra = "".join(f' {k}="{_esc(v)}"' for k, v in attrs.items())
        return f'<form method="post" action="{self.base_url}/disco/choose"{extra}>{self._hidden(lang)}{inner}</form>'

    def _idp_button(self, idp: IdentityProvider, label: str, **attrs: str) -> str:
        extra = "".join(f' {k}="{_esc(v)}"' for k, v in attrs.items())
        return f'<button class="choice" name="idp" value="{_esc(idp.key)}"{extra}>{_esc(label)}</button>'

    def _city_choice(self, tenant: Tenant, lang: str) -> str:
        if len(tenant.identity_providers) == 1:
            return self._idp_button(tenant.identity_providers[0], tenant.names[lang], **{"data-tenant": tenant.id})
        href = self._tenant_url(tenant.id, lang)
        return (f'<a class="choice" data-tenant="{_esc(tenant.id)}" href="{_esc(href)}">'
                f"{_esc(tenant.names[lang])}</a>")

    def _build_cities(self, lang: str) -> str:
        tenants = sorted(self.tenants, key=lambda t: (t.names[lang].casefold(), t.id))
        choices = "".join(self._city_choice(tenant, lang) for tenant in tenants)
        if len(tenants) <= OPEN_LIST:
            every = (f'<section id="all"{_slot("all_hidden")} aria-labelledby="all-title">'
                     f'<h2 id="all-title">{_esc(text("disco.cities", lang))}</h2>{choices}</section>')
        else:
            every = (f'<details id="all"{_slot("all_hidden")}><summary>'
                     f'{_esc(text("disco.all", lang).format(count=len(tenants)))}</summary>{choices}</details>')
        body = (self._languages(lang, "") + _slot("service") + _slot("remembered")
                + f'<form id="search" role="search" method="get" action="{self.base_url}/disco" '
                f'data-endpoint="{self.base_url}/disco/search" data-lang="{_esc(lang)}">'
                f'<input type="hidden" name="lang" value="{_esc(lang)}">'
                f'<label for="q">{_esc(text("disco.search", lang))}</label>'
                f'<p class="hint" id="q-hint">{_esc(text("disco.search_hint", lang))}</p>'
                f'<div class="row"><input type="search" id="q" name="q" value="{_slot("query")}" autocomplete="off" '
                'spellcheck="false" aria-describedby="q-hint" aria-controls="results">'
                f'<button type="submit" id="search-button">{_esc(text("disco.search_button", lang))}</button>'
                "</div></form>"
                + f'<p id="status" class="status" role="status">{_slot("status")}</p>'
                + self._choice_form(
                    f'<section id="results"{_slot("results_hidden")} data-query="{_slot("query")}" '
                    'aria-labelledby="results-title">'
                    f'<h2 id="results-title">{_esc(text("disco.results", lang))}</h2>'
                    f'<ul id="result-list" class="results">{_slot("results")}</ul>{_slot("none")}</section>'
                    + every, lang, id="cities")
                + f"<script>{SEARCH_SCRIPT}</script>")
        return self._frame(lang, text("disco.title", lang), body)

    def _build_methods(self, tenant: Tenant, lang: str) -> str:
        items = "".join(self._idp_button(idp, idp.names[lang], **{"data-idp": idp.key})
                        for idp in tenant.identity_providers)
        body = (self._languages(lang, tenant.id) + _slot("service")
                + f"<p><strong>{_esc(tenant.names[lang])}</strong></p>" + _slot("school")
                + self._choice_form(items, lang, id="methods")
                + f'<p><a href="{self.base_url}/disco?lang={lang}">{_esc(text("disco.change", lang))}</a></p>')
        return self._frame(lang, text("disco.method", lang), body)

    def _languages(self, current: str, tenant_id: str) -> str:
        return language_nav(current, {lang: f"{self.base_url}/disco?" + urlencode(
            {"lang": lang, **({"tenant": tenant_id} if tenant_id else {})}) for lang in LANGUAGES})

    def _tenant_url(self, tenant_id: str, lang: str, school: str | None = None) -> str:
        query = {"tenant": tenant_id, "lang": lang, **({"school": school} if school else {})}
        return f"{self.base_url}/disco?{urlencode(query)}"

    # -- the frame and the site pages ---------------------------------------------------------------

    def _site_url(self, name: str, lang: str) -> str:
        return f"{self.base_url}/{name}?lang={lang}"

    def _frame(self, lang: str, title: str, body: str) -> str:
        """Every page here: the platform's name above, the links to help, privacy and accessibility below."""
        header = f'<header class="site"><p>{_esc(self.site.platform_name[lang])}</p></header>'
        links = "".join(f'<a href="{_esc(self._site_url(name, lang))}">{_esc(text(f"site.{name}", lang))}</a>'
                        for name in PAGES)
        footer = f'<footer class="site"><nav aria-label="{_esc(text("site.links", lang))}">{links}</nav></footer>'
        return page(lang, title, body, header=header, footer=footer, style=STYLE)

    def site_page(self, name: str, lang: str | None, accept_language: str | None, *,
                  back: bool = False) -> str | None:
        """The help, privacy or accessibility page (``None`` for another name); ``back`` links to the city page."""
        texts = self.site.pages.get(name)
        if texts is None:
            return None
        lang = negotiate(lang, accept_language)
        nav = language_nav(lang, {other: self._site_url(name, other) for other in LANGUAGES})
        back_link = (f'<p><a href="{self.base_url}/disco?lang={lang}">{_esc(text("disco.back", lang))}</a></p>'
                     if back else "")
        return self._frame(lang, texts.title[lang], nav + render_body(texts.body[lang]) + back_link)


def _marked(value: str, marks: list[list[int]]) -> str:
    """``value`` escaped, with ``<mark>`` around each span of ``marks``."""
    out, at = [], 0
    for start, end in marks:
        out.append(_esc(value[at:start]))
        out.append(f"<mark>{_esc(value[start:end])}</mark>")
        at = end
    out.append(_esc(value[at:]))
    return "".join(out)
