"""The city page and its helpers, without a server: what is rendered for a query (escaped),
the page's policy, the JSON the script reads, the site texts, the masked CSRF token, gzip
negotiation, the school-code hint and a client's ``logo_uri``."""

from __future__ import annotations

import gzip
import html
import re

import lxml.html
import pytest
from discovery_data import demo_tenants, tenant, tenants

from broker.discovery import DiscoveryPages
from broker.discovery.script import SCRIPT_HASH, SEARCH_SCRIPT
from broker.discovery.site import SiteTextError, SiteTexts, render_body
from broker.login.discovery import DiscoveryEndpoints, mask, unmask
from broker.login.flow import ServiceRequest
from broker.login.selection import IdpSelector
from broker.registry.relying_parties import Client, RegistrationError
from broker.tokens.authorize import AuthorizationRequest, idp_hint_from
from broker.web import compress, csp

BASE = "https://login.example.fi"


@pytest.fixture(scope="module")
def pages() -> DiscoveryPages:
    return DiscoveryPages(demo_tenants(), BASE)


def render(pages: DiscoveryPages, **kwargs) -> str:
    options = {"tenant_id": None, "lang": "fi", "accept_language": None, "remembered": None, "csrf": "TOKEN"}
    options.update(kwargs)
    rendered = pages.render(**options)
    assert rendered is not None
    return rendered


def test_without_a_query_every_city_is_listed_and_the_results_are_hidden(pages):
    doc = lxml.html.fromstring(render(pages))
    assert doc.xpath("//section[@id='results']/@hidden") == [""]        # hidden (a boolean attribute)
    assert [e.get("data-tenant") for e in doc.xpath("//*[@id='all']//*[@data-tenant]")] == [
        "espoo", "jyvaskyla", "lahti", "oulu", "tampere", "turku", "vantaa"]
    form = doc.xpath("//form[@id='search']")[0]
    assert (form.get("method"), form.get("action")) == ("get", f"{BASE}/disco")   # works without JavaScript
    assert doc.xpath("//input[@id='q']/@name") == ["q"]
    assert doc.xpath("//form[@id='cities']//input[@name='csrf']/@value") == ["TOKEN"]


def test_a_query_is_answered_in_the_page(pages):
    doc = lxml.html.fromstring(render(pages, query="Tikkurilan koulu"))
    assert doc.xpath("//input[@id='q']/@value") == ["Tikkurilan koulu"]
    assert not doc.xpath("//section[@id='results']/@hidden") and doc.xpath("//*[@id='all']/@hidden")
    result = doc.xpath("//ul[@id='result-list']/li/*")[0]
    assert result.text_content() == "Tikkurilan demokoulu — VantaaKoulu"
    assert result.xpath(".//mark/text()") == ["Tikkurilan", "koulu"]
    # Vantaa has two ways in: the result opens its page, naming the school.
    assert result.tag == "a" and result.get("href") == f"{BASE}/disco?tenant=vantaa&lang=fi&school=90921"
    assert doc.xpath("//p[@id='status']/text()") == ["1 osuma"]


def test_a_city_with_one_way_in_is_a_button_of_the_choice_form(pages):
    doc = lxml.html.fromstring(render(pages, query="turku"))
    button = doc.xpath("//form[@id='cities']//ul[@id='result-list']//button")[0]
    assert (button.get("name"), button.get("value"), button.get("data-kind")) == ("idp", "turku/koulu", "city")


def test_no_matches_says_so_and_offers_help(pages):
    doc = lxml.html.fromstring(render(pages, query="xyzzy", lang="sv"))
    none = doc.xpath("//div[@id='no-matches']")[0]
    assert "Ingen kommun eller skola hittades med ”xyzzy”." in none.text_content()
    assert none.xpath(".//a/@href") == [f"{BASE}/help?lang=sv"]
    assert doc.xpath("//p[@id='status']/text()") == ["Inga träffar"]


def test_the_query_is_escaped_and_the_only_script_is_ours(pages):
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>\x00'
    page = render(pages, query=hostile, csrf='"><b>')
    assert "<script>alert" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")
    assert csp.inline_script_hashes(page) == (SCRIPT_HASH,)
    doc = lxml.html.fromstring(page)
    assert doc.xpath("//input[@id='q']/@value") == [hostile.replace("\x00", "")[:100]]
    assert doc.xpath("//input[@name='csrf']/@value")[0] == '"><b>'


def test_a_registered_name_cannot_open_a_slot_of_the_template():
    sneaky = DiscoveryPages(tenants(tenant("x", "X\x00csrf\x00", "001", [("90001", "Koulu\x00query\x00")])), BASE)
    page = render(sneaky, csrf="SECRET", query="koulu")
    assert page.count("SECRET") == 1, "the CSRF token went somewhere else than its own field"


def test_the_service_and_its_logo(pages):
    doc = lxml.html.fromstring(render(pages, service_name="Opinnot <Oy>", service_logo="https://cdn.example/l.png"))
    service = doc.xpath("//p[@id='service']")[0]
    assert service.text_content() == "Kirjaudut palveluun: Opinnot <Oy>"
    assert service.xpath("img/@src") == ["https://cdn.example/l.png"]
    assert service.xpath("img/@alt") == [""]              # decorative: the name is beside it
    assert service.xpath("img/@referrerpolicy") == ["no-referrer"]


def test_the_page_policy_allows_its_script_its_search_and_the_logo_origin(pages):
    policy = pages.csp("https://cdn.example/logos/l.png?v=2")
    assert f"script-src {SCRIPT_HASH};" in policy and "connect-src 'self';" in policy
    assert "img-src 'self' data: https://cdn.example;" in policy
    assert "unsafe-inline'; img" in policy and "script-src 'unsafe-inline'" not in policy
    assert "img-src 'self' data:;" in pages.csp()
    assert SCRIPT_HASH == csp.script_hash(SEARCH_SCRIPT)


def test_the_platform_name_and_the_site_links_are_on_every_page(pages):
    for page in (render(pages), render(pages, tenant_id="vantaa"), pages.site_page("privacy", "en", None)):
        doc = lxml.html.fromstring(page)
        assert doc.xpath("//header/p/text()")[0] in ("DigiOne-kirjautuminen", "DigiOne Login")
        assert [href.split("?")[0] for href in doc.xpath("//footer//a/@href")] == [
            f"{BASE}/help", f"{BASE}/privacy", f"{BASE}/accessibility"]


def test_the_methods_page_names_the_school_the_person_picked(pages):
    doc = lxml.html.fromstring(render(pages, tenant_id="vantaa", school="90921"))
    assert doc.xpath("//p[@id='school']/text()") == ["Koulu: Tikkurilan demokoulu"]
    assert len(doc.xpath("//form[@id='methods']//button")) == 2
    assert not lxml.html.fromstring(render(pages, tenant_id="vantaa", school="99999")).xpath("//p[@id='school']")
    assert pages.render(tenant_id="nowhere", lang="fi", accept_language=None, remembered=None, csrf="x") is None


def test_the_json_answer(pages):
    body = pages.search("åbo", "fi")
    assert body["query"] == "åbo" and body["no_matches"] is None and body["status"] == "1 osuma"
    [result] = body["results"]
    assert result == {"kind": "city", "kind_label": "Kunta", "name": "Turku", "matched": "Åbo", "marks": [[0, 3]],
                      "where": None, "tenant": "turku", "school": None, "idp": "turku/koulu", "href": None}
    none = pages.search("xyzzy", "en")
    assert none["results"] == [] and none["no_matches"]["help_url"] == f"{BASE}/help?lang=en"
    assert pages.search("", "fi") == {"query": "", "results": [], "more": False, "status": "", "no_matches": None}


# -- the site texts -------------------------------------------------------------------------------

def test_the_shipped_site_texts_have_every_language():
    texts = SiteTexts.load(None)
    assert texts.platform_name == {"fi": "DigiOne-kirjautuminen", "sv": "DigiOne-inloggning", "en": "DigiOne Login"}
    for page in texts.pages.values():
        assert set(page.title) == set(page.body) == {"fi", "sv", "en"}


def test_a_missing_text_is_named(tmp_path):
    (tmp_path / "site.yaml").write_text("platform_name: {fi: A, sv: B}\npages: {}\n")
    with pytest.raises(SiteTextError, match=r"site\.yaml: pages\.help: expected a mapping with title and body"):
        SiteTexts.load(tmp_path)
    data = {"platform_name": {"fi": "A", "sv": "B", "en": "C"},
            "pages": {name: {"title": {"fi": "t", "sv": "t", "en": "t"}, "body": {"fi": "b", "sv": "b", "en": "b"}}
                      for name in ("help", "privacy", "accessibility")}}
    data["pages"]["privacy"]["body"].pop("sv")
    with pytest.raises(SiteTextError, match=r"pages\.privacy\.body: expected a text in each of fi, sv, en"):
        SiteTexts.from_dict(data)


def test_a_config_folder_without_site_yaml_gets_the_shipped_texts(tmp_path):
    assert SiteTexts.load(tmp_path).platform_name["en"] == "DigiOne Login"


def test_site_text_markup_is_escaped_and_only_https_and_mailto_become_links():
    body = render_body("## Otsikko\nTeksti <b>lihava</b> <https://a.fi/x?y=1&z=2> <javascript:alert(1)> "
                       "<mailto:tuki@a.fi>\n\n- yksi\n- kaksi\nloppu")
    assert body == ('<h2>Otsikko</h2><p>Teksti &lt;b&gt;lihava&lt;/b&gt; <a href="https://a.fi/x?y=1&amp;z=2">'
                    'https://a.fi/x?y=1&amp;z=2</a> &lt;javascript:alert(1)&gt; <a href="mailto:tuki@a.fi">tuki@a.fi'
                    "</a></p><ul><li>yksi</li><li>kaksi</li></ul><p>loppu</p>")


# -- the CSRF token, masked for every response ------------------------------------------------------

def test_a_masked_token_differs_every_time_and_opens_to_the_flow_id():
    flow_id = "Qm9vbXNoYWthbGFrYTEyMzQ1"
    masked = {mask(flow_id) for _ in range(50)}
    assert len(masked) == 50 and flow_id not in "".join(masked)
    assert all(unmask(value) == flow_id.encode() for value in masked)
    for value in masked:
        DiscoveryEndpoints._check_csrf(value, flow_id)
    DiscoveryEndpoints._check_csrf(flow_id, flow_id)     # a page rendered before masking


@pytest.mark.parametrize("forged", ["", "x", "A" * 48, mask("another-flow-id-of-24chr"), "!!!", "é" * 24,
                                    mask("Qm9vbXNoYWthbGFrYTEyMzQ1")[:-2], "A" * 600])
def test_a_forged_token_is_refused(forged):
    from broker.login.discovery import CsrfError

    with pytest.raises(CsrfError):
        DiscoveryEndpoints._check_csrf(forged, "Qm9vbXNoYWthbGFrYTEyMzQ1")


# -- gzip -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("header,accepted", [
    ("gzip", True), ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.8", True), ("x-gzip", True), ("*", True),
    ("GZIP", True), (None, False), ("", False), ("identity", False), ("gzip;q=0", False), ("*;q=0", False),
    ("*, gzip;q=0", False), ("gzip;q=0, *", False), ("br", False), ("gzip;q=bogus", False),
])
def test_gzip_is_used_when_accepted(header, accepted):
    assert compress.accepts_gzip(header) is accepted


def test_compress_keeps_small_bodies_and_says_vary():
    big = ("Tikkurilan demokoulu " * 100).encode()
    body, headers = compress.compress(big, "gzip")
    assert gzip.decompress(body) == big and ("Content-Encoding", "gzip") in headers
    assert ("Vary", "Accept-Encoding") in headers
    assert compress.compress(b"{}", "gzip") == (b"{}", [("Vary", "Accept-Encoding")])
    assert compress.compress(big, "identity")[0] == big


# -- the school-code hint -----------------------------------------------------------------------------

def _request(hint: str | None) -> ServiceRequest:
    oidc = AuthorizationRequest(client_id="c", redirect_uri="https://c.example/cb", scopes=("openid",), state="s",
                                nonce="n", code_challenge="x" * 43)
    return ServiceRequest(protocol="oidc", frontend="oidc", requester="c", idp_hint=hint, oidc=oidc)


def test_a_school_code_or_oid_takes_the_pupil_to_the_school_city():
    selector = IdpSelector(demo_tenants())
    turku = selector.from_request(_request("school:98531"))
    assert (turku.tenant.id, turku.idp.key, turku.school) == ("turku", "turku/koulu", "98531")
    by_oid = selector.from_request(_request("school:1.2.246.562.10.98530000001"))
    assert (by_oid.tenant.id, by_oid.school) == ("turku", "98531")
    vantaa = selector.from_request(_request("school:90921"))       # two ways in: the city's own page
    assert (vantaa.tenant.id, vantaa.idp, vantaa.school) == ("vantaa", None, "90921")


def test_an_unknown_or_shared_school_code_leaves_the_choice_to_the_person():
    shared = IdpSelector(tenants(tenant("a", "A", "001", [("90001", "Koulu A")]),
                                 tenant("b", "B", "002", [("90001", "Koulu B"), ("90002", "Vanha")],
                                        inactive=("90002",))))
    for hint in ("school:90001", "school:99999", "school:90002"):
        choice = shared.from_request(_request(hint))
        assert (choice.tenant, choice.idp, choice.query) == (None, None, hint.split(":")[1]), hint


def test_the_oidc_request_carries_a_school_hint_in_idp_hint_or_acr_values():
    assert idp_hint_from(None, ["urn:digione:school:90921"]) == "school:90921"
    assert idp_hint_from("school:90921", []) == "school:90921"
    assert idp_hint_from(None, ["urn:mpass.id:authnsource:x", "urn:digione:school:1.2.246.562.10.1"]) == \
        "school:1.2.246.562.10.1"
    from broker.tokens import authorize

    for good in ("school:90921", "school:1.2.246.562.10.98530000001", "vantaa", "vantaa/koulu"):
        assert authorize._IDP_HINT.fullmatch(good), good
    for bad in ("school:", "school:abc", "school:90921/x", "school:9" * 30, "school :1", "x:y"):
        assert not authorize._IDP_HINT.fullmatch(bad), bad


# -- a client's logo ----------------------------------------------------------------------------------

def _client(**extra) -> dict:
    return {"client_id": "svc", "redirect_uris": ["https://svc.example/cb"], "secret_sha256": "0" * 64, **extra}


def test_logo_uri_is_optional_https_and_round_trips():
    assert "logo_uri" not in Client.from_dict(_client()).to_dict(), "registrations without a logo keep their shape"
    client = Client.from_dict(_client(logo_uri="https://cdn.svc.example/logo.svg?v=3"))
    assert client.logo_uri == "https://cdn.svc.example/logo.svg?v=3"
    assert Client.from_dict(client.to_dict()) == client


@pytest.mark.parametrize("logo", ["http://svc.example/l.png", "javascript:alert(1)", "data:image/png;base64,AA",
                                  "https://", "https://svc.example/l.png#x", 'https://svc.example/"onerror=x',
                                  "https://user@svc.example/l.png", "//svc.example/l.png", 42,
                                  "https://[::1/l.png", "https://svc.example:99999/l.png", "https://svc.example/a b"])
def test_a_logo_uri_that_is_not_plain_https_is_refused(logo):
    with pytest.raises(RegistrationError, match="logo_uri: expected an absolute https URL"):
        Client.from_dict(_client(logo_uri=logo))


def test_the_service_logo_is_looked_up_for_oidc_clients_only():
    from broker.assemble import service_logo

    class Parties:
        def client(self, client_id):
            return Client.from_dict(_client(logo_uri="https://cdn.example/l.png")) if client_id == "c" else None

    assert service_logo(Parties(), _request(None)) == "https://cdn.example/l.png"
    saml = ServiceRequest.__new__(ServiceRequest)
    object.__setattr__(saml, "protocol", "saml")
    object.__setattr__(saml, "requester", "c")
    assert service_logo(Parties(), saml) is None


def test_every_text_of_the_page_is_translated(pages):
    for lang in ("fi", "sv", "en"):
        page = render(pages, lang=lang, query="xyzzy")
        text = html.unescape(re.sub(r"<[^>]+>", " ", page))
        for key in ("disco.search_hint", "disco.results", "disco.no_matches_help", "site.privacy"):
            from broker.i18n import MESSAGES

            assert MESSAGES[key][lang] in text, (lang, key)
